//! Learning from agents, through the real binary: corrections stored in the database (here
//! written directly with the store's own function, as the pipeline will), then
//! `supportd triage report` and `supportd triage tune`, and installing the weights.

// Test code: helpers panic on a failed expectation just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use common::*;
use supportd::mail::parse::subject_and_body;
use supportd::mail::quote::strip_quotes;
use supportd::store::{Correction, Store};
use supportd::triage::{Rules, Signals, TriageInput};

/// (file, category, urgency) of a labelled set.
fn labels(set: &str) -> Vec<(PathBuf, String, u8)> {
    let dir = fixture(set);
    let text = std::fs::read_to_string(dir.join("labels.tsv")).expect("labels");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (
                dir.join(c[0]),
                c[1].to_string(),
                c[2].parse().expect("urgency"),
            )
        })
        .collect()
}

/// Ingests `mails` (one ticket each) and stores an agents' correction for each, numbered
/// from `first_ticket`. Returns how many of them the rules got right (category, urgency).
fn correct(env: &Env, mails: &[(PathBuf, String, u8)], first_ticket: i64) -> (usize, usize) {
    let paths: Vec<&str> = mails.iter().map(|m| m.0.to_str().expect("path")).collect();
    let mut args = vec!["ingest"];
    args.extend(&paths);
    let out = env.ok(&args);
    assert_eq!(
        out.lines().filter(|l| l.contains("\"created\"")).count(),
        mails.len(),
        "{out}"
    );
    let rules = Rules::from_toml(supportd::setup::DEFAULT_RULES, "built-in").expect("rules");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let store = rt.block_on(Store::connect(&env.db_url)).expect("store");
    let mut tx = store.begin().expect("begin");
    let (mut cat_ok, mut urg_ok) = (0, 0);
    for (i, (path, category, urgency)) in mails.iter().enumerate() {
        let raw = std::fs::read(path).expect("mail");
        let (subject, body) = subject_and_body(&raw);
        let body = strip_quotes(&body);
        let (c, evidence) = rules.classify_with_evidence(&TriageInput {
            subject: &subject,
            body: &body,
            signals: Signals::from_raw_headers(&raw),
        });
        cat_ok += usize::from(c.category == *category);
        urg_ok += usize::from(c.urgency == *urgency);
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap()
            + chrono::Duration::minutes(first_ticket + i as i64);
        tx.save_correction(&Correction {
            ticket_id: first_ticket + i as i64,
            features: serde_json::to_string(&evidence).expect("json"),
            language: c.language.clone(),
            rules_category: c.category.clone(),
            rules_urgency: c.urgency,
            final_category: category.clone(),
            final_urgency: *urgency,
            created_at: at,
            updated_at: at,
        })
        .expect("save correction");
    }
    tx.commit().expect("commit");
    (cat_ok, urg_ok)
}

