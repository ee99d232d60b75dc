//! Golden parsing tests: each `tests/fixtures/golden/NNN.eml` must parse to the
//! [`InboundMail`] in `NNN.json` (pretty JSON; attachment bytes are not serialised).
//! On a mismatch the test prints a line diff; `UPDATE_GOLDEN=1 cargo test --test golden_parse`
//! rewrites the `.json` files (review the change with `git diff` before committing).
//!
//! | file | what it covers |
//! | --- | --- |
//! | 001 | plain text, 7bit, us-ascii |
//! | 002 | RFC 2047 UTF-8 names (B and Q) and a two-word folded subject; 8bit UTF-8 body |
//! | 003 | RFC 2047 ISO-8859-1 name and subject; 8bit ISO-8859-1 body |
//! | 004 | quoted-printable body with soft line breaks and UTF-8 escapes |
//! | 005 | HTML-only body rendered to text |
//! | 006 | multipart/alternative: text/plain preferred |
//! | 007 | multipart/mixed + related: PDF attachment, inline PNG with Content-ID |
//! | 008 | forwarded message/rfc822 (its Message-ID is an embedded id) |
//! | 009 | DSN bounce (multipart/report with text/rfc822-headers) |
//! | 010 | Outlook-style reply: CC, Thread-Index, QP, multipart/alternative, References |
//! | 011 | windows-1252 body and RFC 2047 subject (smart quotes, en dash, euro) |
//! | 012 | ISO-2022-JP name, subject and body |
//! | 013 | no Message-ID: synthetic stable id |
//! | 014 | auto-reply headers (Auto-Submitted, Precedence, List-Id, X-Autoreply, ...) |

// Test code: helpers panic on a failed expectation just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::{check_golden, fixture};
use supportd::mail::parse::parse;

fn golden_inputs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture("golden"))
        .expect("tests/fixtures/golden")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "eml")
                && p.file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_golden_message_parses_to_its_json() {
    let inputs = golden_inputs();
    assert!(inputs.len() >= 14, "golden inputs missing: {inputs:?}");
    let mut failures = Vec::new();
    for eml in &inputs {
        let raw = std::fs::read(eml).expect("read .eml");
        let mail = match parse(&raw) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{}: does not parse: {e}", eml.display()));
                continue;
            }
        };
        let mut json = serde_json::to_string_pretty(&mail).expect("serialise");
        json.push('\n');
        if let Err(diff) = check_golden(&eml.with_extension("json"), json.as_bytes()) {
            failures.push(diff);
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Parsing is a pure function of the bytes: twice the same input, twice the same output.
#[test]
fn parsing_is_deterministic() {
    for eml in golden_inputs() {
        let raw = std::fs::read(&eml).expect("read .eml");
        assert_eq!(parse(&raw), parse(&raw), "{}", eml.display());
    }
}
