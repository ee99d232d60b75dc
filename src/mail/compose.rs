//! Outbound mail → the exact RFC 5322 bytes that the outbox stores and the sender relays.
//!
//! Pure: the caller supplies the Message-ID and the date, so the same input always yields the
//! same bytes (golden tests rely on it). lettre's builder does the encoding (RFC 2047 words,
//! line folding, transfer encodings).

use chrono::{DateTime, Utc};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox as LettreMailbox;
use lettre::message::{Attachment as LettreAttachment, MultiPart, SinglePart};
use lettre::Message;
use sha2::{Digest, Sha256};

use super::address::EmailAddress;
use super::parse::Attachment;

/// The References of a mail answering `message_id`: its own References, then itself.
pub fn references_for(references: &[String], message_id: &str) -> Vec<String> {
    let mut refs = references.to_vec();
    if !refs.iter().any(|r| r == message_id) {
        refs.push(message_id.to_string());
    }
    refs
}

/// A recipient or sender with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Party {
    pub name: Option<String>,
    pub email: EmailAddress,
}

/// One mail to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub from: Party,
    pub to: Vec<Party>,
    pub cc: Vec<Party>,
    pub reply_to: Option<Party>,
    pub subject: String,
    /// Without angle brackets.
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub date: DateTime<Utc>,
    /// `auto-replied` / `auto-generated` for automatic mail, None for mail a person wrote.
    pub auto_submitted: Option<&'static str>,
    /// Marks level 1–2 mail urgent for clients (`Importance`, `X-Priority`).
    pub urgent: bool,
    pub body: String,
}

/// A recipient address lettre would not accept, or a builder failure.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("address `{0}` cannot be written in a mail header")]
    Address(String),
    #[error("mail could not be built: {0}")]
    Build(#[from] lettre::error::Error),
}

impl Outgoing {
    /// An automatic mail (`Auto-Submitted: auto-generated`, not urgent) from `from` to one
    /// recipient, with no Cc, Reply-To or thread headers: callers change the rest with
    /// struct update (`Outgoing { urgent: true, ..Outgoing::new(..) }`).
    pub fn new(
        from: Party,
        to: Party,
        subject: String,
        message_id: String,
        date: DateTime<Utc>,
        body: String,
    ) -> Outgoing {
        Outgoing {
            from,
            to: vec![to],
            cc: Vec::new(),
            reply_to: None,
            subject,
            message_id,
            in_reply_to: None,
            references: Vec::new(),
            date,
            auto_submitted: Some("auto-generated"),
            urgent: false,
            body,
        }
    }

    /// Lower-cased envelope recipients (To and Cc).
    pub fn recipients(&self) -> Vec<String> {
        self.envelope().iter().map(EmailAddress::key).collect()
    }

    /// The envelope recipients (To and Cc), in order, as the outbox stores them.
    pub fn envelope(&self) -> Vec<EmailAddress> {
        self.to
            .iter()
            .chain(&self.cc)
            .map(|p| p.email.clone())
            .collect()
    }

    /// The RFC 5322 message.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ComposeError> {
        self.to_bytes_with(&[])
    }

    /// The RFC 5322 message with `attachments` (multipart/mixed when there are any). The
    /// MIME boundary derives from the Message-ID, so the bytes stay deterministic.
    pub fn to_bytes_with(&self, attachments: &[Attachment]) -> Result<Vec<u8>, ComposeError> {
        let mut b = Message::builder()
            .from(mailbox(&self.from)?)
            .subject(self.subject.clone())
            .message_id(Some(format!("<{}>", self.message_id)))
            .date(self.date.into());
        for p in &self.to {
            b = b.to(mailbox(p)?);
        }
        for p in &self.cc {
            b = b.cc(mailbox(p)?);
        }
        if let Some(r) = &self.reply_to {
            b = b.reply_to(mailbox(r)?);
        }
        if let Some(id) = &self.in_reply_to {
            b = b.in_reply_to(format!("<{id}>"));
        }
        if !self.references.is_empty() {
            let refs: Vec<String> = self.references.iter().map(|r| format!("<{r}>")).collect();
            b = b.references(refs.join(" "));
        }
        if let Some(v) = self.auto_submitted {
            b = b.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                v.to_string(),
            ));
            // Ask Exchange and friends not to answer automatic mail with more automatic mail.
            b = b.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Auto-Response-Suppress"),
                "All".to_string(),
            ));
        }
        if self.urgent {
            b = b.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Importance"),
                "high".to_string(),
            ));
            b = b.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Priority"),
                "1".to_string(),
            ));
        }
        if attachments.is_empty() {
            let msg = b.header(ContentType::TEXT_PLAIN).body(self.body.clone())?;
            return Ok(msg.formatted());
        }
        let digest: String = Sha256::digest(self.message_id.as_bytes())
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut parts = MultiPart::mixed()
            .boundary(format!("supportd-{digest}"))
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(self.body.clone()),
            );
        for a in attachments {
            let content_type = ContentType::parse(&a.content_type).unwrap_or_else(|_| {
                ContentType::parse("application/octet-stream").unwrap_or(ContentType::TEXT_PLAIN)
            });
            let filename = if a.filename.is_empty() {
                "attachment".to_string()
            } else {
                a.filename.clone()
            };
            parts = parts
                .singlepart(LettreAttachment::new(filename).body(a.data.clone(), content_type));
        }
        Ok(b.multipart(parts)?.formatted())
    }
}

