//! The acknowledgement of a new ticket: what it says and how it threads. Pure.

use serde::Serialize;

use crate::mail::compose::{references_for, Outgoing, Party};
use crate::templates::{TemplateError, Templates};
use crate::triage::{Category, Level};

use super::desk::Desk;
use super::outbound::Stamp;
use super::{shown_subject, AccessKey, Sla};

/// The facts an acknowledgement states.
#[derive(Debug, Clone, Serialize)]
pub struct AckFacts {
    pub number: i64,
    pub access_key: AccessKey,
    /// The customer's subject, as written.
    pub subject: String,
    pub requester: Party,
    pub category: Category,
    pub level: Level,
    pub sla: Sla,
    /// The customer's Message-ID and References, so the ack threads under their mail.
    pub inbound_message_id: String,
    pub inbound_references: Vec<String>,
    /// The customer's language (ISO 639-1) as triage detected it: the template may answer
    /// in it.
    pub language: String,
    /// Help Center articles that may already answer the mail (none below the threshold).
    pub suggestions: Vec<crate::kb::Suggestion>,
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
    language: &'a str,
    /// `title` and `link` of each suggested article.
    suggestions: &'a [crate::kb::Suggestion],
}

/// Renders the acknowledgement mail.
pub fn acknowledgement(
    desk: &Desk,
    f: &AckFacts,
    stamp: &Stamp,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let requester_email = f.requester.email.to_string();
    let greeting = f
        .requester
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(requester_email.as_str())
        .to_string();
    let subject = shown_subject(&f.subject);
    let ctx = AckContext {
        support_name: &desk.name,
        requester_name: &greeting,
        requester_email: requester_email.clone(),
        number: f.number,
        tag: desk.tag.render(f.number),
        subject,
        access_key: f.access_key.as_str(),
        link: desk.ticket_link(&f.access_key),
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
        phone: &desk.phone,
        language: &f.language,
        suggestions: &f.suggestions,
    };
    let body = templates.render_lang("ack.txt", &f.language, &ctx)?;
    let references = references_for(&f.inbound_references, &f.inbound_message_id);
    let subject = desk.tag.tag_subject(f.number, subject);
    Ok(Outgoing {
        reply_to: Some(desk.customer_channel(&f.access_key)),
        in_reply_to: Some(f.inbound_message_id.clone()),
        references,
        auto_submitted: Some("auto-replied"),
        urgent: f.level.advise_phone,
        ..stamp.mail(desk.party(), f.requester.clone(), subject, body)
    })
}
