//! Raw RFC 5322 bytes → [`InboundMail`], the one domain type the rest of supportd sees.
//!
//! Pure: no I/O, never panics (mail-parser is lenient and fuzzed). A message that has no
//! usable sender or no headers at all is a [`ParseError`], which the pipeline turns into a
//! quarantine entry; everything else parses, however odd.

use chrono::{DateTime, Utc};
use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders, PartType};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::address::EmailAddress;

/// A person on a header line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mailbox {
    #[serde(serialize_with = "display")]
    pub email: EmailAddress,
    pub name: Option<String>,
}

fn display<S: serde::Serializer>(a: &EmailAddress, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(a)
}

/// One attachment or inline part, bytes included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub size: usize,
    /// For inline images referenced from HTML (`cid:`).
    pub content_id: Option<String>,
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// The headers that tell automatic mail from a person's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AutoHeaders {
    pub auto_submitted: Option<String>,
    pub precedence: Option<String>,
    pub list_id: Option<String>,
    pub x_auto_response_suppress: Option<String>,
    pub x_autoreply: Option<String>,
    pub x_autorespond: Option<String>,
}

/// Everything supportd needs from one inbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InboundMail {
    /// Without angle brackets; synthetic (`sha256-…@supportd.invalid`) when the mail had none.
    pub message_id: String,
    pub synthetic_message_id: bool,
    /// From, else Sender, else Return-Path.
    pub sender: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// RFC 2047 decoded; empty when absent.
    pub subject: String,
    /// At most [`MAX_REFERENCED_IDS`], the last ones, each once.
    pub in_reply_to: Vec<String>,
    /// At most [`MAX_REFERENCED_IDS`], the last (newest) ones, each once, in header order.
    pub references: Vec<String>,
    pub date: Option<DateTime<Utc>>,
    /// `Some("")` for the null return path `<>` of bounces.
    pub return_path: Option<String>,
    pub auto: AutoHeaders,
    /// Top-level MIME type, lower-case (`multipart/report` marks a DSN).
    pub content_type: String,
    /// The text body: text/plain preferred, HTML rendered to text when it is the only body.
    pub body: String,
    pub body_from_html: bool,
    /// Why an HTML-only body is its markup stripped rather than rendered (too deep, too large:
    /// see [`super::html`]), when it is; the pipeline records it for the agents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html_fallback: Option<String>,
    pub attachments: Vec<Attachment>,
    /// Message-IDs of messages embedded in this one (the original in a bounce report).
    pub embedded_message_ids: Vec<String>,
    /// Raw `Authentication-Results` header values, for agent spoofing checks.
    pub authentication_results: Vec<String>,
    /// Size of the raw message in bytes.
    pub size: usize,
}

/// Why a message cannot become a ticket; it is quarantined with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("no RFC 5322 header section could be parsed")]
    NoHeaders,
    #[error("no sender address: From, Sender and Return-Path are missing or unparseable")]
    NoSender,
}

/// HTML is rendered at this width; wide enough that sentences survive for triage.
const HTML_TEXT_WIDTH: usize = 100;

/// In-Reply-To and References keep this many ids at most, the last ones (a thread's newest
/// messages), so that no header, however long, costs more downstream than this many lookups:
/// a References header of 400,000 ids once took 518 s to thread.
pub const MAX_REFERENCED_IDS: usize = 100;