/// The address as lettre writes it in a header and an SMTP envelope, or why it cannot be:
/// the one rule for "can mail be sent to this address" (used when addresses are stored, when
/// mail is composed and by the outbox sender), so an address that was accepted never makes
/// a later mail fail to compose.
pub fn envelope_address(e: &EmailAddress) -> Result<lettre::Address, ComposeError> {
    lettre::Address::new(e.local(), e.domain()).map_err(|_| ComposeError::Address(e.to_string()))
}

/// Whether mail can be sent to `e` (see [`envelope_address`]).
pub fn deliverable(e: &EmailAddress) -> bool {
    envelope_address(e).is_ok()
}

/// A header mailbox for `p`: its envelope-checked address and its display name cleaned of
/// control characters.
pub fn mailbox(p: &Party) -> Result<LettreMailbox, ComposeError> {
    let addr = envelope_address(&p.email)?;
    // A decoded RFC 2047 name may hold CR/LF or other controls; lettre panics on them, and
    // they have no place in a header anyway.
    let name = p.name.as_deref().map(|n| {
        n.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .trim()
            .to_string()
    });
    Ok(LettreMailbox::new(name.filter(|n| !n.is_empty()), addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn party(name: &str, email: &str) -> Party {
        Party {
            name: Some(name.into()),
            email: EmailAddress::parse(email).unwrap(),
        }
    }

    #[test]
    fn headers_are_written() {
        let o = Outgoing {
            from: party("Example Support", "support@example.test"),
            to: vec![party("José García", "Jose@clinic.example")],
            cc: vec![],
            reply_to: Some(party("Example Support", "support+abc@example.test")),
            subject: "[#1001] Pager down".into(),
            message_id: "m1@example.test".into(),
            in_reply_to: Some("orig@clinic.example".into()),
            references: vec!["a@b".into(), "orig@clinic.example".into()],
            date: Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap(),
            auto_submitted: Some("auto-replied"),
            urgent: true,
            body: "Hello\n".into(),
        };
        let raw = String::from_utf8(o.to_bytes().unwrap()).unwrap();
        for h in [
            "From: \"Example Support\" <support@example.test>",
            "Reply-To: \"Example Support\" <support+abc@example.test>",
            "Subject: [#1001] Pager down",
            "Message-ID: <m1@example.test>",
            "In-Reply-To: <orig@clinic.example>",
            "References: <a@b> <orig@clinic.example>",
            "Auto-Submitted: auto-replied",
            "Importance: high",
            "X-Priority: 1",
            "Date: Mon, 23 Nov 2026 12:00:00 +0000",
        ] {
            assert!(raw.contains(h), "missing {h} in\n{raw}");
        }
        assert!(raw.contains("=?utf-8?"), "{raw}");
        assert_eq!(o.recipients(), vec!["jose@clinic.example"]);
    }

    #[test]
    fn deliverable_follows_lettre() {
        for ok in ["ann@clinic.example", "bob+1@x.example", "o'neil@x.example"] {
            assert!(deliverable(&EmailAddress::parse(ok).unwrap()), "{ok}");
        }
        // EmailAddress accepts these (lenient parsing of what arrives); lettre cannot write them.
        for bad in [
            "<a..b@x.example>",
            ".a@x.example",
            "a\"b@x.example",
            "a@x..example",
        ] {
            let e = EmailAddress::parse(bad).unwrap();
            assert!(!deliverable(&e), "{bad}");
            assert!(matches!(
                envelope_address(&e),
                Err(ComposeError::Address(a)) if a == e.to_string()
            ));
        }
    }

    #[test]
    fn attachments_make_a_deterministic_multipart() {
        let o = Outgoing {
            from: party("Example Support", "support@example.test"),
            to: vec![party("Ann", "ann@clinic.example")],
            cc: vec![],
            reply_to: None,
            subject: "[#1001] x".into(),
            message_id: "m2@example.test".into(),
            in_reply_to: None,
            references: vec![],
            date: Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap(),
            auto_submitted: None,
            urgent: false,
            body: "See attached.\n".into(),
        };
        let a = Attachment {
            filename: "log.txt".into(),
            content_type: "text/plain".into(),
            size: 5,
            content_id: None,
            data: b"hello".to_vec(),
        };
        let one = o.to_bytes_with(std::slice::from_ref(&a)).unwrap();
        assert_eq!(one, o.to_bytes_with(&[a]).unwrap());
        let raw = String::from_utf8(one).unwrap();
        assert!(raw.contains("multipart/mixed"), "{raw}");
        assert!(raw.contains("filename=\"log.txt\""), "{raw}");
        assert!(raw.contains("See attached."), "{raw}");
    }
}
