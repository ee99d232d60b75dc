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
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use url::Url;

use crate::mail::address::EmailAddress;
use crate::mail::compose::deliverable;
use crate::tickets::{Intake, Role};
use crate::toml_check::{Collector, Document};

/// Every problem of one config file, each with file, line and key.
pub type ConfigError = crate::toml_check::Problems;
pub use crate::toml_check::Problem;

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

/// Where a [`Config`] came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file's path as given, or `built-in defaults`.
    pub origin: String,
    pub text: Arc<str>,
}

impl Default for Source {
    fn default() -> Self {
        Source {
            origin: "built-in defaults".into(),
            text: Arc::from(""),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Support {
    /// Shown in mails ("Example Support").
    pub name: String,
    /// The address customers write to and our mail comes from (also the SMTP envelope
    /// sender); plus-addresses (`local+KEY@domain`) derive from it.
    #[serde(deserialize_with = "sender_address")]
    pub address: EmailAddress,
    /// Other addresses that deliver into our mailboxes; mail *from* any of them is ignored.
    pub extra_addresses: Vec<EmailAddress>,
    /// Base of the direct links in mails, `{public_url}/t/{ACCESSKEY}`: http or https, may
    /// carry a path prefix (`https://example.org/support`), no query or fragment.
    #[serde(deserialize_with = "public_url")]
    pub public_url: Url,
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

/// The built-in `support.public_url`.
const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8080";

impl Default for Support {
    fn default() -> Self {
        Support {
            name: "Support".into(),
            address: EmailAddress::from_parts("support", "localhost"),
            extra_addresses: Vec::new(),
            // A constant that parses (the `defaults_are_valid` test shows it), so this cannot
            // fail; a Default impl has no way to report an error.
            #[allow(clippy::expect_used)]
            public_url: Url::parse(DEFAULT_PUBLIC_URL).expect("the built-in public_url parses"),
            phone: String::new(),
            ticket_tag: "[#{number}]".into(),
            reopen_days: 30,
            acknowledge: true,
            notify_agents: true,
            notify_on_close: true,
        }
    }
}

/// `support.address`: an email address that lettre can also write as a sender.
fn sender_address<'de, D: Deserializer<'de>>(d: D) -> Result<EmailAddress, D::Error> {
    let address = EmailAddress::deserialize(d)?;
    if !deliverable(&address) {
        return Err(D::Error::custom(format!(
            "`{address}` cannot be written as the sender of a mail"
        )));
    }
    Ok(address)
}

/// `support.public_url`, see [`parse_public_url`].
fn public_url<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
    let text = String::deserialize(d)?;
    parse_public_url(&text).map_err(D::Error::custom)
}

/// An absolute http(s) URL that links can be appended to: a path prefix is kept
/// (`https://example.org/support`), a query, a fragment or credentials are refused.
pub fn parse_public_url(text: &str) -> Result<Url, String> {
    let lower = text.trim_start().to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!("`{text}` must start with http:// or https://"));
    }
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a valid URL: {e}"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{text}` must have no ?query or #fragment: ticket links are appended to it"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{text}` must not carry a user name or password: it is shown to customers"
        ));
    }
    Ok(url)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    /// `sqlite://PATH`, or `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=…]`.
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
    /// Plain text: only to a loopback host, which [`Config::parse`] checks for every server
    /// (the one place; the IMAP and SMTP clients rely on it).
    None,
}

impl TlsMode {
    /// The rule for plain text, for any server: only to this machine.
    fn refusal(self, host: &str) -> Option<String> {
        (self == TlsMode::None && !is_loopback(host))
            .then(|| format!("`none` is only allowed for a loopback host, not `{host}`"))
    }
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
    /// `IP:PORT` the pages are served on. Empty: `supportd run` serves none, and
    /// `supportd serve` listens on [`Web::SERVE_DEFAULT`].
    pub listen: String,
    /// Reverse proxies whose `X-Forwarded-For` names the client (the rate limits count per
    /// client address); a request from any other peer counts as that peer.
    pub trusted_proxies: Vec<IpAddr>,
    /// Sign-in links mailed to one address within an hour; further requests send nothing.
    pub signins_per_address_per_hour: u32,
    /// A request (its upload included) must be answered within this time.
    pub request_timeout_seconds: u64,
}

impl Web {
    /// Where `supportd serve` listens when `listen` is empty.
    pub const SERVE_DEFAULT: &'static str = "127.0.0.1:8080";
}

impl Default for Web {
    fn default() -> Self {
        Web {
            listen: String::new(),
            trusted_proxies: Vec::new(),
            signins_per_address_per_hour: 5,
            request_timeout_seconds: 120,
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
    /// The same normalised text from the same sender within this many minutes, under
    /// another Message-ID, becomes a reply on the first ticket without a second ack. 0 = off.
    pub near_duplicate_minutes: u32,
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
            near_duplicate_minutes: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Who may open tickets: `open`, `known` or `support-users`.
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

/// `[incidents]`: several similar urgent tickets within a window are one incident.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Incidents {
    pub enabled: bool,
    /// Tickets of this urgency level or more urgent are grouped (1–4).
    pub max_level: u8,
    /// Similar tickets within the window, the newest included, that open an incident (≥ 2).
    pub min_tickets: u32,
    pub window_minutes: u32,
    /// How alike two tickets' texts must be, 0–1 (shingles or shared rare terms).
    pub similarity: f64,
    /// Who gets the one urgent mail about a new incident. Required for grouping: without
    /// it nothing is grouped (nobody would be paged, yet customers would be told engineers
    /// are on it).
    pub oncall: Option<EmailAddress>,
}

impl Default for Incidents {
    fn default() -> Self {
        Incidents {
            enabled: true,
            max_level: 2,
            min_tickets: 3,
            window_minutes: 15,
            similarity: 0.4,
            oncall: None,
        }
    }
}

/// `[sla]`: reminders before a due time, an escalation when it passes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaAlerts {
    /// The assignee (or the category's agents) is reminded once this share of the time to a
    /// first-response or resolution due time has gone, in percent (1–99; 0 = no reminders).
    pub remind_at_percent: u32,
    /// Who gets one escalation when a due time passes (none: no escalation mail; the ticket
    /// is still listed by `tickets list --overdue`).
    pub supervisor: Option<EmailAddress>,
    /// How often the daemon checks the clocks, in seconds.
    pub check_seconds: u64,
}

impl Default for SlaAlerts {
    fn default() -> Self {
        SlaAlerts {
            remind_at_percent: 75,
            supervisor: None,
            check_seconds: 60,
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
#[serde(deny_unknown_fields, default)]
pub struct Kb {
    /// The articles (`*.md` with front matter); `#kb` drafts go to its `drafts/`. A missing
    /// directory is an empty Help Center.
    pub dir: PathBuf,
    /// The score (bm25 over the title and keywords, sign flipped: FTS5's on SQLite, the same
    /// formula in SQL on PostgreSQL, so one value serves both) an article must reach to be
    /// suggested in an acknowledgement. Set for precision: a wrong
    /// suggestion is worse than none (see README, Help Center, for the measured figures).
    pub suggest_threshold: f64,
    /// The different words of an article's title and keywords a mail must match for it to
    /// be suggested (one word, even repeated, is no evidence of the topic).
    pub suggest_min_words: u32,
    /// The most articles one acknowledgement lists; 0 turns suggestions off.
    pub max_suggestions: u32,
}

impl Default for Kb {
    fn default() -> Self {
        Kb {
            dir: PathBuf::from("kb"),
            suggest_threshold: Kb::DEFAULT_THRESHOLD,
            suggest_min_words: 2,
            max_suggestions: 3,
        }
    }
}

impl Kb {
    /// The shipped threshold (measured on tests/fixtures/kb-suggest).
    pub const DEFAULT_THRESHOLD: f64 = 3.0;

    /// Where `#kb` drafts are written.
    pub fn drafts_dir(&self) -> PathBuf {
        self.dir.join("drafts")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub email: EmailAddress,
    #[serde(default)]
    pub name: String,
    /// `agent` or `admin`.
    #[serde(default = "default_agent_role", deserialize_with = "staff_role")]
    pub role: Role,
    /// Triage category ids this agent is notified about; empty = all (see `tickets::notify`).
    #[serde(default)]
    pub categories: Vec<String>,
}

fn default_agent_role() -> Role {
    Role::Agent
}

/// `agent.role`: a staff role (customers are not configured here).
fn staff_role<'de, D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
    let text = String::deserialize(d)?;
    match Role::parse(&text) {
        Some(role) if role.is_staff() => Ok(role),
        _ => Err(D::Error::custom(format!(
            "`{text}` must be `agent` or `admin`"
        ))),
    }
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