/// Parses one raw message.
pub fn parse(raw: &[u8]) -> Result<InboundMail, ParseError> {
    if raw.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ParseError::Empty);
    }
    let msg = MessageParser::default()
        .parse(raw)
        .ok_or(ParseError::NoHeaders)?;
    if msg.headers().is_empty() {
        return Err(ParseError::NoHeaders);
    }

    let return_path = msg.header_raw("Return-Path").map(|r| {
        r.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim()
            .to_string()
    });
    let sender = first_mailbox(msg.from())
        .or_else(|| first_mailbox(msg.sender()))
        .or_else(|| {
            return_path
                .as_deref()
                .and_then(EmailAddress::parse)
                .map(|email| Mailbox { email, name: None })
        })
        .or_else(|| {
            // Delivery reports often come `From: MAILER-DAEMON <>`: still a bounce to match
            // against our outbox, not a message to quarantine.
            let report = msg.root_part().content_type().is_some_and(|ct| {
                ct.ctype().eq_ignore_ascii_case("multipart")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            });
            report.then(|| Mailbox {
                email: EmailAddress::from_parts("MAILER-DAEMON", "invalid"),
                name: None,
            })
        })
        .ok_or(ParseError::NoSender)?;

    let (message_id, synthetic_message_id) = match msg.message_id().map(clean_id) {
        Some(id) if !id.is_empty() => (id, false),
        _ => (synthetic_message_id(raw), true),
    };

    let (body, body_from_html, html_fallback) = body_text(&msg);
    let mut attachments = Vec::new();
    // Which part each attachment's bytes are in: they are moved out of the parsed message at
    // the end instead of copied (a 25 MB scan would otherwise be held twice).
    let mut attachment_parts = Vec::new();
    let mut embedded_message_ids = Vec::new();
    let parts = msg
        .attachments
        .iter()
        .filter_map(|&id| Some((id, msg.parts.get(usize::try_from(id).ok()?)?)));
    for (part_id, part) in parts {
        if let PartType::Message(inner) = &part.body {
            if let Some(id) = inner.message_id() {
                embedded_message_ids.push(clean_id(id));
            }
        }
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_string(),
            })
            .unwrap_or_else(|| "application/octet-stream".into())
            .to_ascii_lowercase();
        if content_type == "text/rfc822-headers" {
            // DSNs often return only the original's headers.
            if let Some(id) = part
                .text_contents()
                .and_then(|t| MessageParser::default().parse_headers(t.as_bytes()))
                .and_then(|m| m.message_id().map(clean_id))
            {
                embedded_message_ids.push(id);
            }
        }
        attachment_parts.push(part_id);
        attachments.push(Attachment {
            filename: part
                .attachment_name()
                .map(sanitize_filename)
                .unwrap_or_else(|| default_filename(&content_type)),
            content_type,
            size: part.contents().len(),
            content_id: part.content_id().map(clean_id),
            data: Vec::new(),
        });
    }

    let mut mail = InboundMail {
        message_id,
        synthetic_message_id,
        sender,
        to: mailboxes(msg.to()),
        cc: mailboxes(msg.cc()),
        subject: msg.subject().map(one_line).unwrap_or_default(),
        in_reply_to: id_list(msg.in_reply_to()),
        references: id_list(msg.references()),
        date: msg
            .date()
            .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0)),
        return_path,
        auto: AutoHeaders {
            auto_submitted: raw_header(&msg, "Auto-Submitted"),
            precedence: raw_header(&msg, "Precedence"),
            list_id: raw_header(&msg, "List-Id"),
            x_auto_response_suppress: raw_header(&msg, "X-Auto-Response-Suppress"),
            x_autoreply: raw_header(&msg, "X-Autoreply"),
            x_autorespond: raw_header(&msg, "X-Autorespond"),
        },
        content_type: msg
            .root_part()
            .content_type()
            .map(|ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_ascii_lowercase())
            .unwrap_or_else(|| "text/plain".into()),
        body,
        body_from_html,
        html_fallback,
        attachments,
        embedded_message_ids,
        authentication_results: msg
            .headers_raw()
            .filter(|(name, _)| name.eq_ignore_ascii_case("Authentication-Results"))
            .map(|(_, v)| unfold(v))
            .collect(),
        size: raw.len(),
    };
    let mut msg = msg;
    for (a, part_id) in mail.attachments.iter_mut().zip(attachment_parts) {
        if let Some(part) = usize::try_from(part_id)
            .ok()
            .and_then(|i| msg.parts.get_mut(i))
        {
            a.data = take_contents(part);
        }
    }
    Ok(mail)
}

