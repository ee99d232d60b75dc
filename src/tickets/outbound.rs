//! Every mail supportd sends, as planned: its kind, where it belongs, and what it says. A
//! [`Mail`] is data (it is part of a [`super::plan::Plan`] and printed by `ingest --dry-run`);
//! [`Mail::render`] turns it into an [`Outgoing`] once the store has given the ids the plan
//! could not know (a new ticket's row, the rows of the attachments a notification links).
//! The shell queues every mail through one function (`pipeline::apply`), with one rule for a
//! mail that cannot be rendered or composed and one hold rule. Pure.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::mail::compose::{Outgoing, Party};
use crate::templates::{TemplateError, Templates};

use super::ack::{self, AckFacts};
use super::commands::NotUnderstood;
use super::desk::Desk;
use super::incident::{self, OncallFacts};
use super::notify::{self, DigestFacts, NotifyFacts, StaffMember, StoredAttachment};
use super::replies::{self, Answering, CustomerFacts};
use super::sla::{self, AlertFacts};
use super::{Refusal, TicketRef};

/// One outbound mail's own identity: its Message-ID and Date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stamp {
    pub message_id: String,
    pub date: DateTime<Utc>,
}

impl Stamp {
    /// An automatic mail with this identity ([`Outgoing::new`]): from `from` to `to`, no
    /// Cc, Reply-To or thread headers, not urgent; change the rest with struct update.
    pub fn mail(&self, from: Party, to: Party, subject: String, body: String) -> Outgoing {
        Outgoing::new(from, to, subject, self.message_id.clone(), self.date, body)
    }
}

/// Every kind of mail supportd sends (the outbox's `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MailKind {
    /// A new ticket's acknowledgement.
    Ack,
    /// An agent's answer, relayed to the customer side.
    AgentReply,
    /// "Your ticket was closed."
    Closed,
    /// A notification to one agent.
    NotifyAgent,
    /// Several held notifications, to one agent.
    NotifyDigest,
    /// Command lines that were not executed, to their writer.
    CommandError,
    /// The intake policy's refusal.
    Rejected,
    /// The answer to a deactivated user.
    Inactive,
    /// A one-time sign-in link for the web's "my tickets" (asked for on the web page).
    SignIn,
    /// To the agent whose `#kb` drafted an article: where the draft is.
    KbDraft,
    /// The acknowledgement of a ticket linked to a known incident.
    IncidentAck,
    /// The one urgent mail to the on-call address about a new incident.
    IncidentOncall,
    /// "The incident your ticket was part of is resolved", once per linked requester.
    IncidentResolved,
    /// Before a first-response or resolution due time, to the assignee or the category's
    /// agents.
    SlaReminder,
    /// A due time passed, to the supervisor.
    SlaEscalation,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Ack => "ack",
            MailKind::AgentReply => "agent-reply",
            MailKind::Closed => "closed",
            MailKind::NotifyAgent => "notify-agent",
            MailKind::NotifyDigest => "notify-digest",
            MailKind::CommandError => "command-error",
            MailKind::Rejected => "rejected",
            MailKind::Inactive => "inactive",
            MailKind::SignIn => "signin",
            MailKind::KbDraft => "kb-draft",
            MailKind::IncidentAck => "incident-ack",
            MailKind::IncidentOncall => "incident-oncall",
            MailKind::IncidentResolved => "incident-resolved",
            MailKind::SlaReminder => "sla-reminder",
            MailKind::SlaEscalation => "sla-escalation",
        }
    }

    /// The kinds that answer a sender automatically: they share one rate limit
    /// (`limits.acks_per_sender_per_hour`) and never go to automatic mail.
    pub const AUTOMATIC_ANSWERS: [MailKind; 5] = [
        MailKind::Ack,
        MailKind::IncidentAck,
        MailKind::Rejected,
        MailKind::Inactive,
        MailKind::CommandError,
    ];
}

/// Who a mail recorded in a ticket's public history is by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Author {
    pub email: String,
    pub user_id: Option<i64>,
}

