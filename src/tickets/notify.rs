//! Notifications to agents: who gets one (routing) and what it says. Pure.
//!
//! A new ticket or a customer reply goes to the assignee once there is one; else to the agents
//! whose `[[agent]] categories` name the ticket's category; else to every agent without a
//! category list (generalists); with none of those, to every active agent and admin.
//!
//! A notification names the customer's attachments and links to them on the web
//! (`{public_url}/t/{ACCESSKEY}/a/{ID}`); it never carries their bytes, so a 2.7 MB mail and
//! eleven agents cost one stored copy, not twelve. Past a per-sender limit, notifications
//! are collapsed into a [`digest`] that lists every ticket (see the pipeline's `digest`).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::mail::address::EmailAddress;
use crate::mail::compose::{references_for, Outgoing, Party};
use crate::templates::{TemplateError, Templates};
use crate::triage::{Category, Level};

use super::desk::Desk;
use super::outbound::Stamp;
use super::{shown_subject, AccessKey, TicketStatus, TicketTag, AGENT_KEY_PREFIX};

/// An attachment as stored with a customer's message: what a notification names and links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredAttachment {
    /// The `attachments` row: the `{ID}` of its web link.
    pub id: i64,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
}

/// The address that answers ticket through the agent channel: `support+a-KEY@domain`.
pub fn agent_address(support: &EmailAddress, agent_key: &AccessKey) -> EmailAddress {
    support.with_detail(&format!("{AGENT_KEY_PREFIX}{}", agent_key.as_str()))
}

/// An active agent or admin, as routing sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
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

    /// As stored in `agent_notices.event`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::NewTicket => "new-ticket",
            NotifyEvent::CustomerReply => "customer-reply",
            NotifyEvent::UnverifiedAgentMail => "unverified-agent-mail",
            NotifyEvent::NonParticipant => "non-participant",
        }
    }

    /// Whether the author of the mail is left out of those notified (everyone but the agent
    /// whose address unverified mail bears: they must hear of it).
    pub fn spares_author(self) -> bool {
        self != NotifyEvent::UnverifiedAgentMail
    }

    pub fn parse(s: &str) -> Option<NotifyEvent> {
        [
            NotifyEvent::NewTicket,
            NotifyEvent::CustomerReply,
            NotifyEvent::UnverifiedAgentMail,
            NotifyEvent::NonParticipant,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
    }
}

/// The facts a notification states.
#[derive(Debug, Clone, Serialize)]
pub struct NotifyFacts {
    pub number: i64,
    /// The ticket's agent key: the Reply-To carries it.
    pub agent_key: AccessKey,
    /// The ticket's access key: the attachment links.
    pub access_key: AccessKey,
    pub event: NotifyEvent,
    /// The ticket's subject.
    pub subject: String,
    pub status: TicketStatus,
    /// Who wrote the mail that caused this notification.
    pub author: Party,
    pub requester: Party,
    pub category: Category,
    pub level: Level,
    pub first_response_due: DateTime<Utc>,
    pub resolution_due: DateTime<Utc>,
    pub first_response_at: Option<DateTime<Utc>>,
    pub assignee: Option<String>,
    /// The customer's new text (quotes stripped on replies).
    pub text: String,
    /// Named and linked in the body; never attached. Stored with the message the
    /// notification is about, so filled in once that is stored (see `outbound`).
    pub attachments: Vec<StoredAttachment>,
    /// The customer's Message-ID and References, so agents' clients thread it.
    pub inbound_message_id: String,
    pub inbound_references: Vec<String>,
}

#[derive(Serialize)]
struct AttachmentLine<'a> {
    filename: &'a str,
    content_type: &'a str,
    size: u64,
    url: String,
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
pub fn notification_subject(tag: &TicketTag, f: &NotifyFacts) -> String {
    format!(
        "{} {}: {} [{}, urgency {}]",
        tag.render(f.number),
        f.event.label(),
        shown_subject(&f.subject),
        f.category.id,
        f.level.level
    )
}

/// Renders the notification to one agent: no attachments, links to them.
pub fn notification(
    desk: &Desk,
    f: &NotifyFacts,
    to: &StaffMember,
    stamp: &Stamp,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let ctx = NotifyContext {
        support_name: &desk.name,
        support_address: desk.address.to_string(),
        agent_name: if to.name.is_empty() {
            to.email.to_string()
        } else {
            to.name.clone()
        },
        event: f.event.label(),
        tag: desk.tag.render(f.number),
        number: f.number,
        subject: &f.subject,
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
        text: &f.text,
        attachments: f
            .attachments
            .iter()
            .map(|a| AttachmentLine {
                filename: &a.filename,
                content_type: &a.content_type,
                size: a.size,
                url: desk.attachment_link(&f.access_key, a.id),
            })
            .collect(),
    };
    let body = templates.render("notify-agent.txt", &ctx)?;
    let references = references_for(&f.inbound_references, &f.inbound_message_id);
    let subject = notification_subject(&desk.tag, f);
    Ok(Outgoing {
        reply_to: Some(desk.agent_channel(&f.agent_key)),
        in_reply_to: Some(f.inbound_message_id.clone()),
        references,
        urgent: f.level.level <= 2,
        ..stamp.mail(desk.party(), to.party(), subject, body)
    })
}

