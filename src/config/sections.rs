//! The sections of `supportd.toml`, one type each, with their defaults and the serde
//! conversions that make their values domain types at the edge.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use url::Url;

use crate::mail::address::EmailAddress;
use crate::mail::compose::deliverable;
use crate::tickets::{Intake, Role};

use super::is_loopback;

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
    pub(super) fn refusal(self, host: &str) -> Option<String> {
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

/// `[incidents]`: several similar urgent tickets within a window are one incident. The
/// domain's own policy type serves as the section (its defaults are the section's).
pub use crate::tickets::incident::IncidentPolicy as Incidents;

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
    /// Where `supportd ingest` keeps the built rules for the next process (pipe mode: one
    /// process per message), in `supportd-triage.cache`. Default: the SQLite database's
    /// directory; none on PostgreSQL unless set. `""` turns the cache off.
    pub cache_dir: Option<PathBuf>,
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
