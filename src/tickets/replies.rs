//! Mails to customers and senders that are not acknowledgements: an agent's answer relayed,
//! the "ticket closed" notice, the command-error answer, and the refusal answers of the
//! intake policy. Pure: facts in, [`Outgoing`] out.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::mail::address::EmailAddress;
use crate::mail::compose::{references_for, Outgoing, Party};
use crate::templates::{TemplateError, Templates};

use super::ack::ticket_link;
use super::commands::NotUnderstood;
use super::{AccessKey, Refusal, TicketTag};

/// Who we are, for every mail in this module.
#[derive(Debug, Clone)]
pub struct Sender<'a> {
    pub support_name: &'a str,
    pub support_address: &'a EmailAddress,
    pub public_url: &'a str,
    pub phone: &'a str,
}

impl Sender<'_> {
    fn party(&self) -> Party {
        Party {
            name: Some(self.support_name.to_string()),
            email: self.support_address.clone(),
        }
    }
}

/// A ticket's side of a mail to its customer.
#[derive(Debug, Clone)]
pub struct TicketFacts<'a> {
    pub tag: &'a TicketTag,
    pub number: i64,
    pub access_key: &'a AccessKey,
    pub subject: &'a str,
    pub requester: Party,
    /// Cc collaborators.
    pub cc: Vec<Party>,
    /// The customer's last message, and the thread it belongs to.
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub reopen_days: u32,
    /// Ours.
    pub message_id: String,
    pub now: DateTime<Utc>,
}

fn greeting(p: &Party) -> String {
    p.name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| p.email.to_string())
}

fn references(refs: &[String], last: Option<&String>) -> Vec<String> {
    match last {
        Some(l) => references_for(refs, l),
        None => refs.to_vec(),
    }
}

#[derive(Serialize)]
struct CustomerContext<'a> {
    support_name: &'a str,
    requester_name: String,
    agent_name: &'a str,
    tag: String,
    number: i64,
    subject: &'a str,
    link: String,
    reopen_days: u32,
    text: &'a str,
}

fn customer_mail(
    s: &Sender<'_>,
    t: &TicketFacts<'_>,
    template: &str,
    agent_name: &str,
    text: &str,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let ctx = CustomerContext {
        support_name: s.support_name,
        requester_name: greeting(&t.requester),
        agent_name,
        tag: t.tag.render(t.number),
        number: t.number,
        subject: t.subject,
        link: ticket_link(s.public_url, t.access_key),
        reopen_days: t.reopen_days,
        text,
    };
    let body = templates.render(template, &ctx)?;
    Ok(Outgoing {
        from: s.party(),
        to: vec![t.requester.clone()],
        cc: t.cc.clone(),
        // The customer's answer carries the access key, so it threads without headers.
        reply_to: Some(Party {
            name: Some(s.support_name.to_string()),
            email: s.support_address.with_detail(t.access_key.as_str()),
        }),
        subject: t.tag.tag_subject(t.number, t.subject),
        message_id: t.message_id.clone(),
        in_reply_to: t.in_reply_to.clone(),
        references: references(&t.references, t.in_reply_to.as_ref()),
        date: t.now,
        auto_submitted: None,
        urgent: false,
        body,
    })
}

/// An agent's answer, relayed to the requester and the Cc collaborators From the support
/// address (attach the agent's attachments when composing).
pub fn agent_reply(
    s: &Sender<'_>,
    t: &TicketFacts<'_>,
    agent_name: &str,
    text: &str,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let mut out = customer_mail(s, t, "agent-reply.txt", agent_name, text, templates)?;
    if !agent_name.is_empty() {
        out.from.name = Some(format!("{agent_name} via {}", s.support_name));
    }
    Ok(out)
}

/// "Your ticket was closed; reply to reopen it."
pub fn closed_notice(
    s: &Sender<'_>,
    t: &TicketFacts<'_>,
    agent_name: &str,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let mut out = customer_mail(s, t, "closed.txt", agent_name, "", templates)?;
    out.auto_submitted = Some("auto-generated");
    Ok(out)
}

/// The mail a reply with commands answered: to whom, and how to thread under it.
#[derive(Debug, Clone)]
pub struct Answering<'a> {
    pub to: Party,
    pub subject: &'a str,
    pub message_id: &'a str,
    pub references: &'a [String],
}

