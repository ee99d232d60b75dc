//! Building a [`Pipeline`] from a [`Config`]: reads the triage rules and templates it names
//! (or the built-in ones). Used at start-up and on SIGHUP.

use std::sync::Arc;

use crate::clock::{RandomIds, SystemClock};
use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::templates::Templates;
use crate::tickets::desk::Desk;
use crate::tickets::TicketTag;
use crate::triage::Rules;

/// The built-in triage rules, used when the config names no rules file.
pub const DEFAULT_RULES: &str = include_str!("../config/triage.toml");

/// A rules file, template or tag that cannot be used; the message names which.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

/// The triage rules the config names, or the built-in ones.
pub fn load_rules(config: &Config) -> Result<Rules, SetupError> {
    match &config.triage.rules_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                SetupError(format!("cannot read triage rules {}: {e}", path.display()))
            })?;
            Rules::from_toml(&text, &path.display().to_string())
        }
        None => Rules::from_toml(DEFAULT_RULES, "built-in config/triage.toml"),
    }
    .map_err(|e| SetupError(e.to_string()))
}

/// A pipeline with the real clock and OS randomness.
pub fn build_pipeline(config: Config) -> Result<Pipeline, SetupError> {
    let rules = load_rules(&config)?;
    let templates =
        Templates::load(config.templates.dir.as_deref()).map_err(|e| SetupError(e.to_string()))?;
    let tag = TicketTag::new(&config.support.ticket_tag)
        .map_err(|e| SetupError(format!("support.ticket_tag: {e}")))?;
    let desk = Desk::new(
        &config.support.name,
        config.support_address(),
        &config.own_addresses(),
        &config.support.public_url,
        &config.support.phone,
        tag.clone(),
    );
    Ok(Pipeline {
        config,
        desk,
        rules: Arc::new(rules),
        templates,
        tag,
        clock: Arc::new(SystemClock),
        ids: Arc::new(RandomIds),
    })
}
