//! Everything that happens to one inbound message, decided at once and returned as data: a
//! [`Plan`] of rows to write and mails to send, from the [`Facts`] the store gave. The shell
//! applies the plan in one transaction (`pipeline::apply`) and prints it for
//! `supportd ingest --dry-run`; a new source of messages (the web form) or a second database
//! plugs in here, not in the decisions. Pure.
//!
//! The threading decision comes first ([`super::decide`]); this module works out what it
//! means: the ticket created or changed, the user provisioned, the messages, attachments and
//! events recorded, the mails with their kind ([`super::outbound`]).

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::mail::compose::Party;
use crate::mail::loops::Origin;
use crate::mail::parse::InboundMail;
use crate::triage::{Category, Classification, Level, Rules};

use super::ack::AckFacts;
use super::commands::{self, NotUnderstood};
use super::decide::{ack_age_permission, reply_permission, Decision, Lookup};
use super::desk::Desk;
use super::incident::{self, Candidate, Grouping, LinkedIncident, OncallFacts, OncallTicket};
use super::notify::{NotifyEvent, StaffMember};
use super::outbound::{Content, Mail, MailKind, Stamp};
use super::replies::Answering;
use super::{
    shown_subject, IdSource, KnownUser, Policy, Refusal, Sla, TicketRecord, TicketRef,
    TicketStatus, TicketSummary, UserRecord,
};

mod agent;
mod new_ticket;
mod notice;
mod people;
mod sla;

pub use notice::{plan_digest, DigestInput, HeldNotice, NoticeState};
pub use sla::plan_sla_alert;

/// What happened to one message (SPEC §2 `ingest` output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Created,
    Replied,
    AgentReply,
    Duplicate,
    Ignored,
    Rejected,
    Quarantined,
}

impl Action {
    /// The name in `ingest` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Replied => "replied",
            Action::AgentReply => "agent_reply",
            Action::Duplicate => "duplicate",
            Action::Ignored => "ignored",
            Action::Rejected => "rejected",
            Action::Quarantined => "quarantined",
        }
    }
}

/// Who a written row names as a user: the message's sender (provisioned by an earlier
/// [`Write::ProvisionSender`] of the same plan, or already known), or a stored user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRef {
    Sender,
    Id(i64),
}

