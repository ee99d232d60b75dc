//! Triage quality through the real CLI (`supportd classify FILE...`, one JSON line per file
//! with `file`, `category`, `urgency` and `language`), on the labelled sets:
//!
//! * `tests/fixtures/triage-dev` (72 mails the rules were first written against) and
//!   `tests/fixtures/triage-validation/tune` (60 mails written blind to the rules, used for
//!   tuning) and `tests/fixtures/triage-tune2` (150 more, written blind, used for tuning):
//!   the figures of the rules alone must stay above the floors below (the shipped learned
//!   weights learned from these sets, so with them they score 100 %: a floor there could
//!   not fail);
//! * `tests/fixtures/triage-validation/holdout` (120 mails never read to write rules),
//!   `tests/fixtures/triage-holdout2` (150 more, written blind on 2026-12-03),
//!   `tests/fixtures/triage-holdout5` and `triage-holdout6` (150 more each, written blind on
//!   2026-12-05 and 2026-12-06, measured blind several times, never read to write rules),
//!   `tests/fixtures/triage-tune5` and `triage-tune6` (150 more each, written blind on
//!   2026-12-06, each measured once), `tests/fixtures/triage-holdout7` (150 more, written
//!   blind on 2026-12-06, measured blind five times):
//!   the shipped weights (`config/triage-weights.toml`) were learned from their labels, as
//!   from the tuning sets', so their figures with those weights say little;
//! * `tests/fixtures/triage-holdout8` (150 more, written blind on 2026-12-06 by two other
//!   writers): never read, never tuned or learned on.
//!
//! The holdout sets are only measured, only on request (`TRIAGE_HOLDOUT=1`), and never a
//! floor, so that they cannot become a tuning target. Their misses are not listed.
//!
//! `cargo test --test triage_corpus -- --nocapture` prints the figures.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Label {
    file: String,
    category: String,
    urgency: u8,
    language: Option<String>,
}

/// What a set must reach.
struct Floor {
    category: f64,
    urgency: f64,
    /// Level 1-2 mails classified 1-2.
    high_recall: f64,
    /// Level 3-4 mails raised to 1-2, at most.
    raised: f64,
    language: f64,
}

#[derive(Default)]
struct Figures {
    n: usize,
    category: usize,
    urgency: usize,
    high: usize,
    high_found: usize,
    low: usize,
    low_raised: usize,
    languages: usize,
    language_ok: usize,
    misses: Vec<String>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

fn dir(set: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(set)
}

fn read_labels(dir: &Path) -> Result<Vec<Label>, String> {
    let text = std::fs::read_to_string(dir.join("labels.tsv"))
        .map_err(|e| format!("{}: labels.tsv: {e}", dir.display()))?;
    let mut labels = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let cols: Vec<&str> = line.split('\t').map(str::trim).collect();
        if line.trim().is_empty() || (n == 0 && cols.first() == Some(&"file")) {
            continue;
        }
        let (file, category, urgency, language) = match cols[..] {
            [f, c, u] => (f, c, u, None),
            [f, c, u, l] => (f, c, u, Some(l.to_string())),
            _ => return Err(format!("labels.tsv:{}: expected 3 or 4 columns", n + 1)),
        };
        labels.push(Label {
            file: file.to_string(),
            category: category.to_string(),
            urgency: urgency
                .parse()
                .map_err(|e| format!("labels.tsv:{}: urgency: {e}", n + 1))?,
            language,
        });
    }
    Ok(labels)
}

/// What scores the mails.
#[derive(Clone, Copy)]
enum Scoring {
    /// The built-in rules with their shipped learned weights.
    Shipped,
    /// The built-in rules alone (`weights_file` removed): the shipped weights learned from
    /// the tuning sets, so only the rules alone can fall below those sets' floors.
    RulesAlone,
}

/// Classifies every labelled mail of `set` through the CLI and compares.
fn measure(set: &str, scoring: Scoring) -> Result<Figures, String> {
    let dir = dir(set);
    let labels = read_labels(&dir)?;
    assert!(!labels.is_empty(), "no labels in {}", dir.display());
    let files: Vec<PathBuf> = labels.iter().map(|l| dir.join(&l.file)).collect();
    let scratch = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_supportd"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("SUPPORTD_CONFIG");
    if let Scoring::RulesAlone = scoring {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/triage.toml"),
        )
        .map_err(|e| format!("config/triage.toml: {e}"))?;
        let alone: String = shipped
            .lines()
            .filter(|l| !l.starts_with("weights_file"))
            .map(|l| format!("{l}\n"))
            .collect();
        let rules = scratch.path().join("triage.toml");
        let config = scratch.path().join("supportd.toml");
        let write = |p: &Path, text: &str| {
            std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))
        };
        write(&rules, &alone)?;
        write(
            &config,
            &format!(
                "[support]\naddress = \"support@example.test\"\n[triage]\nrules_file = {:?}\n",
                rules.display().to_string()
            ),
        )?;
        command.env("SUPPORTD_CONFIG", &config);
    }
    let output = command
        .arg("classify")
        .args(&files)
        .output()
        .map_err(|e| format!("running supportd classify: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "supportd classify failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut got: HashMap<String, (String, u8, String)> = HashMap::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("not JSON: {line:?}: {e}"))?;
        let field = |k: &str| {
            v[k].as_str()
                .map(String::from)
                .ok_or(format!("no {k} in {line}"))
        };
        let urgency = v["urgency"]
            .as_u64()
            .and_then(|u| u8::try_from(u).ok())
            .ok_or(format!("no urgency in {line}"))?;
        let file = field("file")?;
        let name = Path::new(&file)
            .file_name()
            .map_or(file.clone(), |n| n.to_string_lossy().into_owned());
        got.insert(name, (field("category")?, urgency, field("language")?));
    }
    let mut f = Figures::default();
    for l in &labels {
        let Some((category, urgency, language)) = got.get(&l.file) else {
            return Err(format!("no output line for {}", l.file));
        };
        f.n += 1;
        f.category += usize::from(*category == l.category);
        f.urgency += usize::from(*urgency == l.urgency);
        if l.urgency <= 2 {
            f.high += 1;
            f.high_found += usize::from(*urgency <= 2);
        } else {
            f.low += 1;
            f.low_raised += usize::from(*urgency <= 2);
        }
        if let Some(want) = &l.language {
            f.languages += 1;
            f.language_ok += usize::from(language == want);
        }
        if *category != l.category || *urgency != l.urgency {
            f.misses.push(format!(
                "  {}: expected {}/{}, got {category}/{urgency}",
                l.file, l.category, l.urgency
            ));
        }
    }
    Ok(f)
}

