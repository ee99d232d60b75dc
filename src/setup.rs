//! Building a [`Pipeline`] from a [`Config`]: reads the triage rules and templates it names
//! (or the built-in ones). Used at start-up and on SIGHUP.

use std::sync::Arc;

use crate::clock::{RandomIds, SystemClock};
use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::templates::Templates;
use crate::tickets::TicketTag;
use crate::triage::Rules;

/// The built-in triage rules, used when the config names no rules file.
pub const DEFAULT_RULES: &str = include_str!("../config/triage.toml");

/// A rules file, template or tag that cannot be used; the message names which.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// The triage rules the config names, or the built-in ones, with the learned weights their
/// `[scoring] weights_file` installs (a path relative to the rules file).
pub fn load_rules(config: &Config) -> Result<Rules, SetupError> {
    let rules = match &config.triage.rules_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                SetupError(format!("cannot read triage rules {}: {e}", path.display()))
            })?;
            Rules::from_toml(&text, &path.display().to_string())
        }
        None => Rules::from_toml(DEFAULT_RULES, "built-in config/triage.toml"),
    }
    .map_err(|e| SetupError(e.to_string()))?;
    match rules.weights_file().map(|w| rules_dir(config).join(w)) {
        Some(path) => install_weights(rules, &path),
        None => Ok(rules),
    }
}

/// The directory the rules file is in (relative paths in it start there); the current
/// directory for the built-in rules.
pub fn rules_dir(config: &Config) -> std::path::PathBuf {
    config
        .triage
        .rules_file
        .as_deref()
        .and_then(std::path::Path::parent)
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

/// `rules` with the learned weights in `path`.
pub fn install_weights(rules: Rules, path: &std::path::Path) -> Result<Rules, SetupError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SetupError(format!(
            "cannot read triage weights {}: {e}",
            path.display()
        ))
    })?;
    let weights = crate::triage::Weights::from_toml(&text, &path.display().to_string())
        .map_err(SetupError)?;
    rules
        .with_weights(weights)
        .map_err(|e| SetupError(format!("{}: {e}", path.display())))
}

/// A pipeline with the real clock and OS randomness.
pub fn build_pipeline(config: Config) -> Result<Pipeline, SetupError> {
    let rules = load_rules(&config)?;
    let templates =
        Templates::load(config.templates.dir.as_deref()).map_err(|e| SetupError(e.to_string()))?;
    let tag = TicketTag::new(&config.support.ticket_tag)
        .map_err(|e| SetupError(format!("support.ticket_tag: {e}")))?;
    Ok(Pipeline {
        config,
        rules,
        templates,
        tag,
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
    })
}