/// A part's bytes (what `MessagePart::contents` shows), moved out when the parser decoded
/// them into a buffer of its own, copied only when they are a slice of the raw message.
fn take_contents(part: &mut mail_parser::MessagePart<'_>) -> Vec<u8> {
    if let PartType::Message(_) | PartType::Multipart(_) = part.body {
        // An attached message's `raw_message` may be the whole outer mail; `contents()` cuts
        // out the attached one.
        return part.contents().to_vec();
    }
    match std::mem::replace(&mut part.body, PartType::Multipart(Vec::new())) {
        PartType::Text(text) | PartType::Html(text) => text.into_owned().into_bytes(),
        PartType::Binary(bin) | PartType::InlineBinary(bin) => bin.into_owned(),
        PartType::Message(_) | PartType::Multipart(_) => Vec::new(),
    }
}

/// Subject and text body only, for `supportd classify`: works on mail without a sender.
pub fn subject_and_body(raw: &[u8]) -> (String, String) {
    match MessageParser::default().parse(raw) {
        Some(msg) => {
            let subject = msg
                .subject()
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            (subject, body_text(&msg).0)
        }
        None => (String::new(), String::new()),
    }
}

/// `sha256-<hex>@supportd.invalid`: stable across re-fetches of the same bytes.
pub fn synthetic_message_id(raw: &[u8]) -> String {
    let digest = Sha256::digest(raw);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("sha256-{hex}@supportd.invalid")
}

/// The text body, whether it came from HTML, and why that HTML was stripped, not rendered.
fn body_text(msg: &mail_parser::Message<'_>) -> (String, bool, Option<String>) {
    // mail-parser lists the HTML part as the text body when there is no text/plain one.
    let plain = msg.text_bodies().find(|p| !p.is_text_html());
    if let Some(text) = plain.and_then(|p| p.text_contents()) {
        return (normalise_newlines(text), false, None);
    }
    if let Some(html) = msg.html_bodies().next().and_then(|p| p.text_contents()) {
        let text = super::html::to_text(html, HTML_TEXT_WIDTH);
        return (normalise_newlines(&text.text), true, text.fallback);
    }
    (String::new(), false, None)
}

fn normalise_newlines(s: &str) -> String {
    s.replace("\r\n", "\n").trim_end().to_string()
}

fn first_mailbox(a: Option<&Address<'_>>) -> Option<Mailbox> {
    a.into_iter().flat_map(|a| a.iter()).find_map(to_mailbox)
}

fn mailboxes(a: Option<&Address<'_>>) -> Vec<Mailbox> {
    a.into_iter()
        .flat_map(|a| a.iter())
        .filter_map(to_mailbox)
        .collect()
}

fn to_mailbox(a: &mail_parser::Addr<'_>) -> Option<Mailbox> {
    let email = EmailAddress::parse(a.address.as_deref()?)?;
    let name = a
        .name
        .as_deref()
        .map(|n| one_line(n).trim_matches('"').trim().to_string())
        .filter(|n| !n.is_empty() && *n != email.to_string());
    Some(Mailbox { email, name })
}

/// Subjects and names are one line: CR/LF and other controls smuggled in through RFC 2047
/// encoded words become spaces, so they can never start a header or a line of ours.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// The ids of an In-Reply-To or References header: the last [`MAX_REFERENCED_IDS`] distinct
/// ones, in header order. Walks the header from its end and stops there, so a header of
/// 400,000 ids costs no more than one of 100.
fn id_list(v: &HeaderValue<'_>) -> Vec<String> {
    let ids: &[std::borrow::Cow<'_, str>] = match v {
        HeaderValue::Text(t) => std::slice::from_ref(t),
        HeaderValue::TextList(l) => l,
        _ => &[],
    };
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<String> = ids
        .iter()
        .rev()
        .map(|t| clean_id(t))
        .filter(|id| !id.is_empty() && seen.insert(id.clone()))
        .take(MAX_REFERENCED_IDS)
        .collect();
    kept.reverse();
    kept
}

fn clean_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

fn raw_header(msg: &mail_parser::Message<'_>, name: &str) -> Option<String> {
    msg.header_raw(name).map(unfold).filter(|v| !v.is_empty())
}