impl<'a> Answering<'a> {
    /// Answering the sender of `mail`.
    pub fn sender_of(mail: &'a crate::mail::parse::InboundMail) -> Answering<'a> {
        Answering {
            to: Party {
                name: mail.sender.name.clone(),
                email: mail.sender.email.clone(),
            },
            subject: &mail.subject,
            message_id: &mail.message_id,
            references: &mail.references,
        }
    }
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    line: &'a str,
    why: &'a str,
}

#[derive(Serialize)]
struct CommandErrorContext<'a> {
    support_name: &'a str,
    name: String,
    tag: String,
    from_agent: bool,
    errors: Vec<ErrorLine<'a>>,
}

fn answer_subject(subject: &str, fallback: &str) -> String {
    let s = subject.trim();
    if s.is_empty() {
        fallback.to_string()
    } else if s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("re:")) {
        s.to_string()
    } else {
        format!("Re: {s}")
    }
}

/// Tells the sender which command lines were not executed. `from_agent`: an agent's unknown
/// or invalid command (nothing was executed or sent); otherwise a non-agent's commands.
#[allow(clippy::too_many_arguments)]
pub fn command_error(
    s: &Sender<'_>,
    a: &Answering<'_>,
    tag: &TicketTag,
    number: i64,
    from_agent: bool,
    errors: &[NotUnderstood],
    message_id: String,
    now: DateTime<Utc>,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let ctx = CommandErrorContext {
        support_name: s.support_name,
        name: greeting(&a.to),
        tag: tag.render(number),
        from_agent,
        errors: errors
            .iter()
            .map(|e| ErrorLine {
                line: &e.line,
                why: &e.why,
            })
            .collect(),
    };
    let body = templates.render("command-error.txt", &ctx)?;
    let subject = tag.tag_subject(
        number,
        &answer_subject(a.subject, "Commands not understood"),
    );
    Ok(auto_answer(s, a, subject, body, message_id, now))
}

#[derive(Serialize)]
struct RefusalContext<'a> {
    support_name: &'a str,
    support_address: String,
    name: String,
    email: String,
    org: &'a str,
    subject: &'a str,
    policy: &'a str,
    phone: &'a str,
}

/// The polite answer to mail the intake policy refused, or to a deactivated user.
pub fn refusal(
    s: &Sender<'_>,
    a: &Answering<'_>,
    refusal: Refusal,
    org: &str,
    message_id: String,
    now: DateTime<Utc>,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let ctx = RefusalContext {
        support_name: s.support_name,
        support_address: s.support_address.to_string(),
        name: greeting(&a.to),
        email: a.to.email.to_string(),
        org,
        subject: if a.subject.trim().is_empty() {
            "(no subject)"
        } else {
            a.subject
        },
        policy: match refusal {
            Refusal::Inactive => "inactive",
            Refusal::UnknownSender => "known",
            Refusal::NotSupportUser => "support-users",
        },
        phone: s.phone,
    };
    let template = format!("{}.txt", refusal.kind());
    let body = templates.render(&template, &ctx)?;
    let subject = answer_subject(a.subject, &format!("Your message to {}", s.support_name));
    Ok(auto_answer(s, a, subject, body, message_id, now))
}

fn auto_answer(
    s: &Sender<'_>,
    a: &Answering<'_>,
    subject: String,
    body: String,
    message_id: String,
    now: DateTime<Utc>,
) -> Outgoing {
    let id = a.message_id.to_string();
    Outgoing {
        from: s.party(),
        to: vec![a.to.clone()],
        cc: Vec::new(),
        reply_to: None,
        subject,
        message_id,
        in_reply_to: Some(id.clone()),
        references: references(a.references, Some(&id)),
        date: now,
        auto_submitted: Some("auto-replied"),
        urgent: false,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_subjects() {
        assert_eq!(answer_subject("help", "x"), "Re: help");
        assert_eq!(answer_subject("RE: help", "x"), "RE: help");
        assert_eq!(answer_subject("  ", "x"), "x");
        assert_eq!(answer_subject("Ré", "x"), "Re: Ré");
        assert_eq!(answer_subject("éé", "x"), "Re: éé");
    }
}
