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
    outln!("configuration OK: {origin}");
    Ok(0)
}