fn unfold(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The longest attachment name kept, in bytes: most filesystems' limit for one name.
const MAX_FILENAME_BYTES: usize = 255;
/// An extension longer than this is not worth keeping whole when a name is cut.
const MAX_KEPT_EXTENSION_BYTES: usize = 32;

/// Keeps only the final path component; drops control characters and the invisible ones
/// that disguise a name (bidi overrides: `invoice`, U+202E, `fdp.exe` reads as
/// `invoiceexe.pdf`); cuts it to [`MAX_FILENAME_BYTES`] on a character boundary, keeping the
/// extension.
fn sanitize_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean: String = base
        .chars()
        .filter(|&c| !c.is_control() && !crate::display::is_hidden_format(c))
        .collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        return "attachment".into();
    }
    cut_filename(clean, MAX_FILENAME_BYTES)
}

/// `name` cut to at most `max` bytes on a character boundary; a short extension survives.
fn cut_filename(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let ext = name
        .rfind('.')
        .filter(|&dot| dot > 0 && name.len() - dot <= MAX_KEPT_EXTENSION_BYTES)
        .map_or("", |dot| &name[dot..]);
    let stem = &name[..name.len() - ext.len()];
    let mut end = max.saturating_sub(ext.len()).min(stem.len());
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ext}", stem[..end].trim_end())
}

