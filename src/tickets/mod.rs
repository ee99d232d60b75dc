//! The support domain, pure: tickets, users, access keys, SLA ([`mod@self`]); what one
//! inbound message means ([`decide`]); everything that then happens, as data ([`plan`]);
//! the mails that go out ([`outbound`], rendered by [`ack`], [`replies`], [`notify`]); who
//! we are ([`desk`]); agents' commands ([`commands`]) and authentication ([`auth`]).
//! Nothing here does I/O: the pipeline gathers what the store knows, asks [`decide`] and
//! [`plan`], and applies the plan.

use chrono::{DateTime, Duration, Utc};
use regex::Regex;
use serde::Serialize;

use crate::mail::address::EmailAddress;

pub mod ack;
pub mod auth;
pub mod commands;
pub mod decide;
pub mod desk;
pub mod incident;
pub mod notify;
pub mod outbound;
pub mod plan;
pub mod replies;
pub mod similar;
pub mod sla;

pub use decide::{
    access_keys_in, ack_age_permission, agent_keys_in, decide, intake_allows, referenced_ids,
    reply_permission, Decision, Lookup, ThreadRule, AGENT_KEY_PREFIX,
};

/// A subject as mails and pages show it: `(no subject)` in place of an empty one.
pub fn shown_subject(subject: &str) -> &str {
    if subject.is_empty() {
        "(no subject)"
    } else {
        subject
    }
}

/// Role of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Agent,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "customer" => Some(Role::Customer),
            "agent" => Some(Role::Agent),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Agents and admins answer tickets.
    pub fn is_staff(self) -> bool {
        matches!(self, Role::Agent | Role::Admin)
    }
}

/// Lifecycle of a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketStatus {
    Open,
    Pending,
    Closed,
}

impl TicketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Open => "open",
            TicketStatus::Pending => "pending",
            TicketStatus::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<TicketStatus> {
        match s {
            "open" => Some(TicketStatus::Open),
            "pending" => Some(TicketStatus::Pending),
            "closed" => Some(TicketStatus::Closed),
            _ => None,
        }
    }
}

/// The secret that lets a customer see and answer their ticket (link and plus-address).
///
/// 20 characters of lower-case base32: 100 bits of randomness, safe in URLs and in the local
/// part of an address (where some servers fold case), never derived from the ticket number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AccessKey(String);

const KEY_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
pub const ACCESS_KEY_LEN: usize = 20;

impl AccessKey {
    /// Encodes random bytes (from the OS) as a key.
    pub fn from_random(bytes: [u8; ACCESS_KEY_LEN]) -> AccessKey {
        // 256 is a multiple of 32, so masking keeps the distribution uniform.
        AccessKey(
            bytes
                .iter()
                .map(|b| char::from(KEY_ALPHABET[usize::from(b & 31)]))
                .collect(),
        )
    }

    /// Accepts a key as it appears in an address or URL (case-insensitive).
    pub fn parse(s: &str) -> Option<AccessKey> {
        let s = s.to_ascii_lowercase();
        (s.len() == ACCESS_KEY_LEN && s.bytes().all(|b| KEY_ALPHABET.contains(&b)))
            .then_some(AccessKey(s))
    }

    /// A key as the database stores it: ours, written when the ticket was made (tickets of
    /// old versions may hold keys of another shape; they are taken as they are).
    pub fn stored(s: String) -> AccessKey {
        AccessKey(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The subject tag, e.g. `[#{number}]` → `[#1042]`.
#[derive(Debug, Clone)]
pub struct TicketTag {
    template: String,
    pattern: Regex,
}

impl TicketTag {
    /// `template` must contain `{number}` (checked by config validation).
    pub fn new(template: &str) -> Result<TicketTag, regex::Error> {
        let (before, after) = template.split_once("{number}").unwrap_or((template, ""));
        let pattern = Regex::new(&format!(
            "{}([0-9]{{1,18}}){}",
            regex::escape(before),
            regex::escape(after)
        ))?;
        Ok(TicketTag {
            template: template.to_string(),
            pattern,
        })
    }

    pub fn render(&self, number: i64) -> String {
        self.template.replace("{number}", &number.to_string())
    }

    /// Ticket numbers tagged in a subject, in order.
    pub fn numbers_in(&self, subject: &str) -> Vec<i64> {
        self.pattern
            .captures_iter(subject)
            .filter_map(|c| c.get(1)?.as_str().parse().ok())
            .collect()
    }

    /// `[#N] subject`, without stacking a second tag when the subject already has it.
    pub fn tag_subject(&self, number: i64, subject: &str) -> String {
        let tag = self.render(number);
        if subject.contains(&tag) {
            subject.to_string()
        } else if subject.is_empty() {
            tag
        } else {
            format!("{tag} {subject}")
        }
    }
}

/// Service-level due times of a new ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sla {
    pub first_response_due: DateTime<Utc>,
    pub resolution_due: DateTime<Utc>,
}

impl Sla {
    pub fn starting(at: DateTime<Utc>, first_response_hours: u32, resolution_hours: u32) -> Sla {
        Sla {
            first_response_due: at + Duration::hours(i64::from(first_response_hours)),
            resolution_due: at + Duration::hours(i64::from(resolution_hours)),
        }
    }
}

/// A ticket a plan refers to: one that exists, or the one the plan creates (its row id is
/// known once the store has written it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketRef {
    Existing { id: i64, number: i64 },
    New { number: i64 },
}

impl TicketRef {
    pub fn number(self) -> i64 {
        match self {
            TicketRef::Existing { number, .. } | TicketRef::New { number } => number,
        }
    }
}

/// What the store knows about a ticket, as far as threading needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketSummary {
    pub id: i64,
    pub number: i64,
    pub status: TicketStatus,
    pub closed_at: Option<DateTime<Utc>>,
    /// Comparison keys (lower-cased) of the requester and the Cc collaborators.
    pub participants: Vec<String>,
}

