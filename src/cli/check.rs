//! `supportd check-config`: the configuration, rules and templates, every problem at once.

use std::path::Path;

use supportd::config::Config;

use super::{build_pipeline, Cli, Failure};

pub fn check_config(cli: &Cli, config: Config) -> Result<u8, Failure> {
    let pipeline = build_pipeline(config)?;
    let origin = cli
        .config
        .as_deref()
        .map(Path::display)
        .map(|d| d.to_string())
        .unwrap_or_else(|| "built-in defaults".into());
    for w in pipeline.config.warnings() {
        outln!("warning: {w}");
    }
    // A bad article does not stop the daemon (it is left out, the others are served), but
    // check-config names each one with its line and fails.
    let kb = supportd::kb::load_dir(&pipeline.config.kb.dir);
    if !kb.problems.is_empty() {
        eprintln!("{}", kb.report());
        eprintln!(
            "supportd: {} Help Center file{} would be left out ({} article{} fine)",
            kb.problems.len(),
            if kb.problems.len() == 1 { "" } else { "s" },
            kb.articles.len(),
            if kb.articles.len() == 1 {
                " is"
            } else {
                "s are"
            },
        );
        return Ok(super::EX_CONFIG);
    }
    outln!("configuration OK: {origin}");
    Ok(0)
}
