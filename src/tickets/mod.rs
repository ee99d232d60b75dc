//! The support domain: tickets, users, access keys, SLA, and the decision of what one inbound
//! message means (threading, reopening, loops). Pure: the store loads a [`Lookup`], [`decide`]
//! returns a [`Decision`], the pipeline applies it.

use chrono::{DateTime, Duration, Utc};
use regex::Regex;

use crate::mail::address::EmailAddress;
use crate::mail::loops::Origin;
use crate::mail::parse::InboundMail;

pub mod ack;
pub mod auth;
pub mod commands;
pub mod desk;
pub mod notify;
pub mod replies;

/// Role of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Everything the store found that bears on one message.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// The Message-ID is stored already.
    pub duplicate: bool,
    /// Ticket owning a Message-ID named by In-Reply-To or References.
    pub by_reference: Option<TicketSummary>,
    /// Ticket whose access key is the detail of a plus-addressed recipient.
    pub by_access_key: Option<TicketSummary>,
    /// Ticket whose agent key is the detail (`a-KEY`) of a plus-addressed recipient.
    pub by_agent_key: Option<TicketSummary>,
    /// Ticket of a mail we sent to agents only (a notification) that In-Reply-To or
    /// References names: with the agent key, the channel only agents receive.
    pub by_agent_mail: Option<TicketSummary>,
    /// Tickets whose numbers are tagged in the subject.
    pub by_tag: Vec<TicketSummary>,
    /// The sender, if already a user.
    pub sender: Option<KnownUser>,
    /// For bounces: the outbox row of ours that bounced, with its ticket.
    pub bounced: Option<(i64, TicketSummary)>,
    /// Acknowledgements queued to this sender within the last hour.
    pub recent_acks: u32,
}

/// Which threading rule matched (SPEC §1, rules 2–4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadRule {
    Reference,
    AccessKey,
    /// The agent channel: `support+a-KEY@…`, the Reply-To of agent notifications.
    AgentKey,
    SubjectTag,
}

impl ThreadRule {
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadRule::Reference => "In-Reply-To/References",
            ThreadRule::AccessKey => "access key in recipient address",
            ThreadRule::AgentKey => "agent key in recipient address",
            ThreadRule::SubjectTag => "subject tag from a participant",
        }
    }
}

/// What to do with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Already stored: nothing changes, nothing is sent.
    Duplicate,
    /// Recorded for the audit trail only (own mail, stray auto-replies and bounces).
    Ignored { reason: String },
    /// A bounce of our outbox row: internal note on its ticket, the row marked failed.
    Bounce {
        outbox_id: i64,
        ticket: TicketSummary,
    },
    /// An automatic answer (out of office) on a ticket: internal note, no state change.
    AutoReplyNote {
        ticket: TicketSummary,
        reason: String,
    },
    /// A reply on an existing ticket.
    Reply {
        ticket: TicketSummary,
        rule: ThreadRule,
        /// Status after the reply (closed/pending → open).
        reopen: bool,
    },
    /// A reply from an active agent or admin, authenticated and through the agent channel:
    /// commands, then relayed to the customer.
    AgentReply {
        ticket: TicketSummary,
        rule: ThreadRule,
    },
    /// Mail from an agent's address that failed authentication or did not come through the
    /// agent channel: an internal note flagged unverified, and the agents told. Never
    /// relayed; its commands never run.
    UnverifiedAgentMail {
        ticket: TicketSummary,
        reason: String,
    },
    /// Mail from a non-participant that threads to `ticket` only by a Message-ID: an internal
    /// note on it for the agents; for the sender, `then` (a new ticket, or a refusal), which
    /// says nothing about `ticket`. Never reopens, never relays.
    NonParticipant {
        ticket: TicketSummary,
        then: Box<Decision>,
    },
    /// Refused by the support policy (or an inactive user): recorded, politely answered.
    Rejected {
        refusal: Refusal,
        /// Whether to send the templated answer, or why not.
        reply: Result<(), String>,
    },
    /// A new ticket; `ack` says whether to acknowledge or why not.
    NewTicket {
        ack: Result<(), String>,
        /// A closed ticket past `reopen_days` that this one continues.
        follows: Option<TicketSummary>,
    },
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

