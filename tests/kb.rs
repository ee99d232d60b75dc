//! The Help Center (issue 14) through the built binary: `kb reindex` and `check-config` on a
//! directory with a malformed article, the acknowledgement's suggestions (and none when no
//! article passes), the suggestion figures over the labelled set, and `#kb` drafts.

// Test code: helpers panic on a failed expectation just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;

/// The shipped articles (the repository's kb/), copied into the test's own directory.
fn with_articles(env: &Env) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("kb");
    let to = env.dir.path().join("kb");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
    to
}

#[test]
fn a_malformed_article_is_named_with_its_line_and_the_others_load() {
    let env = Env::new();
    let kb = with_articles(&env);
    std::fs::write(
        kb.join("broken.md"),
        "+++\ntitle = \"Broken\"\ncategory = \"general\"\nkeywords = [\"x\"]\ncolour = \"red\"\n+++\nText\n",
    )
    .unwrap();
    std::fs::write(kb.join("no-front-matter.md"), "# Just text\n").unwrap();

    let out = env.run(&["kb", "reindex"]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("indexed 8 articles"), "{stdout}");
    assert!(stderr.contains("kb/broken.md:5: key `colour`"), "{stderr}");
    assert!(
        stderr.contains("kb/no-front-matter.md:1: no front matter"),
        "{stderr}"
    );

    let out = env.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kb/broken.md:5: key `colour`"), "{stderr}");
    assert!(
        stderr.contains("2 Help Center files would be left out (8 articles are fine)"),
        "{stderr}"
    );

    // The good articles are searchable: a mail about one gets it suggested.
    let out = env.ok(&["suggest", fixture("kb-suggest/017.eml").to_str().unwrap()]);
    assert!(out.contains("deactivate-user"), "{out}");
    assert!(
        out.contains("https://help.vendor.example/help/deactivate-user"),
        "{out}"
    );

    std::fs::remove_file(kb.join("broken.md")).unwrap();
    std::fs::remove_file(kb.join("no-front-matter.md")).unwrap();
    assert!(env.ok(&["check-config"]).contains("configuration OK"));
}

#[test]
fn the_ack_lists_passing_articles_with_links_and_nothing_otherwise() {
    let env = Env::new();
    with_articles(&env);
    env.ok(&["kb", "reindex"]);
    let n = created(&env.ingest_file(&fixture("kb-suggest/034.eml")));
    let ack = env.ack_text(n);
    assert!(
        ack.contains("These articles of our Help Center may already answer your question:"),
        "{ack}"
    );
    assert!(
        ack.contains("- Requesting an account for a new user"),
        "{ack}"
    );
    assert!(
        ack.contains("https://help.vendor.example/help/new-user-account"),
        "{ack}"
    );
    let t = env.json(&["tickets", "show", &n.to_string(), "--json"]);
    let events = t["events"].to_string();
    assert!(events.contains("kb-suggested"), "{events}");

    // A mail no article fits: no suggestion section at all.
    let n = created(&env.ingest_file(&fixture("kb-suggest/038.eml")));
    let ack = env.ack_text(n);
    assert!(!ack.contains("Help Center"), "{ack}");
    assert!(!ack.contains("/help/"), "{ack}");
    let out = env.ok(&["suggest", fixture("kb-suggest/038.eml").to_str().unwrap()]);
    assert!(out.trim_end().ends_with("038.eml: no suggestion"), "{out}");
}

