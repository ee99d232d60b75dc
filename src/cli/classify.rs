//! `supportd classify FILE...`: triage only (category, urgency, the rules that fired), no
//! database.

use std::path::PathBuf;

use supportd::config::Config;
use supportd::mail::parse::subject_and_body;
use supportd::mail::quote::strip_quotes;

use super::print::print_json_line;
use super::{Failure, EX_CONFIG, EX_DATAERR};

#[derive(serde::Serialize)]
struct ClassifyLine<'a> {
    file: String,
    category: &'a str,
    urgency: u8,
    reasons: &'a [String],
}

pub fn classify(config: &Config, files: &[PathBuf]) -> Result<u8, Failure> {
    let rules =
        supportd::setup::load_rules(config).map_err(|e| Failure::new(EX_CONFIG, e.into()))?;
    let mut code = 0;
    for file in files {
        let raw = match std::fs::read(file) {
            Ok(raw) => raw,
            Err(e) => {
                eprintln!("supportd: cannot read {}: {e}", file.display());
                code = EX_DATAERR;
                continue;
            }
        };
        let (subject, body) = subject_and_body(&raw);
        let c = rules.classify(&subject, &strip_quotes(&body));
        print_json_line(&ClassifyLine {
            file: file.display().to_string(),
            category: &c.category,
            urgency: c.urgency,
            reasons: &c.reasons,
        })?;
    }
    Ok(code)
}
