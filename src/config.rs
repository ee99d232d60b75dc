//! Configuration: TOML text → a validated [`Config`].
//!
//! Every key has a default except the mail servers. Unknown keys and bad values are errors that
//! name the file, the line and the full key; [`Config::parse`] collects *every* problem before
//! failing, so `supportd check-config` shows an admin the whole list at once.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::mail::address::EmailAddress;

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
    /// Agents provisioned at start-up (in addition to `supportd users add`).
    pub agent: Vec<Agent>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Support {
    /// Shown in mails ("Example Support").
    pub name: String,
    /// The address customers write to; plus-addresses (`local+KEY@domain`) derive from it.
    pub address: String,
    /// Other addresses that deliver into our mailboxes; mail *from* any of them is ignored.
    pub extra_addresses: Vec<String>,
    /// Base of the direct links in mails: `{public_url}/t/{ACCESSKEY}`.
    pub public_url: String,
    /// Told to senders of level 1–2 tickets.
    pub phone: String,
    /// Subject tag; `{number}` is replaced by the ticket number.
    pub ticket_tag: String,
    /// A customer reply reopens a closed ticket within this many days; later it opens a new one.
    pub reopen_days: u32,
    /// Send acknowledgements for new tickets at all.
    pub acknowledge: bool,
    /// Mail agents about new tickets and customer replies.
    pub notify_agents: bool,
    /// Tell the customer when an agent closes their ticket ("reply to reopen").
    pub notify_on_close: bool,
}

impl Default for Support {
    fn default() -> Self {
        Support {
            name: "Support".into(),
            address: "support@localhost".into(),
            extra_addresses: Vec::new(),
            public_url: "http://127.0.0.1:8080".into(),
            phone: String::new(),
            ticket_tag: "[#{number}]".into(),
            reopen_days: 30,
            acknowledge: true,
            notify_agents: true,
            notify_on_close: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    /// `sqlite://PATH` (PostgreSQL is not built yet).
    pub url: String,
}

impl Default for Database {
    fn default() -> Self {
        Database {
            url: "sqlite://supportd.db".into(),
        }
    }
}

/// How to secure a connection to a mail server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    Implicit,
    Starttls,
    /// Plain text; refused unless the host is loopback.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mailbox {
    /// Names the mailbox in logs and in the cursor table.
    #[serde(default = "default_mailbox_name")]
    pub name: String,
    pub host: String,
    #[serde(default = "default_imap_port")]
    pub port: u16,
    #[serde(default = "default_tls_implicit")]
    pub tls: TlsMode,
    pub username: String,
    /// Secret from a file (systemd credentials) ...
    pub password_file: Option<PathBuf>,
    /// ... or from an environment variable.
    pub password_env: Option<String>,
    /// XOAUTH2 bearer token from a file, re-read on auth failure.
    pub oauth_token_file: Option<PathBuf>,
    /// XOAUTH2 bearer token printed by a helper command.
    pub oauth_token_command: Option<String>,
    /// Extra trust root (PEM); verification is never off.
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_folder")]
    pub folder: String,
    /// Without it, imported mail is flagged \Seen in place.
    pub processed_folder: Option<String>,
    #[serde(default = "default_quarantine_folder")]
    pub quarantine_folder: String,
    /// Polling interval when the server lacks IDLE.
    #[serde(default = "default_poll_seconds")]
    pub poll_seconds: u64,
}

fn default_mailbox_name() -> String {
    "support".into()
}
fn default_imap_port() -> u16 {
    993
}
fn default_tls_implicit() -> TlsMode {
    TlsMode::Implicit
}
fn default_folder() -> String {
    "INBOX".into()
}
fn default_quarantine_folder() -> String {
    "Quarantine".into()
}
fn default_poll_seconds() -> u64 {
    60
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default = "default_tls_starttls")]
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// Transient failures are retried with exponential backoff for this long, then failed.
    #[serde(default = "default_retry_hours")]
    pub retry_hours: u32,
}

fn default_retry_hours() -> u32 {
    48
}