/// One held notification, as a digest lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DigestEntry {
    pub number: i64,
    pub event: NotifyEvent,
    /// The ticket's subject.
    pub subject: String,
    pub category: String,
    pub urgency: u8,
    /// When the mail came in (when its notification was held).
    pub at: DateTime<Utc>,
    /// The ticket's agent key: each entry names its own answer address.
    pub agent_key: AccessKey,
}

/// The facts a digest states: one sender's held notifications for one agent.
#[derive(Debug, Clone, Serialize)]
pub struct DigestFacts {
    /// The sender whose mail the digest collects (the address without +detail).
    pub sender: String,
    /// `limits.notifications_per_sender_per_hour`.
    pub limit: u32,
    /// Oldest first.
    pub entries: Vec<DigestEntry>,
}

#[derive(Serialize)]
struct DigestLine<'a> {
    tag: String,
    event: &'a str,
    subject: &'a str,
    category: &'a str,
    urgency: u8,
    at: String,
    reply_to: String,
}

#[derive(Serialize)]
struct DigestContext<'a> {
    support_name: &'a str,
    agent_name: String,
    sender: &'a str,
    limit: u32,
    count: usize,
    entries: Vec<DigestLine<'a>>,
}

/// Renders one digest to one agent. Marked urgent when an entry is at level 1 or 2.
pub fn digest(
    desk: &Desk,
    f: &DigestFacts,
    to: &StaffMember,
    stamp: &Stamp,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let ctx = DigestContext {
        support_name: &desk.name,
        agent_name: if to.name.is_empty() {
            to.email.to_string()
        } else {
            to.name.clone()
        },
        sender: &f.sender,
        limit: f.limit,
        count: f.entries.len(),
        entries: f
            .entries
            .iter()
            .map(|e| DigestLine {
                tag: desk.tag.render(e.number),
                event: e.event.label(),
                subject: shown_subject(&e.subject),
                category: &e.category,
                urgency: e.urgency,
                at: when(e.at),
                reply_to: agent_address(&desk.address, &e.agent_key).to_string(),
            })
            .collect(),
    };
    let body = templates.render("notify-digest.txt", &ctx)?;
    let most_urgent = f.entries.iter().map(|e| e.urgency).min();
    let mut subject = format!(
        "Digest: {} {} from {}",
        f.entries.len(),
        if f.entries.len() == 1 {
            "mail"
        } else {
            "mails"
        },
        f.sender
    );
    if let Some(level) = most_urgent {
        subject.push_str(&format!(" [most urgent: {level}]"));
    }
    Ok(Outgoing {
        urgent: most_urgent.is_some_and(|l| l <= 2),
        ..stamp.mail(desk.party(), to.party(), subject, body)
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
    fn a_digest_lists_every_entry_with_its_answer_address() {
        use chrono::TimeZone;
        let templates = Templates::load(None).unwrap();
        let support = EmailAddress::parse("support@vendor.example").unwrap();
        let tag = TicketTag::new("[#{number}]").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 14, 0, 0).unwrap();
        let keys = [
            "a7m2qyx4t6w3rbp5n2ja",
            "a7m2qyx4t6w3rbp5n2jb",
            "a7m2qyx4t6w3rbp5n2jc",
        ];
        let entries: Vec<DigestEntry> = (0u8..3)
            .map(|i| DigestEntry {
                number: 1001 + i64::from(i),
                event: NotifyEvent::NewTicket,
                subject: format!("alert {i}"),
                category: "general".into(),
                urgency: 4 - i,
                at: now,
                agent_key: AccessKey::parse(keys[usize::from(i)]).unwrap(),
            })
            .collect();
        let facts = DigestFacts {
            sender: "bob@clinic.example".into(),
            limit: 10,
            entries,
        };
        let desk = Desk::new(
            "Vendor Support",
            support,
            &[],
            "https://help.example",
            "",
            tag,
        );
        let stamp = Stamp {
            message_id: "d1@vendor.example".into(),
            date: now,
        };
        let to = member("alice@vendor.example", &[]);
        let out = digest(&desk, &facts, &to, &stamp, &templates).unwrap();
        assert_eq!(
            out.subject,
            "Digest: 3 mails from bob@clinic.example [most urgent: 2]"
        );
        assert!(out.urgent);
        assert_eq!(out.recipients(), vec!["alice@vendor.example"]);
        for (i, key) in keys.iter().enumerate() {
            let line = format!("[#100{}] New ticket: alert {i} [general, urgency", i + 1);
            assert!(out.body.contains(&line), "{}", out.body);
            let answer = format!("support+a-{key}@vendor.example");
            assert!(out.body.contains(&answer), "{}", out.body);
        }
        assert_eq!(
            NotifyEvent::parse("customer-reply"),
            Some(NotifyEvent::CustomerReply)
        );
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