/// A known user, as far as decisions need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownUser {
    pub id: i64,
    pub role: Role,
    pub active: bool,
    /// Flagged as a support user of their organisation (intake `support-users`).
    pub support_user: bool,
    /// May open tickets under intake `known`: an admin created them, or a ticket they
    /// requested was accepted. Being Cc'd, or replying to a thread, does not make one known.
    pub known: bool,
    /// Organisation: set explicitly, else the email domain.
    pub org: String,
}

/// Who may open tickets (`policy.intake` of the configuration, read straight into this type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Intake {
    /// Anyone.
    Open,
    /// Known users only: made by an admin, or the requester of an accepted ticket.
    Known,
    /// Support users of their organisation only.
    SupportUsers,
}

/// The policy knobs [`decide`] and [`plan`] need; built once from the config.
#[derive(Debug, Clone)]
pub struct Policy {
    pub own_addresses: Vec<EmailAddress>,
    pub reopen_days: u32,
    pub acks_per_sender_per_hour: u32,
    pub acknowledge: bool,
    /// Who may open tickets.
    pub intake: Intake,
    /// Agent replies need an Authentication-Results pass from `authserv_id` (on by default;
    /// the agent channel is required either way).
    pub agents_require_auth: bool,
    pub authserv_id: String,
    /// Mail older than this (by its arrival) causes no mail at all (safe first import).
    pub ack_max_age_hours: u32,
    /// Cc collaborators kept per ticket.
    pub max_collaborators: usize,
    /// Mail agents about new tickets and customer replies.
    pub notify_agents: bool,
    /// Tell the customer when an agent closes their ticket.
    pub notify_on_close: bool,
    /// Individual notifications per sender within an hour before digests take over (0: no
    /// limit).
    pub notifications_per_sender_per_hour: u32,
    /// How long a held notification waits at most for its digest.
    pub notification_digest_minutes: u32,
    /// The Help Center directory (`[kb] dir`), as configured: `#kb` drafts go to its
    /// `drafts/`, and the agent is told to move them into it.
    pub kb_dir: String,
    /// The same text from the same sender within this many minutes, under another
    /// Message-ID, is a reply on the first ticket (0: off).
    pub near_duplicate_minutes: u32,
    /// Grouping urgent tickets into incidents.
    pub incidents: incident::IncidentPolicy,
}

/// Why a message may not open a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    /// The sender's account is deactivated.
    Inactive,
    /// `intake = "known"` and the sender is no known user (created by an admin, or the
    /// requester of an accepted ticket).
    UnknownSender,
    /// `intake = "support-users"` and the sender is not a support user of their organisation.
    NotSupportUser,
}

impl Refusal {
    /// The outbox kind and template of the answer.
    pub fn kind(self) -> &'static str {
        match self {
            Refusal::Inactive => "inactive",
            Refusal::UnknownSender | Refusal::NotSupportUser => "rejected",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Inactive => "the sender's account is deactivated",
            Refusal::UnknownSender => "intake policy `known`: the sender is not a known user",
            Refusal::NotSupportUser => {
                "intake policy `support-users`: the sender is not a support user of their organisation"
            }
        }
    }
}

/// A user, with what mails need to address them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRecord {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub active: bool,
}

impl UserRecord {
    /// An active agent or admin.
    pub fn is_active_staff(&self) -> bool {
        self.active && self.role.is_staff()
    }
}

/// A ticket as notifications, agent commands and relays need it.
#[derive(Debug, Clone, Serialize)]
pub struct TicketRecord {
    pub id: i64,
    pub number: i64,
    pub subject: String,
    pub status: TicketStatus,
    pub closed_at: Option<DateTime<Utc>>,
    pub category: String,
    pub urgency: u8,
    pub access_key: AccessKey,
    /// None for tickets from before migration 0002 until their first notification.
    pub agent_key: Option<AccessKey>,
    pub created_at: DateTime<Utc>,
    pub first_response_due: DateTime<Utc>,
    pub resolution_due: DateTime<Utc>,
    pub first_response_at: Option<DateTime<Utc>>,
    pub requester: UserRecord,
    pub assignee: Option<UserRecord>,
    /// The customer's language (ISO 639-1) as triage detected it; '' when unknown.
    pub language: String,
    /// What triage first said (before any agent changed it): an agent's correction is
    /// compared with it.
    pub triage_category: String,
    pub triage_urgency: u8,
}

/// Where access keys and Message-IDs come from (the OS's randomness in production, a
/// counter in tests): like the clock, the one impure input the pure core is handed.
pub trait IdSource: Send + Sync {
    fn access_key(&self) -> AccessKey;
    /// A new Message-ID (without angle brackets) under `domain`.
    fn message_id(&self, domain: &str) -> String;
}

/// Organisation of a user: explicit, else the email domain.
pub fn effective_org(org: &str, email: &str) -> String {
    if org.trim().is_empty() {
        email.rsplit('@').next().unwrap_or("").to_ascii_lowercase()
    } else {
        org.trim().to_string()
    }
}