/// What a mail says: the facts its template states. (Its variants differ in size; a message
/// plans a handful of mails at most, so none is boxed.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "template", rename_all = "kebab-case")]
pub enum Content {
    Ack(AckFacts),
    AgentReply {
        ticket: CustomerFacts,
        agent_name: String,
        text: String,
    },
    Closed {
        ticket: CustomerFacts,
        agent_name: String,
    },
    /// The attachments it links are filled in when its message is stored.
    Notify {
        facts: NotifyFacts,
        to: StaffMember,
    },
    Digest {
        facts: DigestFacts,
        to: StaffMember,
    },
    CommandError {
        answering: Answering,
        number: i64,
        from_agent: bool,
        errors: Vec<NotUnderstood>,
    },
    Refusal {
        answering: Answering,
        refusal: Refusal,
        org: String,
    },
    /// The acknowledgement of a ticket linked to incident number `incident`.
    IncidentAck {
        ack: AckFacts,
        incident: i64,
    },
    IncidentOncall(OncallFacts),
    IncidentResolved {
        ticket: CustomerFacts,
        incident: i64,
        text: String,
    },
    SlaAlert(AlertFacts),
    /// The sign-in link mailed to a user who asked for it on the web.
    SignIn {
        to: Party,
        /// `{public_url}/signin/{TOKEN}`: the token is the secret, used once.
        link: String,
        /// How long the link works.
        minutes: u32,
        /// The user's language (that of their latest ticket; '' = English).
        language: String,
    },
    /// Where a `#kb` draft was written (or why it could not be: filled in when applied).
    KbDraft {
        to: Party,
        number: i64,
        title: String,
        /// The draft's path, as the config names the Help Center directory.
        path: String,
        /// The Help Center directory it is published by moving it into.
        kb_dir: String,
        error: Option<String>,
    },
}

/// One mail to send.
#[derive(Debug, Clone, Serialize)]
pub struct Mail {
    pub kind: MailKind,
    /// The ticket it belongs to (its history, its outbox row's ticket).
    pub ticket: Option<TicketRef>,
    pub stamp: Stamp,
    /// Sent to agents only: a reply naming its Message-ID comes through the agent channel.
    pub to_agents: bool,
    /// Recorded in the ticket's public history as an outbound message by this author.
    pub history: Option<Author>,
    /// The inbound message's attachments go with it (an agent's reply relayed).
    pub with_inbound_attachments: bool,
    pub content: Content,
}

impl Mail {
    /// A mail of ours to customers (an acknowledgement, a closing notice, an incident's end),
    /// recorded in the ticket's public history with the desk's address as its author.
    pub fn from_desk(
        kind: MailKind,
        ticket: TicketRef,
        stamp: Stamp,
        desk: &Desk,
        content: Content,
    ) -> Mail {
        Mail {
            kind,
            ticket: Some(ticket),
            stamp,
            to_agents: false,
            history: Some(Author {
                email: desk.address.to_string(),
                user_id: None,
            }),
            with_inbound_attachments: false,
            content,
        }
    }

    /// The mail as it will be composed. `linked`: the stored attachments of the inbound
    /// message, which a notification names and links.
    pub fn render(
        &self,
        desk: &Desk,
        templates: &Templates,
        linked: &[StoredAttachment],
    ) -> Result<Outgoing, TemplateError> {
        let stamp = &self.stamp;
        match &self.content {
            Content::Ack(f) => ack::acknowledgement(desk, f, stamp, templates),
            Content::AgentReply {
                ticket,
                agent_name,
                text,
            } => replies::agent_reply(desk, ticket, agent_name, text, stamp, templates),
            Content::Closed { ticket, agent_name } => {
                replies::closed_notice(desk, ticket, agent_name, stamp, templates)
            }
            Content::Notify { facts, to } => {
                let mut facts = facts.clone();
                if facts.attachments.is_empty() {
                    facts.attachments = linked.to_vec();
                }
                notify::notification(desk, &facts, to, stamp, templates)
            }
            Content::Digest { facts, to } => notify::digest(desk, facts, to, stamp, templates),
            Content::CommandError {
                answering,
                number,
                from_agent,
                errors,
            } => replies::command_error(
                desk,
                answering,
                *number,
                *from_agent,
                errors,
                stamp,
                templates,
            ),
            Content::Refusal {
                answering,
                refusal,
                org,
            } => replies::refusal(desk, answering, *refusal, org, stamp, templates),
            Content::SignIn {
                to,
                link,
                minutes,
                language,
            } => replies::signin(desk, to, link, *minutes, language, stamp, templates),
            Content::KbDraft {
                to,
                number,
                title,
                path,
                kb_dir,
                error,
            } => replies::kb_draft(
                desk,
                to,
                *number,
                title,
                (path, kb_dir),
                error.as_deref(),
                stamp,
                templates,
            ),
            Content::IncidentAck { ack, incident } => {
                incident::incident_ack(desk, ack, *incident, stamp, templates)
            }
            Content::IncidentOncall(f) => incident::oncall_mail(desk, f, stamp, templates),
            Content::IncidentResolved {
                ticket,
                incident,
                text,
            } => incident::resolved_mail(desk, ticket, *incident, text, stamp, templates),
            Content::SlaAlert(f) => sla::alert_mail(desk, f, stamp, templates),
        }
    }
}