/// One row to write or change, in order.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "write", rename_all = "kebab-case")]
pub enum Write {
    /// The sender becomes a customer user (when not one yet); `known` under intake `known`.
    ProvisionSender {
        known: bool,
    },
    /// An existing user becomes a known user (their ticket was accepted).
    MarkKnown {
        user: i64,
    },
    /// The new ticket, with its number and keys.
    CreateTicket(NewTicket),
    /// A Cc collaborator (provisioned as a customer who is not known).
    Collaborator {
        ticket: TicketRef,
        email: String,
        name: String,
    },
    /// The inbound message itself on a ticket, with its raw bytes and attachments; `body`
    /// None keeps the mail's own body.
    Message {
        ticket: TicketRef,
        kind: String,
        internal: bool,
        author: Option<UserRef>,
        body: Option<String>,
        at: DateTime<Utc>,
    },
    /// An internal note about the message, under a Message-ID of its own (no raw bytes).
    Note {
        ticket: TicketRef,
        message_id: String,
        kind: String,
        body: String,
        at: DateTime<Utc>,
    },
    Event {
        ticket: TicketRef,
        actor: String,
        kind: String,
        detail: String,
    },
    Status {
        ticket: TicketRef,
        status: TicketStatus,
    },
    Urgency {
        ticket: TicketRef,
        level: u8,
        sla: Sla,
    },
    Category {
        ticket: TicketRef,
        id: String,
    },
    Assign {
        ticket: TicketRef,
        user: i64,
    },
    /// The first agent answer: stops the first-response clock.
    FirstResponse {
        ticket: TicketRef,
    },
    /// The ticket's last activity.
    Touch {
        ticket: TicketRef,
    },
    /// An agent key for a ticket from before migration 0002.
    AgentKey {
        ticket: TicketRef,
        key: super::AccessKey,
    },
    /// The message is kept for the audit trail only (`ignored_mail`).
    Ignored {
        reason: String,
    },
    /// A bounce of our outbox row.
    FailOutbox {
        id: i64,
        error: String,
    },
    /// An agent corrected triage (`#category`, `#urgency`): what triage said and saw, and
    /// the agents' labels now (`triage report`, `triage tune`).
    Correction {
        ticket: TicketRef,
        language: String,
        rules_category: String,
        rules_urgency: u8,
        final_category: String,
        final_urgency: u8,
        /// JSON of `triage::Evidence` for the ticket's first message.
        features: String,
    },
    /// A `#kb` draft article, written to `[kb] dir`/drafts/`file` (never into `kb/` itself).
    KbDraft {
        ticket: TicketRef,
        file: String,
        markdown: String,
    },
    /// A new incident, and the tickets linked to it (`incident::group` said so).
    OpenIncident {
        number: i64,
        /// For staff only: the subject of the ticket that opened it.
        title: String,
        tickets: Vec<TicketRef>,
    },
    /// A ticket linked to an open incident.
    LinkIncident {
        incident: i64,
        ticket: TicketRef,
    },
    /// `#incident resolve TEXT`: the incident resolved by `by`, with its public text.
    ResolveIncident {
        incident: i64,
        by: String,
        text: String,
    },
    /// A notification caused by this sender (`held`: kept for a digest instead).
    Notice {
        ticket: TicketRef,
        event: NotifyEvent,
        held: bool,
    },
}

/// A ticket to create.
#[derive(Debug, Clone, Serialize)]
pub struct NewTicket {
    pub number: i64,
    pub access_key: super::AccessKey,
    pub agent_key: super::AccessKey,
    pub subject: String,
    pub category: String,
    pub urgency: u8,
    pub triage_reasons: String,
    /// The customer's language (ISO 639-1), as triage detected it.
    pub language: String,
    pub requester: UserRef,
    pub follows: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub sla: Sla,
}

/// Everything that happens to one message.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub message_id: String,
    pub action: Action,
    /// The ticket the outcome names.
    pub ticket: Option<TicketRef>,
    pub reason: Option<String>,
    pub writes: Vec<Write>,
    pub mails: Vec<Mail>,
    /// Why no mail may leave for this message at all (safe first import): each planned mail
    /// is then recorded as not sent.
    pub hold: Option<String>,
    /// A sender whose held notifications are due for their digest now.
    pub digest_due: Option<String>,
}

/// What the store knows, gathered in one read step before [`plan`] runs.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub mail: &'a InboundMail,
    pub origin: &'a Origin,
    /// The body without quoted text and signature.
    pub text: &'a str,
    /// The triage of the message (used when it opens a ticket).
    pub class: &'a Classification,
    pub lookup: Lookup,
    pub decision: Decision,
    /// When the message reached us, and now.
    pub received_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// The ticket the decision names, in full (None for a new ticket, or a decision that
    /// names none).
    pub ticket: Option<TicketRecord>,
    /// That ticket's collaborators and its customers' Message-IDs, oldest first (loaded for
    /// an agent's reply, which is relayed to them).
    pub collaborators: Vec<UserRecord>,
    pub customer_message_ids: Vec<String>,
    /// The number a new ticket gets.
    pub next_number: i64,
    /// Active agents and admins mail can be sent to (notification routing).
    pub staff: Vec<StaffMember>,
    /// The sender's recent notifications (digests).
    pub notices: NoticeState,
    /// For an agent's reply: the agent, and the users `#assign` names (by email key).
    pub agent: Option<UserRecord>,
    pub assignable: Vec<(String, UserRecord)>,
    /// For an agent's reply that corrects triage: the ticket's first message (subject and
    /// text), what triage saw.
    pub first_message: Option<(String, String)>,
    /// For a new ticket: the Help Center articles its acknowledgement suggests.
    pub suggestions: Vec<crate::kb::Suggestion>,
    /// For an agent's `#kb`: the ticket's last public answer and the names it must lose.
    pub kb_source: Option<KbSource>,
    /// For a new urgent ticket: the recent urgent tickets and the tickets of open incidents
    /// it is compared with, and the number a new incident gets.
    pub incident_candidates: Vec<Candidate>,
    pub next_incident_number: i64,
    /// For an agent's `#incident`: the ticket's incident, with its tickets.
    pub incident: Option<LinkedIncident>,
}

