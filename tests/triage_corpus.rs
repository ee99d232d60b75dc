//! Triage quality on the development corpus, through the real CLI:
//! `supportd classify FILE...` must print one JSON line per file with
//! `file`, `category` and `urgency`. Fails below the agreed bar:
//! category accuracy 85%, urgency accuracy 80%, and 95% of the mails
//! labelled level 1 or 2 classified as level 1 or 2.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIN_CATEGORY: f64 = 0.85;
const MIN_URGENCY: f64 = 0.80;
const MIN_HIGH_RECALL: f64 = 0.95;

struct Label {
    file: String,
    category: String,
    urgency: u8,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/triage-dev")
}

fn read_labels(dir: &Path) -> Result<Vec<Label>, String> {
    let text = std::fs::read_to_string(dir.join("labels.tsv"))
        .map_err(|e| format!("reading labels.tsv: {e}"))?;
    let mut labels = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let cols: Vec<&str> = line.split('\t').map(str::trim).collect();
        if n == 0 && cols.first() == Some(&"file") {
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let [file, category, urgency] = cols[..] else {
            return Err(format!("labels.tsv:{}: expected 3 columns", n + 1));
        };
        let urgency = urgency
            .parse()
            .map_err(|e| format!("labels.tsv:{}: urgency: {e}", n + 1))?;
        labels.push(Label {
            file: file.to_string(),
            category: category.to_string(),
            urgency,
        });
    }
    Ok(labels)
}

/// The file name part of whatever path the CLI echoes back.
fn base_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

#[test]
fn triage_dev_corpus_meets_the_bar() -> Result<(), String> {
    let dir = corpus_dir();
    let labels = read_labels(&dir)?;
    assert!(!labels.is_empty(), "no labels in {}", dir.display());

    let files: Vec<PathBuf> = labels.iter().map(|l| dir.join(&l.file)).collect();
    let output = Command::new(env!("CARGO_BIN_EXE_supportd"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("SUPPORTD_CONFIG")
        .arg("classify")
        .args(&files)
        .output()
        .map_err(|e| format!("running supportd classify: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "supportd classify failed ({}):\n{}\n{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );

    let mut got: HashMap<String, (String, u8)> = HashMap::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("not JSON: {line:?}: {e}"))?;
        let file = v["file"].as_str().ok_or(format!("no file in {line}"))?;
        let category = v["category"]
            .as_str()
            .ok_or(format!("no category in {line}"))?;
        let urgency = v["urgency"]
            .as_u64()
            .and_then(|u| u8::try_from(u).ok())
            .ok_or(format!("no urgency in {line}"))?;
        got.insert(base_name(file), (category.to_string(), urgency));
    }

    let (mut cat_ok, mut urg_ok, mut high, mut high_ok) = (0usize, 0usize, 0usize, 0usize);
    let mut misses = Vec::new();
    for label in &labels {
        let Some((category, urgency)) = got.get(&label.file) else {
            return Err(format!("no output line for {}", label.file));
        };
        let c = *category == label.category;
        let u = *urgency == label.urgency;
        cat_ok += usize::from(c);
        urg_ok += usize::from(u);
        if label.urgency <= 2 {
            high += 1;
            high_ok += usize::from(*urgency <= 2);
        }
        if !c || !u {
            misses.push(format!(
                "  {}: expected {}/{}, got {}/{}",
                label.file, label.category, label.urgency, category, urgency
            ));
        }
    }
    let n = labels.len() as f64;
    let cat_acc = cat_ok as f64 / n;
    let urg_acc = urg_ok as f64 / n;
    let high_recall = if high == 0 {
        1.0
    } else {
        high_ok as f64 / high as f64
    };
    println!("triage dev corpus: {} messages", labels.len());
    println!("  category accuracy: {:.1}%", cat_acc * 100.0);
    println!("  urgency accuracy:  {:.1}%", urg_acc * 100.0);
    println!(
        "  level 1-2 mails classified 1-2: {:.1}% ({high_ok}/{high})",
        high_recall * 100.0
    );
    if !misses.is_empty() {
        println!("misclassified:\n{}", misses.join("\n"));
    }
    assert!(
        cat_acc >= MIN_CATEGORY,
        "category accuracy {:.1}% < {:.0}%",
        cat_acc * 100.0,
        MIN_CATEGORY * 100.0
    );
    assert!(
        urg_acc >= MIN_URGENCY,
        "urgency accuracy {:.1}% < {:.0}%",
        urg_acc * 100.0,
        MIN_URGENCY * 100.0
    );
    assert!(
        high_recall >= MIN_HIGH_RECALL,
        "level 1-2 recall {:.1}% < {:.0}%",
        high_recall * 100.0,
        MIN_HIGH_RECALL * 100.0
    );
    Ok(())
}
