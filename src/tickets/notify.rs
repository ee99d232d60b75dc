//! Notifications to agents: who gets one (routing) and what it says. Pure.
//!
//! A new ticket or a customer reply goes to the assignee once there is one; else to the agents
//! whose `[[agent]] categories` name the ticket's category; else to every agent without a
//! category list (generalists); with none of those, to every active agent and admin.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::mail::address::EmailAddress;
use crate::mail::compose::{references_for, Outgoing, Party};
use crate::mail::parse::Attachment;
use crate::templates::{TemplateError, Templates};
use crate::triage::{Category, Level};

use super::{AccessKey, TicketStatus, TicketTag, AGENT_KEY_PREFIX};

/// An active agent or admin, as routing sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffMember {
    pub email: EmailAddress,
    pub name: String,
    /// From `[[agent]] categories`; empty = every category.
    pub categories: Vec<String>,
}

impl StaffMember {
    pub fn party(&self) -> Party {
        Party {
            name: Some(self.name.clone()).filter(|n| !n.is_empty()),
            email: self.email.clone(),
        }
    }
}

/// Who is notified about `category`; never `author` (the person who wrote the mail), when
/// one is given.
pub fn route(
    assignee: Option<&StaffMember>,
    staff: &[StaffMember],
    category: &str,
    author: Option<&EmailAddress>,
) -> Vec<StaffMember> {
    let not_author = |s: &&StaffMember| author != Some(&s.email);
    if let Some(a) = assignee {
        return std::iter::once(a).filter(not_author).cloned().collect();
    }
    let pick = |f: &dyn Fn(&StaffMember) -> bool| -> Vec<StaffMember> {
        staff
            .iter()
            .filter(|s| f(s))
            .filter(not_author)
            .cloned()
            .collect()
    };
    let specialists = pick(&|s| s.categories.iter().any(|c| c == category));
    if !specialists.is_empty() {
        return specialists;
    }
    let generalists = pick(&|s| s.categories.is_empty());
    if !generalists.is_empty() {
        return generalists;
    }
    pick(&|_| true)
}

/// What happened on the ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyEvent {
    NewTicket,
    CustomerReply,
    /// Mail from an agent's address that was not verified: kept as an internal note, not
    /// relayed, its commands not run. The named agent is told too: it may be forged.
    UnverifiedAgentMail,
    /// Mail from someone who is no participant, threaded only by a Message-ID: an internal
    /// note; the sender got a ticket of their own.
    NonParticipant,
}

impl NotifyEvent {
    fn label(self) -> &'static str {
        match self {
            NotifyEvent::NewTicket => "New ticket",
            NotifyEvent::CustomerReply => "Customer reply",
            NotifyEvent::UnverifiedAgentMail => "UNVERIFIED agent mail (not relayed)",
            NotifyEvent::NonParticipant => "Internal note: mail from a non-participant",
        }
    }
}

/// The facts a notification states.
#[derive(Debug, Clone)]
pub struct NotifyFacts<'a> {
    pub support_name: &'a str,
    pub support_address: &'a EmailAddress,
    pub tag: &'a TicketTag,
    pub number: i64,
    /// The ticket's agent key: the Reply-To carries it.
    pub agent_key: &'a AccessKey,
    pub event: NotifyEvent,
    /// The ticket's subject.
    pub subject: &'a str,
    pub status: TicketStatus,
    /// Who wrote the mail that caused this notification.
    pub author: Party,
    pub requester: Party,
    pub category: &'a Category,
    pub level: &'a Level,
    pub first_response_due: DateTime<Utc>,
    pub resolution_due: DateTime<Utc>,
    pub first_response_at: Option<DateTime<Utc>>,
    pub assignee: Option<String>,
    /// The customer's new text (quotes stripped on replies).
    pub text: &'a str,
    /// Listed in the body and attached.
    pub attachments: &'a [Attachment],
    /// The customer's Message-ID and References, so agents' clients thread it.
    pub inbound_message_id: &'a str,
    pub inbound_references: &'a [String],
    /// Ours, one per notification.
    pub message_id: String,
    pub now: DateTime<Utc>,
}

#[derive(Serialize)]
struct AttachmentLine<'a> {
    filename: &'a str,
    content_type: &'a str,
    size: usize,
}

#[derive(Serialize)]
struct NotifyContext<'a> {
    support_name: &'a str,
    support_address: String,
    agent_name: String,
    event: &'a str,
    tag: String,
    number: i64,
    subject: &'a str,
    status: &'a str,
    author: String,
    requester: String,
    category: &'a str,
    category_name: &'a str,
    urgency: u8,
    urgency_name: &'a str,
    first_response_due: String,
    resolution_due: String,
    first_response_at: Option<String>,
    assignee: Option<String>,
    text: &'a str,
    attachments: Vec<AttachmentLine<'a>>,
}