/// What a `#kb` draft is made from (read by `facts` for a verified agent's `#kb`).
#[derive(Debug, Clone, Default)]
pub struct KbSource {
    /// The ticket's last public answer (an agent's relayed reply), if any.
    pub last_answer: Option<String>,
    /// The names and addresses of the ticket's people: requester, collaborators, agents.
    pub names: Vec<String>,
}

/// What [`plan`] needs besides the facts: built once, shared.
pub struct Context<'a> {
    pub desk: &'a Desk,
    pub policy: &'a Policy,
    pub rules: &'a Rules,
    pub ids: &'a dyn IdSource,
}

impl Context<'_> {
    pub(crate) fn stamp(&self, now: DateTime<Utc>) -> Stamp {
        Stamp {
            message_id: self.ids.message_id(self.desk.domain()),
            date: now,
        }
    }

    /// The level of `urgency`, else the least urgent one.
    fn level(&self, urgency: u8) -> Level {
        self.rules
            .level(urgency)
            .or_else(|| self.rules.levels().last())
            .cloned()
            .unwrap_or_else(|| Level {
                level: urgency,
                name: format!("level {urgency}"),
                first_response_hours: 48,
                resolution_hours: 240,
                advise_phone: false,
            })
    }

    /// The category `id`, or one named after it (a category the rules no longer list).
    fn category(&self, id: &str) -> Category {
        self.rules
            .category(id)
            .cloned()
            .unwrap_or_else(|| Category {
                id: id.to_string(),
                name: id.to_string(),
            })
    }
}

/// The plan being built for one message.
struct Builder<'f, 'c> {
    f: &'f Facts<'f>,
    c: &'c Context<'c>,
    plan: Plan,
}

impl Builder<'_, '_> {
    fn write(&mut self, w: Write) {
        self.plan.writes.push(w);
    }

    fn event(&mut self, ticket: TicketRef, actor: &str, kind: &str, detail: impl Into<String>) {
        self.write(Write::Event {
            ticket,
            actor: actor.to_string(),
            kind: kind.to_string(),
            detail: detail.into(),
        });
    }

    fn mail(&mut self, m: Mail) {
        self.plan.mails.push(m);
    }

    fn sender(&self) -> String {
        self.f.mail.sender.email.to_string()
    }

    fn outcome(&mut self, action: Action, ticket: Option<TicketRef>, reason: Option<String>) {
        self.plan.action = action;
        self.plan.ticket = ticket;
        self.plan.reason = reason;
    }

    /// An automatic answer to the sender (command errors, refusals).
    fn answering(&self) -> Answering {
        Answering::sender_of(self.f.mail, &self.f.class.language)
    }
}

/// The plan for one message, from its facts.
pub fn plan(f: &Facts<'_>, c: &Context<'_>) -> Plan {
    let hold = ack_age_permission(f.received_at, f.now, c.policy.ack_max_age_hours).err();
    let mut b = Builder {
        f,
        c,
        plan: Plan {
            message_id: f.mail.message_id.clone(),
            action: Action::Ignored,
            ticket: None,
            reason: None,
            writes: Vec::new(),
            mails: Vec::new(),
            hold,
            digest_due: None,
        },
    };
    b.decision(&f.decision);
    // An HTML body shown stripped rather than rendered is said so: in the ticket's history
    // (for the agents) and in the outcome's reason.
    if let (Some(note), false) = (&f.mail.html_fallback, b.plan.action == Action::Duplicate) {
        if let Some(t) = b.plan.ticket {
            b.event(t, "system", "html-fallback", note.clone());
        }
        b.plan.reason = Some(match b.plan.reason.take() {
            Some(r) => format!("{r}; {note}"),
            None => note.clone(),
        });
    }
    b.plan
}