fn default_filename(content_type: &str) -> String {
    let ext = match content_type {
        "message/rfc822" => "eml",
        "text/plain" | "text/rfc822-headers" | "message/delivery-status" => "txt",
        "text/html" => "html",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "application/pdf" => "pdf",
        _ => "bin",
    };
    format!("attachment.{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_message() {
        let raw = b"From: =?UTF-8?B?Sm9zw6kgR2FyY8OtYQ==?= <Jose@Clinic.Example>\r\nTo: support@example.test\r\nCc: Ann <ann@clinic.example>, bob@clinic.example\r\nSubject: =?ISO-8859-1?Q?Caf=E9_pager?=\r\nMessage-ID: <abc@clinic.example>\r\nIn-Reply-To: <x@y>\r\nReferences: <a@b> <x@y>\r\nDate: Wed, 18 Nov 2026 05:37:00 -0500\r\n\r\nHello\r\nworld\r\n";
        let m = parse(raw).unwrap();
        assert_eq!(m.sender.email.to_string(), "Jose@clinic.example");
        assert_eq!(m.sender.name.as_deref(), Some("José García"));
        assert_eq!(m.subject, "Café pager");
        assert_eq!(m.message_id, "abc@clinic.example");
        assert_eq!(m.in_reply_to, vec!["x@y"]);
        assert_eq!(m.references, vec!["a@b", "x@y"]);
        assert_eq!(m.cc.len(), 2);
        assert_eq!(m.body, "Hello\nworld");
        assert_eq!(
            m.date.map(|d| d.to_rfc3339()).as_deref(),
            Some("2026-11-18T10:37:00+00:00")
        );
    }

    #[test]
    fn missing_from_falls_back_to_sender_then_return_path() {
        let m = parse(b"Sender: s@x.example\r\nSubject: hi\r\n\r\nbody").unwrap();
        assert_eq!(m.sender.email.to_string(), "s@x.example");
        let m = parse(b"Return-Path: <r@x.example>\r\nSubject: hi\r\n\r\nbody").unwrap();
        assert_eq!(m.sender.email.to_string(), "r@x.example");
        assert_eq!(parse(b"Subject: hi\r\n\r\nbody"), Err(ParseError::NoSender));
    }

    #[test]
    fn synthetic_id_is_stable() {
        let raw = b"From: a@b.example\r\n\r\nx";
        let a = parse(raw).unwrap();
        assert!(a.synthetic_message_id);
        assert_eq!(a.message_id, parse(raw).unwrap().message_id);
    }

    #[test]
    fn html_only_becomes_text() {
        let raw = b"From: a@b.example\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Pages are <b>stuck</b></p><ul><li>one</li></ul><script>x()</script></body></html>";
        let m = parse(raw).unwrap();
        assert!(m.body_from_html);
        assert_eq!(m.html_fallback, None);
        assert!(m.body.contains("Pages are"), "{}", m.body);
        assert!(m.body.contains("stuck"));
        assert!(!m.body.contains("<p>"));
    }

    #[test]
    fn references_keep_the_last_hundred_distinct_ids() {
        let ids: Vec<String> = (0..400_000).map(|i| format!("<r{i}@t.example>")).collect();
        let raw = format!(
            "From: a@b.example\r\nIn-Reply-To: <x@y> <x@y>\r\nReferences: <r9@t.example> {} <r399999@t.example> <r399998@t.example>\r\n\r\nhi",
            ids.join(" ")
        );
        let started = std::time::Instant::now();
        let m = parse(raw.as_bytes()).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert_eq!(m.in_reply_to, vec!["x@y"]);
        assert_eq!(m.references.len(), MAX_REFERENCED_IDS);
        // The newest last, each once (its last occurrence counts).
        assert_eq!(
            m.references.last().map(String::as_str),
            Some("r399998@t.example")
        );
        assert_eq!(m.references[MAX_REFERENCED_IDS - 2], "r399999@t.example");
        assert_eq!(m.references[0], "r399900@t.example");
        let distinct: std::collections::HashSet<_> = m.references.iter().collect();
        assert_eq!(distinct.len(), MAX_REFERENCED_IDS);
    }

    #[test]
    fn deeply_nested_html_falls_back_to_stripped_text_with_a_note() {
        let raw = format!(
            "From: a@b.example\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>{}Pages &amp; alerts are stuck{}</body></html>",
            "<div>".repeat(100_000),
            "</div>".repeat(100_000)
        );
        let m = parse(raw.as_bytes()).unwrap();
        assert!(m.body_from_html);
        assert_eq!(m.body, "Pages & alerts are stuck");
        assert!(m
            .html_fallback
            .as_deref()
            .is_some_and(|n| n.contains("markup stripped")));
    }

    #[test]
    fn filenames_lose_paths_controls_and_bidi_overrides() {
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("C:\\x\\report.pdf"), "report.pdf");
        assert_eq!(
            sanitize_filename("in\u{1b}[31mvoice\r\n.pdf"),
            "in[31mvoice.pdf"
        );
        assert_eq!(
            sanitize_filename("invoice\u{202e}fdp.exe"),
            "invoicefdp.exe"
        );
        assert_eq!(
            sanitize_filename("\u{2067}a\u{200b}b\u{feff}c\u{2069}\u{e0041}.txt"),
            "abc.txt"
        );
        assert_eq!(sanitize_filename("\u{202e}\u{200f}"), "attachment");
        assert_eq!(sanitize_filename(".."), "attachment");
        // Joiners inside words stay.
        assert_eq!(sanitize_filename("می‌خواهم.pdf"), "می‌خواهم.pdf");
    }

    #[test]
    fn long_filenames_are_cut_on_a_char_boundary_keeping_the_extension() {
        let long = format!("{}.pdf", "é".repeat(300));
        let cut = sanitize_filename(&long);
        assert!(cut.len() <= MAX_FILENAME_BYTES, "{}", cut.len());
        assert!(cut.ends_with("é.pdf"), "{cut}");
        // 251 bytes left for the stem: 125 two-byte é, never half of the 126th.
        assert_eq!(cut, format!("{}.pdf", "é".repeat(125)));
        let no_ext = "ü".repeat(200);
        let cut = sanitize_filename(&no_ext);
        assert_eq!(cut, "ü".repeat(127));
        // An "extension" longer than a real one is not kept whole.
        let dotted = format!("a.{}", "x".repeat(400));
        assert_eq!(sanitize_filename(&dotted).len(), MAX_FILENAME_BYTES);
        // 255 bytes exactly are kept as they are.
        let exact = format!("{}.txt", "a".repeat(251));
        assert_eq!(sanitize_filename(&exact), exact);
        // Four-byte chars and a stem that must lose everything but the extension.
        let emoji = format!("{}.tar.gz", "📎".repeat(100));
        let cut = sanitize_filename(&emoji);
        assert!(
            cut.len() <= MAX_FILENAME_BYTES && cut.ends_with("📎.gz"),
            "{cut}"
        );
    }

    #[test]
    fn empty_and_garbage() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b"  \r\n"), Err(ParseError::Empty));
        assert!(parse(&[0u8, 159, 146, 150, 0, 1, 2]).is_err());
    }
}