/// How a person is shown in mail bodies: `Name <email>` or the bare address.
pub fn show(p: &Party) -> String {
    match p.name.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => format!("{n} <{}>", p.email),
        None => p.email.to_string(),
    }
}

pub(crate) fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The subject: tag, what happened, the ticket's subject, category and urgency.
pub fn notification_subject(f: &NotifyFacts<'_>) -> String {
    format!(
        "{} {}: {} [{}, urgency {}]",
        f.tag.render(f.number),
        f.event.label(),
        if f.subject.is_empty() {
            "(no subject)"
        } else {
            f.subject
        },
        f.category.id,
        f.level.level
    )
}

/// Renders the notification to one agent (attach `f.attachments` when composing).
pub fn notification(
    f: &NotifyFacts<'_>,
    to: &StaffMember,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let ctx = NotifyContext {
        support_name: f.support_name,
        support_address: f.support_address.to_string(),
        agent_name: if to.name.is_empty() {
            to.email.to_string()
        } else {
            to.name.clone()
        },
        event: f.event.label(),
        tag: f.tag.render(f.number),
        number: f.number,
        subject: f.subject,
        status: f.status.as_str(),
        author: show(&f.author),
        requester: show(&f.requester),
        category: &f.category.id,
        category_name: &f.category.name,
        urgency: f.level.level,
        urgency_name: &f.level.name,
        first_response_due: when(f.first_response_due),
        resolution_due: when(f.resolution_due),
        first_response_at: f.first_response_at.map(when),
        assignee: f.assignee.clone(),
        text: f.text,
        attachments: f
            .attachments
            .iter()
            .map(|a| AttachmentLine {
                filename: &a.filename,
                content_type: &a.content_type,
                size: a.size,
            })
            .collect(),
    };
    let body = templates.render("notify-agent.txt", &ctx)?;
    let references = references_for(f.inbound_references, f.inbound_message_id);
    let support = Party {
        name: Some(f.support_name.to_string()),
        email: f.support_address.clone(),
    };
    Ok(Outgoing {
        from: support.clone(),
        to: vec![to.party()],
        cc: Vec::new(),
        // The agent channel: an answer threads by this address even without headers.
        reply_to: Some(Party {
            name: support.name.clone(),
            email: f
                .support_address
                .with_detail(&format!("{AGENT_KEY_PREFIX}{}", f.agent_key.as_str())),
        }),
        subject: notification_subject(f),
        message_id: f.message_id.clone(),
        in_reply_to: Some(f.inbound_message_id.to_string()),
        references,
        date: f.now,
        auto_submitted: Some("auto-generated"),
        urgent: f.level.level <= 2,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(email: &str, categories: &[&str]) -> StaffMember {
        StaffMember {
            email: EmailAddress::parse(email).unwrap(),
            name: String::new(),
            categories: categories.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn emails(v: &[StaffMember]) -> Vec<String> {
        v.iter().map(|s| s.email.to_string()).collect()
    }

    #[test]
    fn routing() {
        let ann = EmailAddress::parse("ann@clinic.example").unwrap();
        let staff = vec![
            member("alice@vendor.example", &[]),
            member("bob@vendor.example", &["billing"]),
            member("carol@vendor.example", &["billing", "legal"]),
        ];
        assert_eq!(
            emails(&route(None, &staff, "billing", Some(&ann))),
            vec!["bob@vendor.example", "carol@vendor.example"]
        );
        assert_eq!(
            emails(&route(None, &staff, "routing", Some(&ann))),
            vec!["alice@vendor.example"]
        );
        let specialists_only = &staff[1..];
        assert_eq!(
            emails(&route(None, specialists_only, "routing", Some(&ann))),
            vec!["bob@vendor.example", "carol@vendor.example"]
        );
        assert_eq!(
            emails(&route(Some(&staff[2]), &staff, "routing", Some(&ann))),
            vec!["carol@vendor.example"]
        );
        let bob = EmailAddress::parse("BOB@vendor.example").unwrap();
        assert_eq!(
            emails(&route(None, &staff, "billing", Some(&bob))),
            vec!["carol@vendor.example"]
        );
        assert_eq!(
            emails(&route(None, &staff, "billing", None)),
            vec!["bob@vendor.example", "carol@vendor.example"]
        );
        assert!(route(None, &[], "billing", Some(&ann)).is_empty());
    }
}