fn existing(t: &TicketSummary) -> TicketRef {
    TicketRef::Existing {
        id: t.id,
        number: t.number,
    }
}

impl Builder<'_, '_> {
    fn decision(&mut self, d: &Decision) {
        let f = self.f;
        match d {
            Decision::Duplicate => self.outcome(Action::Duplicate, None, None),
            Decision::Ignored { reason } => {
                self.write(Write::Ignored {
                    reason: reason.clone(),
                });
                self.outcome(Action::Ignored, None, Some(reason.clone()));
            }
            Decision::Bounce { outbox_id, ticket } => {
                let t = existing(ticket);
                let reason = format!("delivery failure of outbox mail {outbox_id}");
                self.inbound(t, "bounce", true, None, None);
                self.write(Write::FailOutbox {
                    id: *outbox_id,
                    error: format!("bounced: {}", first_line(&f.mail.body)),
                });
                self.event(t, "system", "bounce", reason.clone());
                self.outcome(Action::Ignored, Some(t), Some(reason));
            }
            Decision::AutoReplyNote { ticket, reason } => {
                let t = existing(ticket);
                self.inbound(t, "auto-reply", true, None, None);
                let reason = format!("automatic reply kept as an internal note: {reason}");
                self.outcome(Action::Ignored, Some(t), Some(reason));
            }
            Decision::Reply {
                ticket,
                rule,
                reopen,
            } => self.reply(ticket, rule.as_str(), *reopen),
            Decision::AgentReply { ticket, .. } => self.agent_reply(ticket),
            Decision::UnverifiedAgentMail { ticket, reason } => self.unverified(ticket, reason),
            Decision::NonParticipant { ticket, then } => {
                self.decision(then);
                self.non_participant_note(ticket);
            }
            Decision::Rejected { refusal, reply } => self.reject(*refusal, reply),
            Decision::NearDuplicate { ticket, of } => self.near_duplicate(ticket, of),
            Decision::NewTicket { ack, follows } => self.new_ticket(ack, follows.as_ref()),
        }
    }

    /// A copy of a message the sender sent minutes ago under another Message-ID: kept on
    /// that message's ticket as a reply, said so in its history; no acknowledgement, and no
    /// agent is told twice about the same text.
    fn near_duplicate(&mut self, ticket: &TicketSummary, of: &str) {
        let t = existing(ticket);
        let author = self.sender_user(false);
        self.inbound(t, "customer", false, Some(author), None);
        self.write(Write::Touch { ticket: t });
        let actor = self.sender();
        let detail = format!(
            "same sender and text as <{of}> within {} minutes, under another Message-ID: \
             added as a reply, not acknowledged",
            self.c.policy.near_duplicate_minutes
        );
        self.event(t, &actor, "near-duplicate", detail);
        let reason = format!(
            "near-duplicate of <{of}> on ticket #{}: added as a reply, no acknowledgement",
            ticket.number
        );
        self.outcome(Action::Replied, Some(t), Some(reason));
    }

    /// Records the message on `ticket`.
    fn inbound(
        &mut self,
        ticket: TicketRef,
        kind: &str,
        internal: bool,
        author: Option<UserRef>,
        body: Option<String>,
    ) {
        self.write(Write::Message {
            ticket,
            kind: kind.to_string(),
            internal,
            author,
            body,
            at: self.f.received_at,
        });
    }

