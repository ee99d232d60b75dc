//! Configuration: TOML text → a validated [`Config`].
//!
//! Values become domain types at this edge, through serde (`EmailAddress`, `tickets::Role`,
//! `tickets::Intake`, `url::Url`, [`TlsMode`]): nothing past it re-parses a string or falls
//! back to a default on a bad value. Every key has a default except the mail servers. Unknown
//! keys and bad values are errors that name the file, the line and the full key;
//! [`Config::parse`] collects *every* problem before failing (through [`crate::toml_check`]),
//! so `supportd check-config` shows an admin the whole list at once. Checks that need the
//! triage rules or the templates too are made in [`crate::setup`], reported the same way
//! ([`Config::problems`]).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::mail::compose::deliverable;
use crate::toml_check::{Collector, Document};

/// Every problem of one config file, each with file, line and key.
pub type ConfigError = crate::toml_check::Problems;
pub use crate::toml_check::Problem;

mod sections;
pub use sections::*;

/// The whole configuration of one supportd instance.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Who we are to customers: name, address, links, phone.
    pub support: Support,
    /// Where tickets live.
    pub database: Database,
    /// IMAP mailboxes to watch (`supportd run`).
    pub mailbox: Vec<Mailbox>,
    /// Outbound relay for the outbox (`supportd run`).
    pub smtp: Option<Smtp>,
    /// The status page and health endpoints.
    pub web: Web,
    /// Resource limits and rate limits.
    pub limits: Limits,
    /// Who may open tickets and how agents' mail is trusted.
    pub policy: Policy,
    /// Where the triage rules come from.
    pub triage: Triage,
    /// Where the mail templates come from.
    pub templates: Templates,
    /// The Help Center: articles, suggestions in acknowledgements, `#kb` drafts.
    pub kb: Kb,
    /// Agents provisioned at start-up (in addition to `supportd users add`).
    pub agent: Vec<Agent>,
    /// Grouping similar urgent tickets into one incident.
    pub incidents: Incidents,
    /// Reminders and escalations before and after service-level due times.
    pub sla: SlaAlerts,
    /// The text this was read from, so that later cross-checks ([`Config::problems`]) name
    /// file, line and key too.
    #[serde(skip)]
    pub source: Source,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, &origin),
            Err(e) => Err(ConfigError::file(
                &origin,
                format!("cannot read the file: {e}"),
            )),
        }
    }

    /// Parses TOML text; `origin` names the file in errors. Every problem is reported:
    /// those serde finds (unknown keys, bad values, domain types refusing theirs) and those of
    /// the semantic checks, found on what was valid.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let doc = Document::parse(text).map_err(|e| e.into_error(origin))?;
        let (config, problems) = doc.deserialize::<Config>();
        let mut check = Collector::new(&doc);
        check.extend(problems);
        if let Some(config) = &config {
            config.validate(&mut check);
        }
        check.finish(origin)?;
        let mut config = config.ok_or_else(|| {
            // deserialize returns no value only together with a problem.
            ConfigError::file(origin, "the configuration could not be read")
        })?;
        config.source = Source {
            origin: origin.to_string(),
            text: Arc::from(text),
        };
        Ok(config)
    }

    /// Problems found after loading (by [`crate::setup`]'s cross-checks), each as (full key,
    /// message), located in the file this configuration was read from.
    pub fn problems(&self, found: Vec<(String, String)>) -> ConfigError {
        let origin = &self.source.origin;
        match Document::parse(&self.source.text) {
            Ok(doc) => {
                let mut check = Collector::new(&doc);
                for (key, message) in found {
                    check.at_key(key, message);
                }
                check
                    .finish(origin)
                    .err()
                    .unwrap_or_else(|| ConfigError::file(origin, "no problem"))
            }
            // The text parsed when it was loaded; without it, keys still name the place.
            Err(_) => ConfigError {
                origin: origin.clone(),
                problems: found
                    .into_iter()
                    .map(|(key, message)| Problem {
                        line: None,
                        key,
                        message,
                    })
                    .collect(),
            },
        }
    }

    /// Every mail server, with the key of its table: `[[mailbox]]`s, then `[smtp]`.
    fn servers(&self) -> Vec<(String, &str, TlsMode)> {
        let mut out: Vec<(String, &str, TlsMode)> = self
            .mailbox
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("mailbox[{i}]"), m.host.as_str(), m.tls))
            .collect();
        if let Some(s) = &self.smtp {
            out.push(("smtp".into(), s.host.as_str(), s.tls));
        }
        out
    }

    /// Semantic checks serde cannot express, each reported at its key.
    fn validate(&self, check: &mut Collector<'_, '_>) {
        let mut bad = |key: String, message: String| check.at_key(key, message);
        if !self.support.ticket_tag.contains("{number}") {
            bad(
                "support.ticket_tag".into(),
                "must contain `{number}`".into(),
            );
        }
        let url = &self.database.url;
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            if url::Url::parse(url).map_or(true, |u| u.host_str().is_none_or(str::is_empty)) {
                bad(
                    "database.url".into(),
                    "is not a postgres://USER@HOST[:PORT]/DATABASE URL".into(),
                );
            }
        } else if !url.starts_with("sqlite:") {
            bad(
                "database.url".into(),
                "is neither a sqlite://PATH nor a postgres://USER@HOST/DATABASE URL".into(),
            );
        }
        if !self.web.listen.is_empty() && self.web.listen.parse::<std::net::SocketAddr>().is_err() {
            bad(
                "web.listen".into(),
                format!("`{}` is not an IP:PORT address", self.web.listen),
            );
        }
        if !self.kb.suggest_threshold.is_finite() || self.kb.suggest_threshold < 0.0 {
            bad(
                "kb.suggest_threshold".into(),
                "must be a number of 0 or more".into(),
            );
        }
        if self.web.request_timeout_seconds == 0 {
            bad(
                "web.request_timeout_seconds".into(),
                "must be above 0".into(),
            );
        }
        if self.limits.max_message_bytes == 0 {
            bad("limits.max_message_bytes".into(), "must be above 0".into());
        }
        if !(1..=1440).contains(&self.limits.notification_digest_minutes) {
            bad(
                "limits.notification_digest_minutes".into(),
                "must be between 1 and 1440 (a day)".into(),
            );
        }
        let budget = self.limits.processing_budget_seconds;
        if !(budget > 0.0 && budget <= Limits::MAX_PROCESSING_BUDGET_SECONDS) {
            bad(
                "limits.processing_budget_seconds".into(),
                format!(
                    "must be above 0 and at most {} (seconds), not {budget}",
                    Limits::MAX_PROCESSING_BUDGET_SECONDS
                ),
            );
        }
        let inc = &self.incidents;
        if !(1..=4).contains(&inc.max_level) {
            bad(
                "incidents.max_level".into(),
                format!("must be an urgency level, 1 to 4, not {}", inc.max_level),
            );
        }
        if inc.min_tickets < 2 {
            bad(
                "incidents.min_tickets".into(),
                "must be at least 2 (one ticket is no incident)".into(),
            );
        }
        if !(1..=1440).contains(&inc.window_minutes) {
            bad(
                "incidents.window_minutes".into(),
                "must be between 1 and 1440 (a day)".into(),
            );
        }
        if !(inc.similarity > 0.0 && inc.similarity <= 1.0) {
            bad(
                "incidents.similarity".into(),
                format!("must be above 0 and at most 1, not {}", inc.similarity),
            );
        }
        for (key, address) in [
            ("incidents.oncall", &inc.oncall),
            ("sla.supervisor", &self.sla.supervisor),
        ] {
            if let Some(a) = address.as_ref().filter(|a| !deliverable(a)) {
                bad(
                    key.into(),
                    format!("`{a}` cannot be written as the recipient of a mail"),
                );
            }
        }
        if self.sla.remind_at_percent > 99 {
            bad(
                "sla.remind_at_percent".into(),
                format!(
                    "must be 1 to 99 (percent of the time to the due time), or 0 for no \
                     reminders, not {}",
                    self.sla.remind_at_percent
                ),
            );
        }
        if !(1..=3600).contains(&self.sla.check_seconds) {
            bad(
                "sla.check_seconds".into(),
                "must be between 1 and 3600".into(),
            );
        }
        if self.limits.near_duplicate_minutes > 1440 {
            bad(
                "limits.near_duplicate_minutes".into(),
                "must be at most 1440 (a day); 0 turns the merge off".into(),
            );
        }
        if self.policy.agents_require_auth
            && self.policy.authserv_id.trim().is_empty()
            && !self.agent.is_empty()
        {
            bad(
                "policy.authserv_id".into(),
                "required with [[agent]] entries while policy.agents_require_auth = true (the \
                 default): without it no agent's reply can be verified. Set it to the \
                 authserv-id your receiving MTA writes in Authentication-Results, or opt out \
                 with agents_require_auth = false"
                    .into(),
            );
        }
        for (key, host, tls) in self.servers() {
            if host.trim().is_empty() {
                bad(format!("{key}.host"), "must not be empty".into());
            }
            if let Some(refused) = tls.refusal(host) {
                bad(format!("{key}.tls"), refused);
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, m) in self.mailbox.iter().enumerate() {
            let k = |f: &str| format!("mailbox[{i}].{f}");
            if !names.insert(m.name.clone()) {
                bad(k("name"), format!("`{}` is used by two mailboxes", m.name));
            }
            let secrets = [
                m.password_file.is_some(),
                m.password_env.is_some(),
                m.oauth_token_file.is_some(),
                m.oauth_token_command.is_some(),
            ];
            if secrets.iter().filter(|s| **s).count() != 1 {
                bad(
                    k("password_file"),
                    "set exactly one of password_file, password_env, oauth_token_file, oauth_token_command".into(),
                );
            }
            if m.poll_seconds == 0 {
                bad(k("poll_seconds"), "must be above 0".into());
            }
        }
        if let Some(s) = &self.smtp {
            if s.password_file.is_some() && s.password_env.is_some() {
                bad(
                    "smtp.password_file".into(),
                    "set at most one of password_file and password_env".into(),
                );
            }
        }
        for (i, a) in self.agent.iter().enumerate() {
            if !deliverable(&a.email) {
                bad(
                    format!("agent[{i}].email"),
                    format!("`{}` cannot be written as the recipient of a mail", a.email),
                );
            }
            for (j, c) in a.categories.iter().enumerate() {
                if c.trim().is_empty() || c.chars().any(char::is_whitespace) {
                    bad(
                        format!("agent[{i}].categories[{j}]"),
                        format!("`{c}` is not a category id"),
                    );
                }
            }
        }
    }

    /// Risks the configuration accepts on purpose: `check-config` prints them and `run` logs
    /// them at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.policy.agents_require_auth {
            out.push(
                "policy.agents_require_auth = false: agents' mail is not authenticated, so \
                 anyone who can put an agent's address in From and reply through the agent \
                 channel (a leaked notification, a forwarded Reply-To) is relayed to customers \
                 as that agent and runs commands (#close, #cc ...). Only for a receiving MTA \
                 that writes no Authentication-Results."
                    .into(),
            );
        } else if self.policy.authserv_id.trim().is_empty() {
            out.push(
                "policy.authserv_id is empty: no agent's reply can be verified, so every reply \
                 from an agent becomes an unverified internal note until it is set."
                    .into(),
            );
        }
        out
    }
}

/// True for `localhost` and loopback IP literals.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests;
