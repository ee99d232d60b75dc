//! Tells mail written by a person from mail written by a machine: bounces, auto-replies and
//! bulk mail. Pure. Getting this wrong means mail loops with other robots, so every rule of
//! SPEC §1 "Loops, bounces and bulk mail" is here, each with the reason we log.

use super::parse::InboundMail;

/// What kind of sender produced a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A person: normal handling, acknowledgement allowed.
    Person,
    /// A delivery status notification (ours bounced, most likely).
    Bounce,
    /// An out-of-office or other automatic answer to some earlier mail.
    AutoReply(String),
    /// Machine or list mail: handled normally but never acknowledged.
    Bulk(String),
}

impl Origin {
    /// The reason no acknowledgement may go to this sender, if any.
    pub fn no_ack_reason(&self) -> Option<&str> {
        match self {
            Origin::Person => None,
            Origin::Bounce => Some("delivery status notification"),
            Origin::AutoReply(r) | Origin::Bulk(r) => Some(r),
        }
    }
}

const ROBOT_LOCAL_PARTS: &[&str] = &[
    "mailer-daemon",
    "postmaster",
    "noreply",
    "no-reply",
    "no_reply",
    "donotreply",
    "do-not-reply",
    "do_not_reply",
];

/// Subject prefixes of out-of-office replies in common clients and languages.
const AUTO_REPLY_SUBJECTS: &[&str] = &[
    "automatic reply:",
    "auto reply:",
    "autoreply:",
    "auto:",
    "out of office",
    "out-of-office",
    "abwesenheitsnotiz",
    "réponse automatique",
    "respuesta automática",
];

/// Classifies the origin of `mail`.
pub fn origin(mail: &InboundMail) -> Origin {
    let local = mail.sender.email.local().to_ascii_lowercase();
    let local_base = local.split('+').next().unwrap_or(&local);
    if mail.content_type == "multipart/report" {
        return Origin::Bounce;
    }
    if local_base == "mailer-daemon" || (local_base == "postmaster" && is_null_path(mail)) {
        return Origin::Bounce;
    }

    let a = &mail.auto;
    let subject = mail.subject.to_lowercase();
    let ooo_subject = AUTO_REPLY_SUBJECTS.iter().any(|p| subject.starts_with(p));
    if let Some(v) = &a.auto_submitted {
        let v = v.to_ascii_lowercase();
        if v.starts_with("auto-replied") || (ooo_subject && v != "no") {
            return Origin::AutoReply(format!("Auto-Submitted: {v}"));
        }
    }
    if a.x_autoreply.is_some() {
        return Origin::AutoReply("X-Autoreply header".into());
    }
    if a.x_autorespond.is_some() {
        return Origin::AutoReply("X-Autorespond header".into());
    }
    if ooo_subject && a.x_auto_response_suppress.is_some() {
        return Origin::AutoReply("out-of-office reply".into());
    }
    if let Some(v) = &a.auto_submitted {
        if !v.eq_ignore_ascii_case("no") {
            return Origin::Bulk(format!("Auto-Submitted: {v}"));
        }
    }
    if let Some(p) = &a.precedence {
        let p = p.to_ascii_lowercase();
        if ["bulk", "junk", "list"].contains(&p.as_str()) {
            return Origin::Bulk(format!("Precedence: {p}"));
        }
    }
    if a.list_id.is_some() {
        return Origin::Bulk("mailing list (List-Id)".into());
    }
    if is_null_path(mail) {
        return Origin::Bulk("null Return-Path".into());
    }
    if ROBOT_LOCAL_PARTS.contains(&local_base) {
        return Origin::Bulk(format!("robot sender {local_base}@"));
    }
    if let Some(v) = &a.x_auto_response_suppress {
        let v = v.to_ascii_lowercase();
        if v.contains("all") || v.contains("autoreply") {
            return Origin::Bulk(format!("X-Auto-Response-Suppress: {v}"));
        }
    }
    Origin::Person
}

fn is_null_path(mail: &InboundMail) -> bool {
    mail.return_path.as_deref() == Some("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::parse::parse;

    fn origin_of(headers: &str) -> Origin {
        let raw = format!("{headers}\r\nSubject: x\r\n\r\nbody\r\n");
        origin(&parse(raw.as_bytes()).unwrap())
    }

    #[test]
    fn people_are_people() {
        assert_eq!(origin_of("From: nurse@clinic.example"), Origin::Person);
        assert_eq!(
            origin_of("From: nurse@clinic.example\r\nAuto-Submitted: no"),
            Origin::Person
        );
    }

    #[test]
    fn every_loop_rule() {
        let cases = [
            "From: a@x.example\r\nAuto-Submitted: auto-replied",
            "From: a@x.example\r\nAuto-Submitted: auto-generated",
            "From: a@x.example\r\nPrecedence: bulk",
            "From: a@x.example\r\nPrecedence: junk",
            "From: a@x.example\r\nPrecedence: list",
            "From: a@x.example\r\nX-Autoreply: yes",
            "From: a@x.example\r\nX-Autorespond: yes",
            "From: a@x.example\r\nList-Id: <news.x.example>",
            "From: a@x.example\r\nReturn-Path: <>",
            "From: MAILER-DAEMON@x.example",
            "From: noreply@x.example",
            "From: no-reply@x.example",
            "From: a@x.example\r\nX-Auto-Response-Suppress: All",
        ];
        for c in cases {
            assert_ne!(origin_of(c), Origin::Person, "{c}");
            assert!(origin_of(c).no_ack_reason().is_some(), "{c}");
        }
    }

    #[test]
    fn out_of_office_is_an_auto_reply() {
        let raw = "From: a@x.example\r\nSubject: Automatic reply: [#1001] pager\r\nAuto-Submitted: auto-generated\r\nX-Auto-Response-Suppress: All\r\n\r\nI am away\r\n";
        assert!(matches!(
            origin(&parse(raw.as_bytes()).unwrap()),
            Origin::AutoReply(_)
        ));
    }

    #[test]
    fn dsn_is_a_bounce() {
        let raw = "From: Mail Delivery System <MAILER-DAEMON@mx.example>\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--b--\r\n";
        assert_eq!(origin(&parse(raw.as_bytes()).unwrap()), Origin::Bounce);
    }
}