#[test]
fn report_and_tune_read_the_agents_corrections() {
    let env = Env::new();
    assert!(env.ok(&["triage", "report"]).contains("no corrections yet"));

    let dev = labels("triage-dev");
    let (cat_ok, urg_ok) = correct(&env, &dev, 1);
    let report = env.ok(&["triage", "report"]);
    let pct = |a: usize, b: usize| format!("{:.1} %", 100.0 * a as f64 / b as f64);
    assert!(
        report.contains(&format!(
            "72 corrected tickets: category {} ({cat_ok}/72)",
            pct(cat_ok, 72)
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!("urgency exact {} ({urg_ok}/72)", pct(urg_ok, 72))),
        "{report}"
    );
    assert!(report.contains("level 1-2: recall"), "{report}");
    assert!(
        report.contains("category (rows: agents' final label; columns: rules)"),
        "{report}"
    );
    assert!(
        report.contains("urgency (rows: agents' final label; columns: rules)"),
        "{report}"
    );
    // The urgency matrix has one row per level with the agents' counts.
    let high = dev.iter().filter(|m| m.2 == 1).count();
    let row = report
        .lines()
        .find(|l| l.trim_start().starts_with("level 1 "))
        .unwrap_or("");
    let total: usize = row
        .split_whitespace()
        .skip(2)
        .take(4)
        .filter_map(|n| n.parse::<usize>().ok())
        .sum();
    assert_eq!(total, high, "{row}");

    // 72 corrections: enough. Fewer would be refused; see the unit tests for the boundary.
    let weights = env.dir.path().join("learned.toml");
    let out = env.ok(&["triage", "tune", "--out", weights.to_str().expect("path")]);
    assert!(
        out.contains("learned from 57 corrections; held back the newest 15"),
        "{out}"
    );
    assert!(out.contains("before (as triaged):  category"), "{out}");
    assert!(out.contains("after (learned):      category"), "{out}");
    assert!(out.contains("(not installed)"), "{out}");
    let text = std::fs::read_to_string(&weights).expect("weights written");
    assert!(text.starts_with("# Learned triage weights"), "{text}");
    supportd::triage::Weights::from_toml(&text, "learned.toml").expect("weights parse");

    // Never applied by itself; tried with --weights, installed by the rules file.
    let mail = dev[0].0.to_str().expect("path");
    let plain = env.ok(&["classify", mail]);
    let tried = env.ok(&[
        "classify",
        "--weights",
        weights.to_str().expect("path"),
        mail,
    ]);
    assert!(tried.contains("\"urgency\":"), "{tried}");
    let rules_file = env.dir.path().join("triage.toml");
    std::fs::write(
        &rules_file,
        supportd::setup::DEFAULT_RULES.replace(
            "weights_file = \"triage-weights.toml\"",
            "weights_file = \"learned.toml\"",
        ),
    )
    .expect("rules");
    let installed = Env::with_config(&format!(
        "[triage]\nrules_file = \"{}\"\n",
        rules_file.display()
    ));
    let explained = installed.ok(&["classify", "--explain", mail]);
    assert!(explained.contains("(learned weights)"), "{explained}");
    assert!(
        explained.contains("learned category scores: ") && explained.contains("rule totals"),
        "the learned category is explained in parts: {explained}"
    );
    assert_eq!(
        env.ok(&["classify", mail]),
        plain,
        "tune installs nothing by itself"
    );
}

#[test]
fn tune_says_too_few_below_fifty() {
    let env = Env::new();
    let dev = labels("triage-dev");
    correct(&env, &dev[..49], 1);
    let out = env.ok(&["triage", "tune"]);
    assert!(
        out.contains("too few corrections to tune: 49 (at least 50 are needed)"),
        "{out}"
    );
    assert!(!Path::new(&env.dir.path().join("triage-weights.toml")).exists());
}

#[test]
fn corpus_folders_stand_in_for_corrections() {
    let env = Env::new();
    let dev = fixture("triage-dev");
    let out = env.ok(&["triage", "report", "--corpus", dev.to_str().expect("path")]);
    assert!(out.starts_with("72 corrected tickets: category"), "{out}");
    let bad = env.run(&[
        "triage",
        "report",
        "--corpus",
        env.dir.path().to_str().expect("path"),
    ]);
    assert_eq!(bad.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("labels.tsv"));

    // Learning from all of a folder (nothing held back), then scoring with the result.
    let weights = env.dir.path().join("all.toml");
    let w = weights.to_str().expect("path");
    let out = env.ok(&[
        "triage",
        "tune",
        "--hold-back",
        "0",
        "--out",
        w,
        "--corpus",
        dev.to_str().expect("path"),
    ]);
    assert!(out.contains("learned from all 72 corrections"), "{out}");
    let text = std::fs::read_to_string(&weights).expect("weights written");
    assert!(text.contains("none held back") && text.contains("[category.billing]"));
    let mail = labels("triage-dev");
    let (path, category, _) = &mail[0];
    let got = env.ok(&["classify", "--weights", w, path.to_str().expect("path")]);
    assert!(
        got.contains(&format!("\"category\":\"{category}\"")),
        "{got}"
    );
    let refused = env.run(&["triage", "tune", "--hold-back", "1", "--out", w]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a share from 0 to 0.9"));
}