    /// The sender as a user: known already, or provisioned (a customer, `known` or not).
    fn sender_user(&mut self, known: bool) -> UserRef {
        match &self.f.lookup.sender {
            Some(u) => UserRef::Id(u.id),
            None => {
                self.write(Write::ProvisionSender { known });
                UserRef::Sender
            }
        }
    }

    fn reply(&mut self, ticket: &TicketSummary, rule: &str, reopen: bool) {
        let f = self.f;
        let t = existing(ticket);
        let author = self.sender_user(false);
        self.inbound(t, "customer", false, Some(author), None);
        self.write(Write::Touch { ticket: t });
        let actor = self.sender();
        if reopen {
            self.write(Write::Status {
                ticket: t,
                status: TicketStatus::Open,
            });
            let detail = format!("{} → open by a reply", ticket.status.as_str());
            self.event(t, &actor, "status", detail);
        }
        self.event(t, &actor, "reply", rule);
        let mut reason = format!("threaded by {rule}");
        // Commands from a customer are never executed; they are told so, within the limit.
        let parsed = commands::parse(f.text);
        if !parsed.command_lines.is_empty() {
            let lines = parsed.command_lines.join(", ");
            self.event(
                t,
                &actor,
                "commands-ignored",
                format!("not an agent: {lines}"),
            );
            reason = format!("{reason}; commands from a non-agent not executed: {lines}");
            if reply_permission(f.origin, &f.lookup, self.c.policy).is_ok() {
                let errors = parsed
                    .command_lines
                    .iter()
                    .map(|l| NotUnderstood {
                        line: l.clone(),
                        why: "only agents may use commands".into(),
                    })
                    .collect();
                self.command_error(t, false, errors);
            }
        }
        if let Some(record) = &f.ticket {
            self.notify(t, record, NotifyEvent::CustomerReply, f.text, true);
        }
        self.outcome(Action::Replied, Some(t), Some(reason));
    }

    fn command_error(&mut self, ticket: TicketRef, from_agent: bool, errors: Vec<NotUnderstood>) {
        let stamp = self.c.stamp(self.f.now);
        self.mail(Mail {
            kind: MailKind::CommandError,
            ticket: Some(ticket),
            stamp,
            to_agents: from_agent,
            history: None,
            with_inbound_attachments: false,
            content: Content::CommandError {
                answering: self.answering(),
                number: ticket.number(),
                from_agent,
                errors,
            },
        });
    }

    fn reject(&mut self, refusal: Refusal, reply: &Result<(), String>) {
        let f = self.f;
        let reason = refusal.reason();
        self.write(Write::Ignored {
            reason: format!("rejected: {reason}"),
        });
        let answered = match reply {
            Err(why) => format!("not answered: {why}"),
            Ok(()) => {
                let org = f
                    .lookup
                    .sender
                    .as_ref()
                    .map(|u: &KnownUser| u.org.clone())
                    .unwrap_or_else(|| f.mail.sender.email.domain().to_string());
                let stamp = self.c.stamp(f.now);
                self.mail(Mail {
                    kind: match refusal {
                        Refusal::Inactive => MailKind::Inactive,
                        Refusal::UnknownSender | Refusal::NotSupportUser => MailKind::Rejected,
                    },
                    ticket: None,
                    stamp,
                    to_agents: false,
                    history: None,
                    with_inbound_attachments: false,
                    content: Content::Refusal {
                        answering: self.answering(),
                        refusal,
                        org,
                    },
                });
                match &self.plan.hold {
                    Some(why) => format!("not answered: {why}"),
                    None => "answered".to_string(),
                }
            }
        };
        self.outcome(
            Action::Rejected,
            None,
            Some(format!("{reason}; {answered}")),
        );
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

/// Whether mail `at` is older than a window of `minutes` before `now`.
fn older_than(at: DateTime<Utc>, minutes: u32, now: DateTime<Utc>) -> bool {
    at <= now - Duration::minutes(i64::from(minutes))
}

#[cfg(test)]
mod tests;