fn default_smtp_port() -> u16 {
    587
}
fn default_tls_starttls() -> TlsMode {
    TlsMode::Starttls
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Web {
    pub listen: String,
}

impl Default for Web {
    fn default() -> Self {
        Web {
            listen: "127.0.0.1:8080".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Larger messages are quarantined verbatim instead of parsed.
    pub max_message_bytes: u64,
    /// Acknowledgements to one sender within a rolling hour; more open tickets silently.
    pub acks_per_sender_per_hour: u32,
    /// Mail that reached the mailbox longer ago than this is imported but never acknowledged,
    /// so pointing supportd at an old inbox emails nobody.
    pub ack_max_age_hours: u32,
    /// Cc collaborators kept per ticket: a mail Cc'ing 10,000 addresses must not turn every
    /// later relay into a 10,000-recipient mail. The rest are dropped with a history note.
    pub max_collaborators: u32,
    /// Individual agent notifications caused by one sender (address without +detail) within
    /// a rolling hour; past it, that sender's mail is listed in digests instead. 0 = no limit.
    pub notifications_per_sender_per_hour: u32,
    /// How long a notification held for a digest waits at most before its digest goes out.
    pub notification_digest_minutes: u32,
    /// Time one message may take to be parsed, rendered and triaged; a message over it is
    /// quarantined ("processing budget exceeded") and the mailbox goes on.
    pub processing_budget_seconds: f64,
}

impl Limits {
    /// The largest `processing_budget_seconds`. A mailbox task reports progress after each
    /// message, so one message's budget must stay well inside the watchdog's patience (with
    /// the shipped unit's WatchdogSec=60, a task silent for 120 s counts as stuck).
    pub const MAX_PROCESSING_BUDGET_SECONDS: f64 = 60.0;

    /// [`Limits::processing_budget_seconds`] as a duration (validated: positive, finite).
    pub fn processing_budget(&self) -> std::time::Duration {
        std::time::Duration::try_from_secs_f64(self.processing_budget_seconds)
            .unwrap_or(std::time::Duration::from_secs(10))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 26_214_400,
            acks_per_sender_per_hour: 5,
            ack_max_age_hours: 24,
            max_collaborators: 20,
            notifications_per_sender_per_hour: 10,
            notification_digest_minutes: 15,
            processing_budget_seconds: 10.0,
        }
    }
}

/// Who may open tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Intake {
    Open,
    Known,
    SupportUsers,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub intake: Intake,
    /// Require DKIM/DMARC pass (per `authserv_id`) on agents' mail.
    pub agents_require_auth: bool,
    /// The receiving MTA's id whose Authentication-Results header is trusted.
    pub authserv_id: String,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            intake: Intake::Open,
            agents_require_auth: true,
            authserv_id: String::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Triage {
    /// Rules file; without it the built-in default rules (`config/triage.toml`) apply.
    pub rules_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Templates {
    /// Directory overriding the built-in templates file by file (`ack.txt`, ...).
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub email: String,
    #[serde(default)]
    pub name: String,
    /// `agent` or `admin`.
    #[serde(default = "default_agent_role")]
    pub role: String,
    /// Triage category ids this agent is notified about; empty = all (see `tickets::notify`).
    #[serde(default)]
    pub categories: Vec<String>,
}

fn default_agent_role() -> String {
    "agent".into()
}

/// One thing wrong with a config file, located as precisely as we can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    /// Full key path, e.g. `mailbox[0].port` or `support.address`.
    pub key: String,
    pub message: String,
}

/// All the problems of one config file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub origin: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {n} configuration problem{}",
            self.origin,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}", self.origin)?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
            }
            if p.key.is_empty() {
                write!(f, ": {}", p.message)?;
            } else {
                write!(f, ": key `{}`: {}", p.key, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, &origin),
            Err(e) => Err(ConfigError {
                origin,
                problems: vec![Problem {
                    line: None,
                    key: String::new(),
                    message: format!("cannot read the file: {e}"),
                }],
            }),
        }
    }

    /// Parses TOML text; `origin` names the file in errors.
    ///
    /// serde stops at the first bad key, so on each error we note it, blank the offending
    /// lines out and parse again: the admin gets every problem in one run.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut work = text.to_string();
        // Each round removes at least one line, so this terminates; the cap is a backstop.
        for _ in 0..=text.lines().count() {
            match toml::from_str::<Config>(&work) {
                Ok(config) => {
                    problems.extend(config.validate(&work));
                    break;
                }
                Err(e) => {
                    let span = e.span();
                    let line = span.as_ref().map(|s| line_of(&work, s.start));
                    let key = span
                        .as_ref()
                        .map(|s| key_path_at(&work, s.start))
                        .unwrap_or_default();
                    let message = e.message().trim().to_string();
                    problems.push(Problem { line, key, message });
                    match span.and_then(|s| blank_lines(&work, s)) {
                        Some(next) if next != work => work = next,
                        _ => break,
                    }
                }
            }
        }
        if problems.is_empty() {
            // Only reachable on success: the loop records a problem on every other exit.
            toml::from_str::<Config>(&work).map_err(|e| ConfigError {
                origin: origin.to_string(),
                problems: vec![Problem {
                    line: None,
                    key: String::new(),
                    message: e.message().to_string(),
                }],
            })
        } else {
            problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
            Err(ConfigError {
                origin: origin.to_string(),
                problems,
            })
        }
    }

    /// Semantic checks serde cannot express. `text` locates keys for line numbers.
    fn validate(&self, text: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |key: String, message: String| {
            let line = find_key_line(text, &key);
            out.push(Problem { line, key, message });
        };
        if EmailAddress::parse(&self.support.address).is_none() {
            bad(
                "support.address".into(),
                format!("`{}` is not an email address", self.support.address),
            );
        }
        for (i, a) in self.support.extra_addresses.iter().enumerate() {
            if EmailAddress::parse(a).is_none() {
                bad(
                    format!("support.extra_addresses[{i}]"),
                    format!("`{a}` is not an email address"),
                );
            }
        }
        if !self.support.ticket_tag.contains("{number}") {
            bad(
                "support.ticket_tag".into(),
                "must contain `{number}`".into(),
            );
        }
        if !(self.support.public_url.starts_with("http://")
            || self.support.public_url.starts_with("https://"))
        {
            bad(
                "support.public_url".into(),
                format!(
                    "`{}` must start with http:// or https://",
                    self.support.public_url
                ),
            );
        }
        let url = &self.database.url;
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            bad(
                "database.url".into(),
                "PostgreSQL support is not built yet; use sqlite://PATH".into(),
            );
        } else if !url.starts_with("sqlite:") {
            bad(
                "database.url".into(),
                format!("`{url}` is not a sqlite://PATH URL"),
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
        let mut names = std::collections::HashSet::new();
        for (i, m) in self.mailbox.iter().enumerate() {
            let k = |f: &str| format!("mailbox[{i}].{f}");
            if !names.insert(m.name.clone()) {
                bad(k("name"), format!("`{}` is used by two mailboxes", m.name));
            }
            if m.host.trim().is_empty() {
                bad(k("host"), "must not be empty".into());
            }
            if m.tls == TlsMode::None && !is_loopback(&m.host) {
                bad(
                    k("tls"),
                    format!(
                        "`none` is only allowed for a loopback host, not `{}`",
                        m.host
                    ),
                );
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
            if s.host.trim().is_empty() {
                bad("smtp.host".into(), "must not be empty".into());
            }
            if s.tls == TlsMode::None && !is_loopback(&s.host) {
                bad(
                    "smtp.tls".into(),
                    format!(
                        "`none` is only allowed for a loopback host, not `{}`",
                        s.host
                    ),
                );
            }
            if s.password_file.is_some() && s.password_env.is_some() {
                bad(
                    "smtp.password_file".into(),
                    "set at most one of password_file and password_env".into(),
                );
            }
        }
        for (i, a) in self.agent.iter().enumerate() {
            if EmailAddress::parse(&a.email).is_none() {
                bad(
                    format!("agent[{i}].email"),
                    format!("`{}` is not an email address", a.email),
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
            if a.role != "agent" && a.role != "admin" {
                bad(
                    format!("agent[{i}].role"),
                    format!("`{}` must be `agent` or `admin`", a.role),
                );
            }
        }
        out
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

    /// The support address, parsed (validated at load time).
    pub fn support_address(&self) -> EmailAddress {
        EmailAddress::parse(&self.support.address)
            .unwrap_or_else(|| EmailAddress::from_parts("support", "localhost"))
    }

    /// Every address that is ours: mail from them is never a customer's.
    pub fn own_addresses(&self) -> Vec<EmailAddress> {
        let mut v = vec![self.support_address()];
        v.extend(
            self.support
                .extra_addresses
                .iter()
                .filter_map(|a| EmailAddress::parse(a)),
        );
        v
    }
}

/// True for `localhost` and loopback IP literals.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// `table.key` (or `table[i].key` for arrays of tables) for the line holding `offset`.
fn key_path_at(text: &str, offset: usize) -> String {
    let target = line_of(text, offset);
    let mut table = String::new();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    let mut key = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if i + 1 > target {
            break;
        }
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_string();
            let n = counts.entry(name.clone()).or_insert(0);
            table = format!("{name}[{n}]");
            *n += 1;
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_string();
        }
        if i + 1 == target {
            key = t.split('=').next().unwrap_or("").trim().to_string();
            if key.starts_with('[') {
                key.clear();
            }
        }
    }
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

/// Replaces the lines covering `span` by empty lines, keeping line numbers stable.
/// A span on a table header (unknown table, missing key) blanks the whole table up to the
/// next header, so the rest still parses and its problems are reported too.
fn blank_lines(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    let start = text[..span.start.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let mut end = text[span.end.min(text.len())..]
        .find('\n')
        .map_or(text.len(), |i| span.end.min(text.len()) + i);
    if text[start..end].trim_start().starts_with('[') && !text[start..end].contains('=') {
        let mut at = end;
        for (i, line) in text[end..].split_inclusive('\n').enumerate() {
            // The first piece is the rest of the header line itself.
            if i > 0 && line.trim_start().starts_with('[') {
                break;
            }
            at += line.len();
        }
        end = at;
    }
    let cut = &text[start..end];
    let newlines = cut.matches('\n').count();
    Some(format!(
        "{}{}{}",
        &text[..start],
        "\n".repeat(newlines),
        &text[end..]
    ))
}

/// Best-effort line of `table.key` (for semantic errors found after parsing).
fn find_key_line(text: &str, path: &str) -> Option<usize> {
    let (table, key) = path.rsplit_once('.').unwrap_or(("", path));
    let mut current = String::new();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    let mut table_line = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_string();
            let n = counts.entry(name.clone()).or_insert(0);
            current = format!("{name}[{n}]");
            *n += 1;
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            current = name.trim().to_string();
        }
        if current == table && table_line.is_none() && t.starts_with('[') {
            table_line = Some(i + 1);
        }
        let base_key = key.split('[').next().unwrap_or(key);
        if current == table && t.split('=').next().map(str::trim) == Some(base_key) {
            return Some(i + 1);
        }
    }
    table_line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.support.reopen_days, 30);
        assert_eq!(c.limits.acks_per_sender_per_hour, 5);
        assert_eq!(c.limits.max_collaborators, 20);
        assert_eq!(c.limits.notifications_per_sender_per_hour, 10);
        assert_eq!(c.limits.notification_digest_minutes, 15);
        let err =
            Config::parse("[limits]\nnotification_digest_minutes = 0\n", "t.toml").unwrap_err();
        assert_eq!(err.problems[0].key, "limits.notification_digest_minutes");
        assert_eq!(c.database.url, "sqlite://supportd.db");
    }

    #[test]
    fn reports_every_problem_with_line_and_key() {
        let text = "[support]\naddress = \"support@example.test\"\nreopn_days = 3\n\n[limits]\nmax_message_bytes = \"big\"\n\n[[mailbox]]\nhost = \"imap.example.test\"\nusername = \"u\"\npassword_env = \"X\"\ntls = \"none\"\n";
        let err = Config::parse(text, "s.toml").unwrap_err();
        let shown = err.to_string();
        assert_eq!(err.problems.len(), 3, "{shown}");
        assert_eq!(err.problems[0].line, Some(3));
        assert_eq!(err.problems[0].key, "support.reopn_days");
        assert_eq!(err.problems[1].line, Some(6));
        assert_eq!(err.problems[1].key, "limits.max_message_bytes");
        assert_eq!(err.problems[2].key, "mailbox[0].tls");
        assert_eq!(err.problems[2].line, Some(12));
        assert!(
            shown.contains("s.toml:3: key `support.reopn_days`"),
            "{shown}"
        );
    }

    #[test]
    fn processing_budget_is_seconds_within_bounds() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(
            c.limits.processing_budget(),
            std::time::Duration::from_secs(10)
        );
        let c = Config::parse("[limits]\nprocessing_budget_seconds = 0.25\n", "t.toml").unwrap();
        assert_eq!(
            c.limits.processing_budget(),
            std::time::Duration::from_millis(250)
        );
        let c = Config::parse("[limits]\nprocessing_budget_seconds = 3\n", "t.toml").unwrap();
        assert_eq!(
            c.limits.processing_budget(),
            std::time::Duration::from_secs(3)
        );
        for bad in ["0", "-1", "61", "nan", "inf"] {
            let text = format!("[limits]\nprocessing_budget_seconds = {bad}\n");
            let err = Config::parse(&text, "b.toml").unwrap_err();
            assert_eq!(err.problems.len(), 1, "{bad}: {err}");
            assert_eq!(err.problems[0].key, "limits.processing_budget_seconds");
            assert_eq!(err.problems[0].line, Some(2), "{bad}");
        }
    }

    #[test]
    fn missing_required_mailbox_key_is_reported() {
        let err = Config::parse("[[mailbox]]\nport = 993\n", "m.toml").unwrap_err();
        assert!(err.to_string().contains("host"), "{err}");
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("imap.example.test"));
    }

    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../config/supportd.toml");
        Config::parse(text, "config/supportd.toml").unwrap();
    }
}
