//! The acknowledgement of a new ticket: what it says and how it threads. Pure.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::mail::address::EmailAddress;
use crate::mail::compose::{references_for, Outgoing, Party};
use crate::templates::{TemplateError, Templates};
use crate::triage::{Category, Level};

use super::{AccessKey, Sla, TicketTag};

/// The facts an acknowledgement states.
#[derive(Debug, Clone)]
pub struct AckFacts<'a> {
    pub support_name: &'a str,
    pub support_address: &'a EmailAddress,
    pub public_url: &'a str,
    pub phone: &'a str,
    pub tag: &'a TicketTag,
    pub number: i64,
    pub access_key: &'a AccessKey,
    /// The customer's subject, as written.
    pub subject: &'a str,
    pub requester: Party,
    pub category: &'a Category,
    pub level: &'a Level,
    pub sla: Sla,
    /// The customer's Message-ID and References, so the ack threads under their mail.
    pub inbound_message_id: &'a str,
    pub inbound_references: &'a [String],
    /// Ours.
    pub message_id: String,
    pub now: DateTime<Utc>,
}

#[derive(Serialize)]
struct AckContext<'a> {
    support_name: &'a str,
    requester_name: &'a str,
    requester_email: String,
    number: i64,
    tag: String,
    subject: &'a str,
    access_key: &'a str,
    link: String,
    category: &'a str,
    category_name: &'a str,
    urgency: u8,
    urgency_name: &'a str,
    first_response_hours: u32,
    resolution_hours: u32,
    first_response_due: String,
    resolution_due: String,
    advise_phone: bool,
    phone: &'a str,
}

/// The direct link to a ticket's page.
pub fn ticket_link(public_url: &str, key: &AccessKey) -> String {
    format!("{}/t/{}", public_url.trim_end_matches('/'), key.as_str())
}

/// Renders the acknowledgement mail.
pub fn acknowledgement(f: &AckFacts<'_>, templates: &Templates) -> Result<Outgoing, TemplateError> {
    let requester_email = f.requester.email.to_string();
    let greeting = f
        .requester
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(requester_email.as_str())
        .to_string();
    let subject = if f.subject.is_empty() {
        "(no subject)"
    } else {
        f.subject
    };
    let ctx = AckContext {
        support_name: f.support_name,
        requester_name: &greeting,
        requester_email: requester_email.clone(),
        number: f.number,
        tag: f.tag.render(f.number),
        subject,
        access_key: f.access_key.as_str(),
        link: ticket_link(f.public_url, f.access_key),
        category: &f.category.id,
        category_name: &f.category.name,
        urgency: f.level.level,
        urgency_name: &f.level.name,
        first_response_hours: f.level.first_response_hours,
        resolution_hours: f.level.resolution_hours,
        first_response_due: f
            .sla
            .first_response_due
            .format("%Y-%m-%d %H:%M UTC")
            .to_string(),
        resolution_due: f
            .sla
            .resolution_due
            .format("%Y-%m-%d %H:%M UTC")
            .to_string(),
        advise_phone: f.level.advise_phone,
        phone: f.phone,
    };
    let body = templates.render("ack.txt", &ctx)?;
    let references = references_for(f.inbound_references, f.inbound_message_id);
    let support = Party {
        name: Some(f.support_name.to_string()),
        email: f.support_address.clone(),
    };
    Ok(Outgoing {
        from: support.clone(),
        to: vec![f.requester.clone()],
        cc: Vec::new(),
        // Replies carry the access key in the address, so they thread even without headers.
        reply_to: Some(Party {
            name: support.name.clone(),
            email: f.support_address.with_detail(f.access_key.as_str()),
        }),
        subject: f.tag.tag_subject(f.number, subject),
        message_id: f.message_id.clone(),
        in_reply_to: Some(f.inbound_message_id.to_string()),
        references,
        date: f.now,
        auto_submitted: Some("auto-replied"),
        urgent: f.level.advise_phone,
        body,
    })
}
