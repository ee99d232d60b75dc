//! Mails to customers and senders that are not acknowledgements: an agent's answer relayed,
//! the "ticket closed" notice, the command-error answer, and the refusal answers of the
//! intake policy. Pure: facts in, [`Outgoing`] out.

use serde::Serialize;

use crate::mail::compose::{references_for, Outgoing, Party};
use crate::templates::{TemplateError, Templates};

use super::commands::NotUnderstood;
use super::desk::Desk;
use super::outbound::Stamp;
use super::{shown_subject, AccessKey, Refusal};

/// A ticket's customer side: who a mail to its customer goes to and how it threads.
#[derive(Debug, Clone, Serialize)]
pub struct CustomerFacts {
    pub number: i64,
    pub access_key: AccessKey,
    pub subject: String,
    pub requester: Party,
    /// Cc collaborators.
    pub cc: Vec<Party>,
    /// The customer's last message, and the thread it belongs to.
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub reopen_days: u32,
    /// The ticket's language (ISO 639-1, as triage detected it): its mails use
    /// `templates/<lang>/` when there is one.
    pub language: String,
}

/// How a mail greets `p`: their name, else their address.
pub(crate) fn greeting(p: &Party) -> String {
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

#[allow(clippy::too_many_arguments)]
fn customer_mail(
    desk: &Desk,
    t: &CustomerFacts,
    template: &str,
    agent_name: &str,
    text: &str,
    stamp: &Stamp,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let ctx = CustomerContext {
        support_name: &desk.name,
        requester_name: greeting(&t.requester),
        agent_name,
        tag: desk.tag.render(t.number),
        number: t.number,
        subject: &t.subject,
        link: desk.ticket_link(&t.access_key),
        reopen_days: t.reopen_days,
        text,
    };
    let body = templates.render_lang(template, &t.language, &ctx)?;
    let subject = desk.tag.tag_subject(t.number, &t.subject);
    Ok(Outgoing {
        cc: t.cc.clone(),
        reply_to: Some(desk.customer_channel(&t.access_key)),
        in_reply_to: t.in_reply_to.clone(),
        references: references(&t.references, t.in_reply_to.as_ref()),
        // A person wrote it.
        auto_submitted: None,
        ..stamp.mail(desk.party(), t.requester.clone(), subject, body)
    })
}

/// An agent's answer, relayed to the requester and the Cc collaborators From the support
/// address (attach the agent's attachments when composing).
pub fn agent_reply(
    desk: &Desk,
    t: &CustomerFacts,
    agent_name: &str,
    text: &str,
    stamp: &Stamp,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let mut out = customer_mail(
        desk,
        t,
        "agent-reply.txt",
        agent_name,
        text,
        stamp,
        templates,
    )?;
    if !agent_name.is_empty() {
        out.from.name = Some(format!("{agent_name} via {}", desk.name));
    }
    Ok(out)
}

/// "Your ticket was closed; reply to reopen it."
pub fn closed_notice(
    desk: &Desk,
    t: &CustomerFacts,
    agent_name: &str,
    stamp: &Stamp,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let mut out = customer_mail(desk, t, "closed.txt", agent_name, "", stamp, templates)?;
    out.auto_submitted = Some("auto-generated");
    Ok(out)
}

/// The mail an automatic answer answers: to whom, and how to thread under it.
#[derive(Debug, Clone, Serialize)]
pub struct Answering {
    pub to: Party,
    pub subject: String,
    pub message_id: String,
    pub references: Vec<String>,
    /// The language of the mail answered (ISO 639-1; '' unknown).
    pub language: String,
}

impl Answering {
    /// Answering the sender of `mail`, written in `language`.
    pub fn sender_of(mail: &crate::mail::parse::InboundMail, language: &str) -> Answering {
        Answering {
            to: Party {
                name: mail.sender.name.clone(),
                email: mail.sender.email.clone(),
            },
            subject: mail.subject.clone(),
            message_id: mail.message_id.clone(),
            references: mail.references.clone(),
            language: language.to_string(),
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
pub fn command_error(
    desk: &Desk,
    a: &Answering,
    number: i64,
    from_agent: bool,
    errors: &[NotUnderstood],
    stamp: &Stamp,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let ctx = CommandErrorContext {
        support_name: &desk.name,
        name: greeting(&a.to),
        tag: desk.tag.render(number),
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
    let subject = desk.tag.tag_subject(
        number,
        &answer_subject(&a.subject, "Commands not understood"),
    );
    Ok(auto_answer(desk, a, subject, body, stamp))
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
    desk: &Desk,
    a: &Answering,
    refusal: Refusal,
    org: &str,
    stamp: &Stamp,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let ctx = RefusalContext {
        support_name: &desk.name,
        support_address: desk.address.to_string(),
        name: greeting(&a.to),
        email: a.to.email.to_string(),
        org,
        subject: shown_subject(&a.subject),
        policy: match refusal {
            Refusal::Inactive => "inactive",
            Refusal::UnknownSender => "known",
            Refusal::NotSupportUser => "support-users",
        },
        phone: &desk.phone,
    };
    let template = format!("{}.txt", refusal.kind());
    let body = templates.render_lang(&template, &a.language, &ctx)?;
    let fallback = match a.language.as_str() {
        "fr" => format!("Votre message à {}", desk.name),
        "es" => format!("Su mensaje a {}", desk.name),
        _ => format!("Your message to {}", desk.name),
    };
    let subject = answer_subject(&a.subject, &fallback);
    Ok(auto_answer(desk, a, subject, body, stamp))
}

#[derive(Serialize)]
struct SignInContext<'a> {
    support_name: &'a str,
    name: String,
    link: &'a str,
    minutes: u32,
    home: String,
}

/// The one-time sign-in link for the web's "my tickets", to the user who asked for it.
#[allow(clippy::too_many_arguments)]
pub fn signin(
    desk: &Desk,
    to: &Party,
    link: &str,
    minutes: u32,
    language: &str,
    stamp: &Stamp,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let ctx = SignInContext {
        support_name: &desk.name,
        name: greeting(to),
        link,
        minutes,
        home: desk.link("/"),
    };
    let body = templates.render_lang("signin.txt", language, &ctx)?;
    let subject = match language {
        "fr" if templates.languages("signin.txt").iter().any(|l| l == "fr") => {
            format!("Votre lien de connexion à {}", desk.name)
        }
        "es" if templates.languages("signin.txt").iter().any(|l| l == "es") => {
            format!("Su enlace de acceso a {}", desk.name)
        }
        _ => format!("Your sign-in link for {}", desk.name),
    };
    Ok(stamp.mail(desk.party(), to.clone(), subject, body))
}

#[derive(Serialize)]
struct KbDraftContext<'a> {
    support_name: &'a str,
    name: String,
    tag: String,
    title: &'a str,
    path: &'a str,
    kb_dir: &'a str,
    error: Option<&'a str>,
}

/// To the agent whose `#kb` drafted an article: where the draft is and what to do with it
/// (or why it could not be written).
#[allow(clippy::too_many_arguments)]
pub fn kb_draft(
    desk: &Desk,
    to: &Party,
    number: i64,
    title: &str,
    (path, kb_dir): (&str, &str),
    error: Option<&str>,
    stamp: &Stamp,
    templates: &Templates,
) -> Result<Outgoing, TemplateError> {
    let ctx = KbDraftContext {
        support_name: &desk.name,
        name: greeting(to),
        tag: desk.tag.render(number),
        title,
        path,
        kb_dir,
        error,
    };
    let body = templates.render("kb-draft.txt", &ctx)?;
    let subject = desk
        .tag
        .tag_subject(number, &format!("Help Center draft: {title}"));
    Ok(stamp.mail(desk.party(), to.clone(), subject, body))
}

fn auto_answer(
    desk: &Desk,
    a: &Answering,
    subject: String,
    body: String,
    stamp: &Stamp,
) -> Outgoing {
    let id = a.message_id.clone();
    Outgoing {
        in_reply_to: Some(id.clone()),
        references: references(&a.references, Some(&id)),
        auto_submitted: Some("auto-replied"),
        ..stamp.mail(desk.party(), a.to.clone(), subject, body)
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

    #[test]
    fn sign_in_mails_follow_the_language_and_fall_back_to_english() {
        use crate::mail::address::EmailAddress;
        use crate::tickets::TicketTag;
        let templates = Templates::load(None).unwrap();
        let desk = Desk::new(
            "Vendor Support",
            EmailAddress::parse("support@vendor.example").unwrap(),
            &[],
            "https://help.example",
            "",
            TicketTag::new("[#{number}]").unwrap(),
        );
        let to = Party {
            name: Some("Ann".into()),
            email: EmailAddress::parse("ann@clinic.example").unwrap(),
        };
        let stamp = Stamp {
            message_id: "s1@vendor.example".into(),
            date: chrono::Utc::now(),
        };
        let link = "https://help.example/signin/TOKEN";
        let mail = |lang: &str| signin(&desk, &to, link, 15, lang, &stamp, &templates).unwrap();
        let fr = mail("fr");
        assert_eq!(fr.subject, "Votre lien de connexion à Vendor Support");
        assert!(fr.body.starts_with("Bonjour Ann,"), "{}", fr.body);
        assert!(
            fr.body.contains("pendant les\n15 prochaines minutes"),
            "{}",
            fr.body
        );
        let es = mail("es");
        assert_eq!(es.subject, "Su enlace de acceso a Vendor Support");
        assert!(es.body.starts_with("Hola, Ann:"), "{}", es.body);
        for lang in ["", "en", "de"] {
            let m = mail(lang);
            assert_eq!(m.subject, "Your sign-in link for Vendor Support");
            assert!(m.body.starts_with("Hello Ann,"), "{}", m.body);
        }
        assert_eq!(templates.languages("ack.txt").len(), 2);
    }
}