fn print(set: &str, f: &Figures, list_misses: bool) {
    println!(
        "{set}: {} mails: category {:.1} %, urgency exact {:.1} %, level 1-2 recall {:.1} % ({}/{}), \
         level 3-4 raised to 1-2 {:.1} % ({}/{}), language {:.1} % ({}/{})",
        f.n,
        100.0 * ratio(f.category, f.n),
        100.0 * ratio(f.urgency, f.n),
        100.0 * ratio(f.high_found, f.high),
        f.high_found,
        f.high,
        100.0 * ratio(f.low_raised, f.low),
        f.low_raised,
        f.low,
        100.0 * ratio(f.language_ok, f.languages),
        f.language_ok,
        f.languages,
    );
    if list_misses && !f.misses.is_empty() {
        println!("{}", f.misses.join("\n"));
    }
}

fn check(set: &str, floor: &Floor) -> Result<(), String> {
    let f = measure(set, Scoring::RulesAlone)?;
    print(set, &f, true);
    let checks = [
        ("category", ratio(f.category, f.n), floor.category, true),
        ("urgency", ratio(f.urgency, f.n), floor.urgency, true),
        (
            "level 1-2 recall",
            ratio(f.high_found, f.high),
            floor.high_recall,
            true,
        ),
        (
            "level 3-4 raised to 1-2",
            ratio(f.low_raised, f.low),
            floor.raised,
            false,
        ),
        (
            "language",
            ratio(f.language_ok, f.languages),
            floor.language,
            true,
        ),
    ];
    for (what, got, bar, at_least) in checks {
        let ok = if at_least { got >= bar } else { got <= bar };
        assert!(
            ok,
            "{set}: {what} {:.1} % against a floor of {:.1} %",
            got * 100.0,
            bar * 100.0
        );
    }
    Ok(())
}

#[test]
fn dev_set_stays_above_its_floor() -> Result<(), String> {
    check(
        "triage-dev",
        &Floor {
            category: 0.93,
            urgency: 0.90,
            high_recall: 0.97,
            raised: 0.05,
            language: 1.0,
        },
    )
}

#[test]
fn tune_set_stays_above_its_floor() -> Result<(), String> {
    check(
        "triage-validation/tune",
        &Floor {
            category: 0.87,
            urgency: 0.87,
            high_recall: 0.97,
            raised: 0.05,
            language: 0.95,
        },
    )
}

#[test]
fn tune2_set_stays_above_its_floor() -> Result<(), String> {
    check(
        "triage-tune2",
        &Floor {
            category: 0.86,
            urgency: 0.77,
            high_recall: 0.97,
            raised: 0.12,
            language: 0.97,
        },
    )
}

/// Measured only with `TRIAGE_HOLDOUT=1`; reported, never asserted, misses not listed: the
/// blind sets the shipped weights now learn from (`triage-validation/holdout`,
/// `triage-holdout2`, `triage-holdout5`, `triage-holdout6`, `triage-holdout7`: optimistic
/// by now) and the untouched part of issue 12's validation (`triage-holdout8`, 150 mails
/// written blind on 2026-12-06).
#[test]
fn holdout_figures_on_request() -> Result<(), String> {
    if std::env::var_os("TRIAGE_HOLDOUT").is_none() {
        println!("holdout: not measured (set TRIAGE_HOLDOUT=1 to measure it)");
        return Ok(());
    }
    for (set, name) in [
        ("triage-validation/holdout", "holdout"),
        ("triage-holdout2", "holdout2"),
        ("triage-holdout5", "holdout5"),
        ("triage-holdout6", "holdout6"),
        ("triage-holdout7", "holdout7"),
        ("triage-holdout8", "holdout8"),
    ] {
        let f = measure(set, Scoring::Shipped)?;
        print(name, &f, false);
    }
    Ok(())
}