/// The policy knobs [`decide`] needs.
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
}

/// Why a message may not open a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// May this sender open a ticket under `intake`? Staff always may.
pub fn intake_allows(intake: Intake, sender: Option<&KnownUser>) -> Result<(), Refusal> {
    if sender.is_some_and(|u| u.role.is_staff()) {
        return Ok(());
    }
    match intake {
        Intake::Open => Ok(()),
        Intake::Known if sender.is_some_and(|u| u.known) => Ok(()),
        Intake::Known => Err(Refusal::UnknownSender),
        Intake::SupportUsers if sender.is_some_and(|u| u.support_user) => Ok(()),
        Intake::SupportUsers => Err(Refusal::NotSupportUser),
    }
}

/// Prefix of an agent key in a plus-address detail: `support+a-KEY@domain`.
pub const AGENT_KEY_PREFIX: &str = "a-";

/// Agent keys named by plus-addressed recipients (`local+a-KEY@domain`) of our own addresses.
pub fn agent_keys_in(mail: &InboundMail, own: &[EmailAddress]) -> Vec<AccessKey> {
    mail.to
        .iter()
        .chain(mail.cc.iter())
        .filter_map(|m| m.email.split_detail())
        .filter(|(base, _)| own.contains(base))
        .filter_map(|(_, detail)| {
            let d = detail.to_ascii_lowercase();
            AccessKey::parse(d.strip_prefix(AGENT_KEY_PREFIX)?)
        })
        .collect()
}

/// Safe first import: mail that reached the mailbox more than `max_age_hours` ago is imported
/// (tickets, replies, notes) but causes no mail at all — no acknowledgement, no agent
/// notification, no relayed reply, no refusal — so pointing supportd at an old inbox emails
/// nobody.
pub fn ack_age_permission(
    received_at: DateTime<Utc>,
    now: DateTime<Utc>,
    max_age_hours: u32,
) -> Result<(), String> {
    if now - received_at > Duration::hours(i64::from(max_age_hours)) {
        Err(format!(
            "not sent: the mail arrived {} h ago, more than limits.ack_max_age_hours",
            (now - received_at).num_hours()
        ))
    } else {
        Ok(())
    }
}

/// Access keys named by plus-addressed recipients of our own addresses.
pub fn access_keys_in(mail: &InboundMail, own: &[EmailAddress]) -> Vec<AccessKey> {
    mail.to
        .iter()
        .chain(mail.cc.iter())
        .filter_map(|m| m.email.split_detail())
        .filter(|(base, _)| own.contains(base))
        .filter_map(|(_, detail)| AccessKey::parse(detail))
        .collect()
}

/// Message-IDs that may thread this mail: In-Reply-To first, then References newest first,
/// each once (the parser already capped both lists).
pub fn referenced_ids(mail: &InboundMail) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    mail.in_reply_to
        .iter()
        .chain(mail.references.iter().rev())
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect()
}

