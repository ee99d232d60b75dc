//! An update typed on the ticket page becomes what an emailed reply is: an RFC 5322 message
//! From the customer To the ticket's access-key address (`support+KEY@…`, threading rule 3),
//! with a fresh Message-ID, a header naming the web as its source, the text and the files
//! as MIME parts (lettre's builder, as `mail::compose` writes our own mail). The pipeline
//! then treats it exactly like mail. Pure.

use chrono::{DateTime, Utc};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, MultiPart, SinglePart};
use lettre::Message;

use crate::mail::address::EmailAddress;
use crate::mail::compose::{mailbox, ComposeError, Party};

/// The header that marks a message made from the web form.
pub const SOURCE_HEADER: &str = "X-Supportd-Source";

/// A file uploaded with an update.
#[derive(Debug, Clone)]
pub struct Upload {
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// One update from the web, as a mail.
#[derive(Debug, Clone)]
pub struct Update<'a> {
    pub from: Party,
    /// The ticket's access-key address.
    pub to: EmailAddress,
    pub subject: String,
    /// Without angle brackets.
    pub message_id: String,
    pub date: DateTime<Utc>,
    pub text: &'a str,
    pub files: &'a [Upload],
}

/// No control characters (a CR/LF would end a MIME header), at most 255 bytes.
fn clean_filename(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .to_string();
    let mut out = String::new();
    for c in cleaned.chars() {
        if out.len() + c.len_utf8() > 255 {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        "attachment".to_string()
    } else {
        out
    }
}

impl Update<'_> {
    /// The message's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ComposeError> {
        let b = Message::builder()
            .from(mailbox(&self.from)?)
            .to(mailbox(&Party {
                name: None,
                email: self.to.clone(),
            })?)
            .subject(self.subject.clone())
            .message_id(Some(format!("<{}>", self.message_id)))
            .date(self.date.into())
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(SOURCE_HEADER),
                "web".to_string(),
            ));
        let text = SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(self.text.replace("\r\n", "\n"));
        if self.files.is_empty() {
            return Ok(b.singlepart(text)?.formatted());
        }
        let mut parts = MultiPart::mixed().singlepart(text);
        for f in self.files {
            let content_type = ContentType::parse(&f.content_type)
                .or_else(|_| ContentType::parse("application/octet-stream"))
                .unwrap_or(ContentType::TEXT_PLAIN);
            parts = parts.singlepart(
                Attachment::new(clean_filename(&f.filename)).body(f.data.clone(), content_type),
            );
        }
        Ok(b.multipart(parts)?.formatted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn an_update_parses_back_as_the_customer_writing_to_the_key_address() {
        let files = [Upload {
            filename: "scan\r\nX-Evil: 1.pdf".into(),
            content_type: "application/pdf".into(),
            data: b"%PDF-1.4 tiny".to_vec(),
        }];
        let u = Update {
            from: Party {
                name: Some("Ann <script>\r\nBcc: x@y".into()),
                email: EmailAddress::parse("ann@clinic.example").unwrap(),
            },
            to: EmailAddress::parse("support+abcdefghijklmnopqrst@example.test").unwrap(),
            subject: "Re: [#1001] Pager down".into(),
            message_id: "web-1@example.test".into(),
            date: Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap(),
            text: "line one\r\nline two",
            files: &files,
        };
        let raw = u.to_bytes().unwrap();
        let m = crate::mail::parse::parse(&raw).unwrap();
        assert_eq!(m.sender.email.to_string(), "ann@clinic.example");
        assert_eq!(
            m.to[0].email.to_string(),
            "support+abcdefghijklmnopqrst@example.test"
        );
        assert_eq!(m.message_id, "web-1@example.test");
        assert_eq!(m.body, "line one\nline two");
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].data, b"%PDF-1.4 tiny");
        assert!(
            m.attachments[0].filename.ends_with(".pdf"),
            "{}",
            m.attachments[0].filename
        );
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("X-Supportd-Source: web\r\n"), "{text}");
        assert!(!text.contains("\r\nX-Evil"), "{text}");
        assert!(!text.contains("\r\nBcc:"), "{text}");
    }
}