/// The figures of the README: `supportd suggest` over the labelled set (64 mails written
/// before the articles, labelled after; tests/fixtures/kb-suggest/NOTES.md). Prints them
/// for the whole set and for each half (odd files: the keywords and threshold were set
/// looking at them; even files: held out).
#[test]
fn suggestion_figures_over_the_labelled_set() {
    let env = Env::new();
    with_articles(&env);
    env.ok(&["kb", "reindex"]);
    let dir = fixture("kb-suggest");
    let labels: BTreeMap<String, String> = std::fs::read_to_string(dir.join("labels.tsv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('\t'))
        .map(|(f, e)| (f.to_string(), e.trim().to_string()))
        .collect();
    assert!(labels.len() >= 60);
    let files: Vec<String> = labels
        .keys()
        .map(|f| dir.join(f).display().to_string())
        .collect();
    let mut args = vec!["suggest"];
    args.extend(files.iter().map(String::as_str));
    let out = env.ok(&args);
    let mut passing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in out.lines() {
        let (file, rest) = line.split_once(": ").unwrap();
        let name = Path::new(file)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let entry = passing.entry(name).or_default();
        if rest != "no suggestion" {
            // SCORE SLUG LINK TITLE
            entry.push(rest.split_whitespace().nth(1).unwrap().to_string());
        }
    }
    let figures = |half: &dyn Fn(u32) -> bool| {
        let (mut hit, mut should, mut wrong, mut none) = (0, 0, 0, 0);
        for (file, expected) in &labels {
            let n: u32 = file[..3].parse().unwrap();
            if !half(n) {
                continue;
            }
            let got = &passing[file];
            assert!(got.len() <= 3, "{file}: {got:?}");
            if expected == "none" {
                none += 1;
                wrong += usize::from(!got.is_empty());
            } else {
                should += 1;
                hit += usize::from(got.contains(expected));
            }
        }
        (hit, should, wrong, none)
    };
    let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
    for (name, half) in [
        ("all", &(|_| true) as &dyn Fn(u32) -> bool),
        ("odd (tuned on)", &|n| n % 2 == 1),
        ("even (held out)", &|n| n % 2 == 0),
    ] {
        let (hit, should, wrong, none) = figures(half);
        println!(
            "{name}: top-3 hit {hit}/{should} = {:.1} %; wrong suggestion on {wrong}/{none} should-get-none mails = {:.1} %",
            pct(hit, should),
            pct(wrong, none)
        );
    }
    let (hit, should, wrong, none) = figures(&|_| true);
    assert!(pct(hit, should) >= 80.0, "top-3 hit {hit}/{should}");
    assert!(pct(wrong, none) <= 10.0, "wrong suggestions {wrong}/{none}");
}

const MX: &str = "mx.vendor.example";

fn agent_mail(env: &Env, n: i64, id: &str, body: &str) -> serde_json::Value {
    let key = env.agent_key(n);
    env.ingest(&crlf(&format!(
        "Authentication-Results: {MX}; dmarc=pass header.from=vendor.example\n\
         From: Alice Agent <alice@vendor.example>\nTo: support+a-{key}@vendor.example\n\
         Subject: Re: [#{n}] Account switched off\nMessage-ID: <{id}@vendor.example>\n\n{body}"
    )))
}

#[test]
fn an_agent_s_kb_drafts_an_article_without_the_people_and_never_publishes_it() {
    let env = Env::with_config(&format!(
        "[policy]\nauthserv_id = \"{MX}\"\n\n[[agent]]\nemail = \"alice@vendor.example\"\nname = \"Alice Agent\"\n"
    ));
    let kb = with_articles(&env);
    env.ok(&["kb", "reindex"]);
    let n = created(&env.ingest(&crlf(
        "From: Paul Garrity <pgarrity@westbrook.example>\nTo: support@vendor.example\n\
         Subject: Account switched off\nMessage-ID: <p1@westbrook.example>\n\n\
         Dr. Ellen Fitch is back from leave; her login was switched off. Please turn it on.\n",
    )));
    let key = env.ticket(n)["access_key"].as_str().unwrap().to_string();

    // Before any public answer, #kb has nothing to draft from: refused, nothing written.
    let early = agent_mail(&env, n, "a0", "#kb Reactivating a returning doctor\n");
    assert!(
        early["reason"]
            .as_str()
            .unwrap()
            .contains("commands not understood"),
        "{early}"
    );
    assert!(!kb.join("drafts").exists());

    // The answer, relayed to Paul.
    let answer = agent_mail(
        &env,
        n,
        "a1",
        "Hi Paul,\n\nI reactivated Dr. Fitch's account (ellen.fitch@westbrook.example); she keeps \
         her groups.\nFor next time: your site administrator writes to us with the user's name \
         and the date, and we turn the account back on.\nCall me at +1 555 010 0199 if needed, \
         or see https://help.vendor.example/t/{KEY}.\n\nBest regards,\nAlice\n"
            .replace("{KEY}", &key)
            .as_str(),
    );
    assert_eq!(answer["action"], "agent_reply", "{answer}");

    // #kb alone: the draft comes from that answer.
    let out = agent_mail(&env, n, "a2", "#kb Reactivating a returning doctor\n");
    assert!(
        out["reason"].as_str().unwrap().contains("#kb Reactivating"),
        "{out}"
    );
    let file = kb
        .join("drafts")
        .join(format!("reactivating-a-returning-doctor-{n}.md"));
    let draft = std::fs::read_to_string(&file).unwrap();
    for gone in [
        "Paul",
        "Fitch",
        "Ellen",
        "westbrook",
        "Alice",
        "555",
        &key,
        "Best regards",
    ] {
        assert!(!draft.contains(gone), "{gone:?} in the draft:\n{draft}");
    }
    assert!(
        draft.contains("title = \"Reactivating a returning doctor\""),
        "{draft}"
    );
    assert!(
        draft.contains("your site administrator writes to us with the user's name"),
        "{draft}"
    );
    assert!(
        draft.contains(&format!("# DRAFT from ticket #{n}")),
        "{draft}"
    );

    // The agent is told where it is; the customer is not.
    let row = env
        .outbox()
        .into_iter()
        .find(|o| o["kind"] == "kb-draft")
        .unwrap();
    assert_eq!(row["to"], "alice@vendor.example");
    let mail = text_body(env.outbox_raw(row["id"].as_i64().unwrap()).as_bytes());
    assert!(
        mail.contains(&format!(
            "Draft: kb/drafts/reactivating-a-returning-doctor-{n}.md"
        )),
        "{mail}"
    );
    assert!(mail.contains("move it into kb"), "{mail}");
    let t = env.json(&["tickets", "show", &n.to_string(), "--json"]);
    assert!(t["events"].to_string().contains("kb-draft"), "{t}");

    // Never published by itself: the index has the shipped articles only, until it is moved.
    let reindex = env.ok(&["kb", "reindex"]);
    assert!(reindex.contains("indexed 8 articles"), "{reindex}");
    std::fs::rename(&file, kb.join("reactivating-a-returning-doctor.md")).unwrap();
    let reindex = env.ok(&["kb", "reindex"]);
    assert!(reindex.contains("indexed 9 articles"), "{reindex}");
}

#[test]
fn kb_from_a_customer_gets_the_command_error_reply() {
    let env = Env::with_config(&format!("[policy]\nauthserv_id = \"{MX}\"\n"));
    let n = created(&env.ingest(&crlf(
        "From: Ann Lee <ann@clinic.example>\nTo: support@vendor.example\n\
         Subject: Question\nMessage-ID: <c1@clinic.example>\n\nHow do I add a user?\n",
    )));
    let out = env.ingest(&crlf(&format!(
        "From: Ann Lee <ann@clinic.example>\nTo: support@vendor.example\n\
         Subject: Re: [#{n}] Question\nMessage-ID: <c2@clinic.example>\n\n\
         #kb My own article\nPlease publish this.\n"
    )));
    assert_eq!(out["action"], "replied", "{out}");
    assert!(
        out["reason"]
            .as_str()
            .unwrap()
            .contains("commands from a non-agent not executed: #kb My own article"),
        "{out}"
    );
    let err = env
        .outbox()
        .into_iter()
        .find(|o| o["kind"] == "command-error")
        .unwrap();
    assert_eq!(err["to"], "ann@clinic.example");
    let body = text_body(env.outbox_raw(err["id"].as_i64().unwrap()).as_bytes());
    assert!(body.contains("#kb My own article"), "{body}");
    assert!(!env.dir.path().join("kb/drafts").exists());
}