/// Decides what `mail` means, given what the store knows. The first matching rule wins.
pub fn decide(
    mail: &InboundMail,
    origin: &Origin,
    lookup: &Lookup,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Decision {
    if lookup.duplicate {
        return Decision::Duplicate;
    }
    let from_self = policy.own_addresses.iter().any(|own| {
        *own == mail.sender.email
            || mail
                .sender
                .email
                .split_detail()
                .is_some_and(|(base, _)| base == *own)
    });
    if from_self {
        return Decision::Ignored {
            reason: "sent from our own support address".into(),
        };
    }
    if *origin == Origin::Bounce {
        return match &lookup.bounced {
            Some((outbox_id, ticket)) => Decision::Bounce {
                outbox_id: *outbox_id,
                ticket: ticket.clone(),
            },
            None => Decision::Ignored {
                reason: "delivery status notification for no mail of ours".into(),
            },
        };
    }

    let sender_key = mail.sender.email.key();
    let sender_is_staff = lookup.sender.as_ref().is_some_and(|u| u.role.is_staff());
    let participates = |t: &TicketSummary| sender_is_staff || t.participants.contains(&sender_key);
    // A Message-ID proves only that the sender saw the thread (anyone a customer forwards
    // to, or who guesses one); a key in the address or the tag from a participant is more.
    let by_reference = lookup.by_reference.clone();
    let stranger_reference = by_reference.clone().filter(|t| !participates(t));
    let threaded = by_reference
        .filter(|t| participates(t))
        .map(|t| (t, ThreadRule::Reference))
        .or_else(|| {
            lookup
                .by_access_key
                .clone()
                .map(|t| (t, ThreadRule::AccessKey))
        })
        .or_else(|| {
            lookup
                .by_agent_key
                .clone()
                .map(|t| (t, ThreadRule::AgentKey))
        })
        .or_else(|| {
            lookup
                .by_tag
                .iter()
                .find(|t| participates(t))
                .map(|t| (t.clone(), ThreadRule::SubjectTag))
        });

    if let Origin::AutoReply(reason) = origin {
        return match threaded.or_else(|| stranger_reference.map(|t| (t, ThreadRule::Reference))) {
            Some((ticket, _)) => Decision::AutoReplyNote {
                ticket,
                reason: reason.clone(),
            },
            None => Decision::Ignored {
                reason: format!("automatic reply ({reason}) to no ticket"),
            },
        };
    }

    if lookup.sender.as_ref().is_some_and(|u| !u.active) {
        return Decision::Rejected {
            refusal: Refusal::Inactive,
            reply: reply_permission(origin, lookup, policy),
        };
    }
    if sender_is_staff {
        if let Some(d) = agent_decision(mail, lookup, threaded.as_ref(), policy) {
            return d;
        }
    }
    let new_ticket =
        |follows: Option<TicketSummary>| match intake_allows(policy.intake, lookup.sender.as_ref())
        {
            Ok(()) => Decision::NewTicket {
                ack: ack_permission(origin, lookup, policy),
                follows,
            },
            Err(refusal) => Decision::Rejected {
                refusal,
                reply: reply_permission(origin, lookup, policy),
            },
        };

    match (threaded, stranger_reference) {
        (None, Some(ticket)) => Decision::NonParticipant {
            ticket,
            then: Box::new(new_ticket(None)),
        },
        (Some((ticket, rule)), _) => {
            let expired = ticket.status == TicketStatus::Closed
                && ticket.closed_at.is_some_and(|closed| {
                    now - closed > Duration::days(i64::from(policy.reopen_days))
                });
            if expired {
                new_ticket(Some(ticket))
            } else {
                let reopen = ticket.status != TicketStatus::Open;
                Decision::Reply {
                    ticket,
                    rule,
                    reopen,
                }
            }
        }
        (None, None) => new_ticket(None),
    }
}

/// What mail from an agent's address means when it threads to a ticket (None: it threads
/// nowhere, and may open a ticket like anyone's). Trusted only when it came through what only
/// agents receive (the agent-key address, or a reply to a notification) AND, unless the admin
/// opted out, our MTA authenticated it; anything else from an agent's address may be forged.
fn agent_decision(
    mail: &InboundMail,
    lookup: &Lookup,
    threaded: Option<&(TicketSummary, ThreadRule)>,
    policy: &Policy,
) -> Option<Decision> {
    let channel = lookup
        .by_agent_key
        .clone()
        .map(|t| (t, ThreadRule::AgentKey))
        .or_else(|| {
            lookup
                .by_agent_mail
                .clone()
                .map(|t| (t, ThreadRule::Reference))
        });
    let Some((ticket, rule)) = channel else {
        let (ticket, rule) = threaded?;
        return Some(Decision::UnverifiedAgentMail {
            ticket: ticket.clone(),
            reason: format!(
                "it reached the ticket by {}, not through the agent channel (the support+a-KEY \
                 address or a reply to an agent notification)",
                rule.as_str()
            ),
        });
    };
    if policy.agents_require_auth {
        if let Err(why) = auth::verify(
            &mail.authentication_results,
            &policy.authserv_id,
            mail.sender.email.domain(),
        ) {
            return Some(Decision::UnverifiedAgentMail {
                ticket,
                reason: why,
            });
        }
    }
    Some(Decision::AgentReply { ticket, rule })
}

fn ack_permission(origin: &Origin, lookup: &Lookup, policy: &Policy) -> Result<(), String> {
    if !policy.acknowledge {
        return Err("acknowledgements are turned off".into());
    }
    reply_permission(origin, lookup, policy)
}

/// May an automatic answer (ack, refusal, command error) go to this sender? Never to
/// automatic mail; at most `acks_per_sender_per_hour` of them together.
pub fn reply_permission(origin: &Origin, lookup: &Lookup, policy: &Policy) -> Result<(), String> {
    if let Some(reason) = origin.no_ack_reason() {
        return Err(format!("no acknowledgement to automatic mail: {reason}"));
    }
    if lookup.recent_acks >= policy.acks_per_sender_per_hour {
        return Err(format!(
            "acknowledgement rate limit: {} to this sender within the hour",
            lookup.recent_acks
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::loops;
    use crate::mail::parse::parse;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }

    fn policy() -> Policy {
        Policy {
            own_addresses: vec![EmailAddress::parse("support@example.test").unwrap()],
            reopen_days: 30,
            acks_per_sender_per_hour: 5,
            acknowledge: true,
            intake: Intake::Open,
            agents_require_auth: true,
            authserv_id: "mx.vendor.example".into(),
        }
    }

    fn user(role: Role, active: bool, support_user: bool) -> KnownUser {
        KnownUser {
            id: 9,
            role,
            active,
            support_user,
            known: true,
            org: "clinic.example".into(),
        }
    }

    fn ticket(number: i64, status: TicketStatus, participants: &[&str]) -> TicketSummary {
        TicketSummary {
            id: number,
            number,
            status,
            closed_at: (status == TicketStatus::Closed).then(|| now() - Duration::days(2)),
            participants: participants.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn mail(headers: &str) -> InboundMail {
        parse(format!("{headers}\r\n\r\nbody\r\n").as_bytes()).unwrap()
    }

    fn run(m: &InboundMail, l: &Lookup) -> Decision {
        decide(m, &loops::origin(m), l, &policy(), now())
    }

    #[test]
    fn access_keys_are_random_looking_and_parse_back() {
        let k = AccessKey::from_random([7; ACCESS_KEY_LEN]);
        assert_eq!(k.as_str().len(), 20);
        assert_eq!(AccessKey::parse(&k.as_str().to_uppercase()), Some(k));
        assert_eq!(AccessKey::parse("short"), None);
        assert_eq!(AccessKey::parse("0000000000000000000o"), None);
    }

    #[test]
    fn tags() {
        let t = TicketTag::new("[#{number}]").unwrap();
        assert_eq!(t.numbers_in("Re: [#1042] pager [#7]"), vec![1042, 7]);
        assert_eq!(t.tag_subject(5, "Re: [#5] x"), "Re: [#5] x");
        assert_eq!(t.tag_subject(5, "x"), "[#5] x");
        let t = TicketTag::new("(Ticket {number})").unwrap();
        assert_eq!(t.numbers_in("Re: (Ticket 12) a"), vec![12]);
    }

    #[test]
    fn rules_in_order() {
        let m = mail("From: ann@clinic.example\r\nSubject: Re: [#2] x");
        let mut l = Lookup {
            by_reference: Some(ticket(1, TicketStatus::Open, &["ann@clinic.example"])),
            by_access_key: Some(ticket(3, TicketStatus::Open, &[])),
            by_tag: vec![ticket(2, TicketStatus::Open, &["ann@clinic.example"])],
            ..Lookup::default()
        };
        assert!(
            matches!(run(&m, &l), Decision::Reply { ticket, rule: ThreadRule::Reference, .. } if ticket.number == 1)
        );
        l.by_reference = None;
        assert!(
            matches!(run(&m, &l), Decision::Reply { ticket, rule: ThreadRule::AccessKey, .. } if ticket.number == 3)
        );
        l.by_access_key = None;
        assert!(
            matches!(run(&m, &l), Decision::Reply { ticket, rule: ThreadRule::SubjectTag, .. } if ticket.number == 2)
        );
        l.duplicate = true;
        assert_eq!(run(&m, &l), Decision::Duplicate);
    }

    #[test]
    fn old_mail_is_not_acknowledged() {
        assert!(ack_age_permission(now() - Duration::hours(23), now(), 24).is_ok());
        assert!(ack_age_permission(now() - Duration::hours(25), now(), 24).is_err());
    }

    #[test]
    fn tag_from_stranger_opens_new_ticket() {
        let m = mail("From: mallory@evil.example\r\nSubject: Re: [#2] x");
        let l = Lookup {
            by_tag: vec![ticket(2, TicketStatus::Open, &["ann@clinic.example"])],
            ..Lookup::default()
        };
        assert!(matches!(
            run(&m, &l),
            Decision::NewTicket {
                follows: None,
                ack: Ok(())
            }
        ));
    }

    #[test]
    fn closed_ticket_reopens_then_expires() {
        let m = mail("From: ann@clinic.example");
        let mut t = ticket(4, TicketStatus::Closed, &["ann@clinic.example"]);
        let l = Lookup {
            by_reference: Some(t.clone()),
            ..Lookup::default()
        };
        assert!(matches!(run(&m, &l), Decision::Reply { reopen: true, .. }));
        t.closed_at = Some(now() - Duration::days(31));
        let l = Lookup {
            by_reference: Some(t),
            ..Lookup::default()
        };
        assert!(
            matches!(run(&m, &l), Decision::NewTicket { follows: Some(f), .. } if f.number == 4)
        );
    }

    #[test]
    fn loops_and_limits() {
        let ooo = mail("From: ann@clinic.example\r\nAuto-Submitted: auto-replied");
        assert!(matches!(
            run(&ooo, &Lookup::default()),
            Decision::Ignored { .. }
        ));
        let l = Lookup {
            by_reference: Some(ticket(1, TicketStatus::Open, &[])),
            ..Lookup::default()
        };
        assert!(matches!(run(&ooo, &l), Decision::AutoReplyNote { .. }));
        let bulk = mail("From: news@vendor.example\r\nPrecedence: bulk");
        assert!(matches!(
            run(&bulk, &Lookup::default()),
            Decision::NewTicket { ack: Err(_), .. }
        ));
        let own = mail("From: Support <SUPPORT+abc@example.test>");
        assert!(matches!(
            run(&own, &Lookup::default()),
            Decision::Ignored { .. }
        ));
        let person = mail("From: ann@clinic.example");
        let limited = Lookup {
            recent_acks: 5,
            ..Lookup::default()
        };
        assert!(
            matches!(run(&person, &limited), Decision::NewTicket { ack: Err(r), .. } if r.contains("rate limit"))
        );
    }

    #[test]
    fn keys_from_plus_addresses_of_our_address_only() {
        let key = "abcdefghijklmnopqrst";
        let m = mail(&format!(
            "From: ann@clinic.example\r\nTo: support+{key}@Example.TEST, other+{key}@example.test"
        ));
        let keys = access_keys_in(&m, &policy().own_addresses);
        assert_eq!(keys, vec![AccessKey::parse(key).unwrap()]);
    }

    const SIGNED: &str =
        "Authentication-Results: mx.vendor.example; dmarc=pass header.from=vendor.example\r\n";

    fn agent_lookup() -> Lookup {
        Lookup {
            sender: Some(user(Role::Agent, true, false)),
            ..Lookup::default()
        }
    }

    #[test]
    fn agent_replies_need_the_agent_channel_and_authentication() {
        let m = mail(&format!("From: alice@vendor.example\r\nTo: support+a-abcdefghijklmnopqrst@example.test\r\n{SIGNED}Subject: Re: [#7] x"));
        assert_eq!(
            agent_keys_in(&m, &policy().own_addresses),
            vec![AccessKey::parse("abcdefghijklmnopqrst").unwrap()]
        );
        assert!(access_keys_in(&m, &policy().own_addresses).is_empty());
        let t7 = ticket(7, TicketStatus::Open, &["ann@clinic.example"]);
        // The agent key address, authenticated.
        let l = Lookup {
            by_agent_key: Some(t7.clone()),
            ..agent_lookup()
        };
        assert!(matches!(
            run(&m, &l),
            Decision::AgentReply { rule: ThreadRule::AgentKey, ticket } if ticket.number == 7
        ));
        // A reply to a notification we sent to agents, authenticated.
        let l = Lookup {
            by_agent_mail: Some(t7.clone()),
            by_reference: Some(t7.clone()),
            ..agent_lookup()
        };
        assert!(matches!(
            run(&m, &l),
            Decision::AgentReply { rule: ThreadRule::Reference, ticket } if ticket.number == 7
        ));
        // The same without Authentication-Results: unverified.
        let bare = mail("From: alice@vendor.example\r\nSubject: Re: [#7] x");
        assert!(matches!(
            run(&bare, &l),
            Decision::UnverifiedAgentMail { reason, ticket } if reason.contains("authserv-id") && ticket.number == 7
        ));
        // ... unless the admin opted out of authentication (the channel still counts).
        let lax = Policy {
            agents_require_auth: false,
            ..policy()
        };
        assert!(matches!(
            decide(&bare, &loops::origin(&bare), &l, &lax, now()),
            Decision::AgentReply { .. }
        ));
        // A customer with the same mail is a customer reply.
        let l = Lookup {
            sender: Some(user(Role::Customer, true, false)),
            by_tag: vec![ticket(7, TicketStatus::Open, &["alice@vendor.example"])],
            ..Lookup::default()
        };
        assert!(matches!(run(&m, &l), Decision::Reply { .. }));
    }

    /// Finding 1 of the security review: an agent's From with a guessed subject tag, or a
    /// customer's Message-ID, is never trusted, authenticated or not.
    #[test]
    fn agent_mail_outside_the_agent_channel_is_unverified() {
        let forged = mail(&format!(
            "From: Alice <alice@vendor.example>\r\n{SIGNED}Subject: Re: [#1001] x"
        ));
        let by_tag = Lookup {
            by_tag: vec![ticket(1001, TicketStatus::Open, &["ann@clinic.example"])],
            ..agent_lookup()
        };
        for p in [
            policy(),
            Policy {
                agents_require_auth: false,
                ..policy()
            },
        ] {
            assert!(matches!(
                decide(&forged, &loops::origin(&forged), &by_tag, &p, now()),
                Decision::UnverifiedAgentMail { reason, ticket }
                    if reason.contains("agent channel") && ticket.number == 1001
            ));
        }
        let by_customer_message = Lookup {
            by_reference: Some(ticket(1001, TicketStatus::Closed, &["ann@clinic.example"])),
            ..agent_lookup()
        };
        assert!(matches!(
            run(&forged, &by_customer_message),
            Decision::UnverifiedAgentMail { .. }
        ));
        // Threading nowhere, an agent's mail opens a ticket like anyone's.
        assert!(matches!(
            run(&forged, &agent_lookup()),
            Decision::NewTicket { .. }
        ));
    }

    /// Finding 10: a stranger with a real In-Reply-To neither joins nor reopens the ticket.
    #[test]
    fn non_participants_threading_by_message_id_become_notes() {
        let m = mail(
            "From: mallory@evil.example\r\nIn-Reply-To: <c1@clinic.example>\r\nSubject: Re: x",
        );
        let closed = ticket(4, TicketStatus::Closed, &["ann@clinic.example"]);
        let l = Lookup {
            by_reference: Some(closed.clone()),
            ..Lookup::default()
        };
        assert!(matches!(
            run(&m, &l),
            Decision::NonParticipant { ticket, then }
                if ticket.number == 4 && matches!(*then, Decision::NewTicket { ack: Ok(()), follows: None })
        ));
        // Under intake `known`, the stranger is refused; the note is still kept.
        let p = Policy {
            intake: Intake::Known,
            ..policy()
        };
        assert!(matches!(
            decide(&m, &loops::origin(&m), &l, &p, now()),
            Decision::NonParticipant { then, .. } if matches!(*then, Decision::Rejected { .. })
        ));
        // The access key in the address is the customer's own secret: a reply.
        let l = Lookup {
            by_reference: Some(closed.clone()),
            by_access_key: Some(closed.clone()),
            ..Lookup::default()
        };
        assert!(matches!(
            run(&m, &l),
            Decision::Reply {
                rule: ThreadRule::AccessKey,
                reopen: true,
                ..
            }
        ));
        // A participant's reply by Message-ID is a reply, as ever.
        let ann = mail("From: ann@clinic.example\r\nIn-Reply-To: <c1@clinic.example>");
        let l = Lookup {
            by_reference: Some(closed),
            ..Lookup::default()
        };
        assert!(matches!(
            run(&ann, &l),
            Decision::Reply {
                rule: ThreadRule::Reference,
                ..
            }
        ));
    }

    /// Finding 9: only admin-made users and accepted requesters are "known".
    #[test]
    fn collaborators_are_not_known_users() {
        let collaborator = KnownUser {
            known: false,
            ..user(Role::Customer, true, false)
        };
        assert_eq!(
            intake_allows(Intake::Known, Some(&collaborator)),
            Err(Refusal::UnknownSender)
        );
        assert_eq!(
            intake_allows(Intake::Known, Some(&user(Role::Customer, true, false))),
            Ok(())
        );
        let staff = KnownUser {
            known: false,
            ..user(Role::Agent, true, false)
        };
        assert_eq!(intake_allows(Intake::Known, Some(&staff)), Ok(()));
    }

    #[test]
    fn intake_policies_and_inactive_users() {
        let m = mail("From: ann@clinic.example\r\nSubject: help");
        let run_with = |intake: Intake, sender: Option<KnownUser>| {
            let l = Lookup {
                sender,
                ..Lookup::default()
            };
            let p = Policy { intake, ..policy() };
            decide(&m, &loops::origin(&m), &l, &p, now())
        };
        let created = |d: &Decision| matches!(d, Decision::NewTicket { .. });
        let refused = |d: &Decision, r: Refusal| matches!(d, Decision::Rejected { refusal, reply: Ok(()) } if *refusal == r);
        assert!(created(&run_with(Intake::Open, None)));
        assert!(refused(
            &run_with(Intake::Known, None),
            Refusal::UnknownSender
        ));
        assert!(created(&run_with(
            Intake::Known,
            Some(user(Role::Customer, true, false))
        )));
        assert!(refused(
            &run_with(
                Intake::SupportUsers,
                Some(user(Role::Customer, true, false))
            ),
            Refusal::NotSupportUser
        ));
        assert!(created(&run_with(
            Intake::SupportUsers,
            Some(user(Role::Customer, true, true))
        )));
        assert!(created(&run_with(
            Intake::SupportUsers,
            Some(user(Role::Agent, true, false))
        )));
        assert!(refused(
            &run_with(Intake::Open, Some(user(Role::Customer, false, true))),
            Refusal::Inactive
        ));
        // Refusal answers share the acknowledgement rate limit and skip automatic mail.
        let l = Lookup {
            recent_acks: 5,
            ..Lookup::default()
        };
        let p = Policy {
            intake: Intake::Known,
            ..policy()
        };
        assert!(matches!(
            decide(&m, &loops::origin(&m), &l, &p, now()),
            Decision::Rejected { reply: Err(_), .. }
        ));
        let bulk = mail("From: news@clinic.example\r\nPrecedence: bulk");
        assert!(matches!(
            decide(&bulk, &loops::origin(&bulk), &Lookup::default(), &p, now()),
            Decision::Rejected { reply: Err(_), .. }
        ));
    }
}
