//! Reply-quote and signature removal: keep only the new text of a message.
//!
//! Pure functions over the text body. What is removed:
//!
//! * lines quoted with `>`;
//! * everything from a reply header on: Gmail / Apple Mail / Thunderbird
//!   "On <date>, <name> wrote:" (also wrapped over two lines and localized:
//!   "Am … schrieb …:", "Le … a écrit :", "El … escribió:", …), Thunderbird
//!   "<name> wrote:" followed by quoted lines, Outlook
//!   "-----Original Message-----" and "From: / Sent: / To: / Subject:" header
//!   blocks (with or without a "____" separator line above them);
//! * signatures: from a line that is exactly "-- " (or "--") on, and mobile
//!   footers such as "Sent from my iPhone" or "Get Outlook for iOS".
//!
//! Forwarded content ("Begin forwarded message:", "---------- Forwarded
//! message ---------", "-----Forwarded Message-----") is new information for
//! the reader and is kept, including its header block; `>` quoting inside it
//! is removed but the text is kept.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// Compiles a constant pattern. The patterns in this file are literals that
/// are covered by the unit tests; should one ever fail to compile, the
/// corresponding check is disabled (matches nothing) instead of panicking.
fn re(pattern: &str) -> Option<Regex> {
    Regex::new(pattern).ok()
}

/// A regex compiled by the first line that reaches it, behind a cheap test that every line it
/// matches passes. Compiling one costs ~0.3 to 5 M instructions (Unicode classes and case
/// folding), which a `supportd ingest -` process pays for each message it is piped: with the
/// test first, ordinary lines ("since 5:10", "call ext. 0: ...") compile none.
struct Guarded {
    may_match: fn(&str) -> bool,
    regex: LazyLock<Option<Regex>>,
}

impl Guarded {
    const fn new(may_match: fn(&str) -> bool, build: fn() -> Option<Regex>) -> Guarded {
        Guarded {
            may_match,
            regex: LazyLock::new(build),
        }
    }

    fn is_match(&self, text: &str) -> bool {
        (self.may_match)(text) && self.regex.as_ref().is_some_and(|r| r.is_match(text))
    }

    fn captures<'t>(&self, text: &'t str) -> Option<regex::Captures<'t>> {
        if !(self.may_match)(text) {
            return None;
        }
        self.regex.as_ref().as_ref()?.captures(text)
    }
}

/// Whether `line` may be a header line ("From: …", "*Envoyé :* …"): the text before its
/// first ':' is one short word, after blanks and one '*'. The header regexes need that.
fn header_like(line: &str) -> bool {
    let Some((label, _)) = line.split_once(':') else {
        return false;
    };
    let label = label.trim_start();
    let label = label.strip_prefix('*').unwrap_or(label).trim_end();
    !label.is_empty() && label.len() <= 16 && !label.contains(char::is_whitespace)
}

/// Whether `line` may be a separator of dashes ("-----Original Message-----").
fn dashes(line: &str) -> bool {
    line.contains("--")
}

/// Whether `line` may be a separator of underscores.
fn underscores(line: &str) -> bool {
    line.contains("__________")
}

/// Whether `line` may be a forward marker: a separator of dashes, or "…message:".
fn forward_like(line: &str) -> bool {
    dashes(line) || ends_colon(line)
}

/// Whether `line`'s first word can start a mobile or webmail footer.
fn footer_start(line: &str) -> bool {
    let first = line.split_whitespace().next().unwrap_or("").to_lowercase();
    ["sent", "get", "envoyé", "envoye", "von", "enviado"].contains(&first.as_str())
}

/// Whether `line` ends in ':' (every reply header does).
fn ends_colon(line: &str) -> bool {
    line.trim_end().ends_with(':')
}

/// "On <date> <name> wrote:" and its translations (one logical line). The parts between
/// the words are at most [`REPLY_PART_CHARS`] characters, checked on the captures
/// ([`reply_header`]): written as `.{4,250}` in the pattern, the bounded repetitions
/// compiled into an automaton of some 20,000 states, ~20 ms for each process that met a
/// line ending in ':' (every `supportd ingest -` of a reply).
static REPLY_HEADER: Guarded = Guarded::new(ends_colon, || {
    re(r"(?ix)^\s*(?:
        on\s(?P<a>.{4,}?)\bwrote\s*:
      | am\s(?P<b>.{4,}?)\bschrieb\b(?P<c>.*):
      | le\s(?P<d>.{4,}?)\ba\s+[ée]crit\s*:
      | el\s(?P<e>.{4,}?)\bescribi[óo]\s*:
      | op\s(?P<f>.{4,}?)\bschreef\b(?P<g>.*):
      | il\s(?P<h>.{4,}?)\bha\s+scritto\s*:
      | em\s(?P<i>.{4,}?)\bescreveu\s*:
      | den\s(?P<j>.{4,}?)\bskrev\b(?P<k>.*):
    )\s*$")
});

/// The most characters between the words of a reply header.
const REPLY_PART_CHARS: usize = 250;

/// Whether `text` is a reply header: [`REPLY_HEADER`] with every part short enough.
fn reply_header(text: &str) -> bool {
    let Some(caps) = REPLY_HEADER.captures(text) else {
        return false;
    };
    caps.iter()
        .skip(1)
        .flatten()
        .all(|m| m.as_str().chars().count() <= REPLY_PART_CHARS)
}

/// "<name> wrote:" without a date (Thunderbird, some clients); only a reply
/// header when quoted lines follow.
static NAME_WROTE: Guarded = Guarded::new(ends_colon, || {
    re(
        r"(?i)^\s*.{1,120}\s(?:wrote|schrieb|a\s+[ée]crit|escribi[óo]|schreef|ha\s+scritto|escreveu|skrev)\s*:\s*$",
    )
});

/// Outlook "-----Original Message-----" and translations.
static ORIGINAL_MESSAGE: Guarded = Guarded::new(dashes, || {
    re(
        r"(?i)^\s*-{2,}\s*(?:original\s+message|urspr[üu]ngliche\s+nachricht|message\s+d'origine|mensaje\s+original|messaggio\s+originale|oorspronkelijk\s+bericht|mensagem\s+original)\s*-{2,}\s*$",
    )
});

/// "________________________________" (Outlook web/desktop separator).
static UNDERSCORES: Guarded = Guarded::new(underscores, || re(r"^\s*_{10,}\s*$"));

/// First line of a header block ("From: …", "*From:* …").
static FROM_HEADER: Guarded = Guarded::new(header_like, || {
    re(r"(?i)^\s*\*?(?:from|de|von|van|da|fr[åa]n|od)\s*:\*?\s*\S")
});

/// Header lines that, after a "From:" line, make it a quoted header block.
static DATE_HEADER: Guarded = Guarded::new(header_like, || {
    re(
        r"(?i)^\s*\*?(?:sent|date|envoy[ée]|gesendet|datum|verzonden|enviado|inviato|fecha|data|skickat)\s*:\*?\s*\S",
    )
});

/// Other lines of a header block.
static OTHER_HEADER: Guarded = Guarded::new(header_like, || {
    re(
        r"(?i)^\s*\*?(?:to|cc|bcc|subject|reply-to|importance|[àa]|an|aan|para|a|objet|betreff|onderwerp|asunto|oggetto|assunto|cc)\s*:\*?",
    )
});

/// Markers of forwarded content, which is kept.
static FORWARD_MARKER: Guarded = Guarded::new(forward_like, || {
    re(
        r"(?i)^\s*(?:begin\s+forwarded\s+message\s*:|-{2,}\s*(?:forwarded\s+message|weitergeleitete\s+nachricht|message\s+transf[ée]r[ée]|mensaje\s+reenviado)\s*-{2,})\s*$",
    )
});

/// Mobile and webmail footers. The free text in them is short (40 characters, 30 in the
/// French, German and Spanish ones), checked on the captures ([`mobile_footer`]): bounded
/// repetitions in the pattern cost ~10 million instructions to compile, in every process.
static MOBILE_FOOTER: Guarded = Guarded::new(footer_start, || {
    re(r"(?ix)^\s*(?:
        sent\s+from\s+my\s+\S(?P<a>.*)
      | sent\s+from\s+(?:outlook|mail|yahoo\s+mail|gmail)\b(?P<b>.*)
      | sent\s+(?:via|with)\s+\S(?P<c>.*)\s+(?:app|mobile)
      | get\s+outlook\s+for\s+(?:ios|android)
      | envoy[ée]\s+de\s+mon\s+\S(?P<d>.*)
      | von\s+meinem\s+\S(?P<e>.*)\s+gesendet
      | enviado\s+desde\s+mi\s+\S(?P<f>.*)
    )\s*$")
});

/// Whether `line` is a mobile or webmail footer ([`MOBILE_FOOTER`]).
fn mobile_footer(line: &str) -> bool {
    let Some(caps) = MOBILE_FOOTER.captures(line) else {
        return false;
    };
    let limit = |name: &str| if "abc".contains(name) { 40 } else { 30 };
    ["a", "b", "c", "d", "e", "f"].iter().all(|name| {
        caps.name(name)
            .is_none_or(|m| m.as_str().trim_end().chars().count() <= limit(name))
    })
}

fn is_quoted(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

/// Removes the `>` quoting of a forwarded line, keeping its text.
fn unquote(line: &str) -> &str {
    let mut l = line.trim_start();
    while let Some(rest) = l.strip_prefix('>') {
        l = rest.strip_prefix(' ').unwrap_or(rest);
    }
    l
}

fn next_non_blank(lines: &[&str], from: usize) -> Option<usize> {
    (from..lines.len()).find(|&i| lines.get(i).is_some_and(|l| !l.trim().is_empty()))
}

/// Is `lines[i]` the start of an Outlook-style header block: "From:" then,
/// within the next lines, a "Sent:"/"Date:" line, every line in between
/// being a header line too.
fn is_header_block(lines: &[&str], i: usize) -> bool {
    let Some(first) = lines.get(i) else {
        return false;
    };
    let first = unquote(first);
    if !FROM_HEADER.is_match(first) {
        return false;
    }
    for line in lines.iter().skip(i + 1).take(5) {
        let line = unquote(line);
        if DATE_HEADER.is_match(line) {
            return true;
        }
        if !OTHER_HEADER.is_match(line) {
            return false;
        }
    }
    false
}

/// Is a reply header (possibly wrapped over two lines) at `lines[i]`?
fn is_reply_header(lines: &[&str], i: usize) -> bool {
    let Some(line) = lines.get(i) else {
        return false;
    };
    if is_quoted(line) {
        return false;
    }
    let has_digit = |s: &str| s.chars().any(|c| c.is_ascii_digit());
    // Every reply-header pattern ends in ':': a cheap test spares the regexes (and the
    // allocation of the joined line) on ordinary lines.
    if ends_colon(line) && reply_header(line) && has_digit(line) {
        return true;
    }
    if let Some(next) = lines.get(i + 1).filter(|n| ends_colon(n)) {
        if !line.trim().is_empty() && !next.trim().is_empty() && !is_quoted(next) {
            let joined = format!("{} {}", line.trim_end(), next.trim());
            if joined.len() <= 300 && reply_header(&joined) && has_digit(&joined) {
                return true;
            }
        }
    }
    if NAME_WROTE.is_match(line) {
        if let Some(n) = next_non_blank(lines, i + 1) {
            return lines.get(n).is_some_and(|l| is_quoted(l));
        }
    }
    false
}

/// Returns only the new text of a message: quoted lines, everything from a
/// reply header on, and the signature are removed. Forwarded content is kept.
pub fn strip_quotes(body: &str) -> String {
    strip(body, false)
}

/// [`strip_quotes`] for a message with this subject: a forward by its subject ("FW:",
/// "Fwd:", "TR:", "RV:", "WG:") keeps the mail it forwards under an Outlook-style
/// "Original Message" line or header block (Gmail's and Apple's forward markers are kept
/// whatever the subject). A forwarded mail is the customer's report: its text is new.
pub fn strip_quotes_of(subject: &str, body: &str) -> String {
    strip(body, is_forward_subject(subject))
}

/// The text triage reads: [`strip_quotes_of`], except for a reply whose new text is only a
/// line or two ("Still happening, please fix"): then the quoted mail too, unquoted, since
/// what is broken and for whom is said there. The ticket keeps the stripped text.
/// `stripped` is [`strip_quotes_of`]`(subject, body)`, computed once by the caller.
pub fn triage_text<'a>(subject: &str, body: &str, stripped: &'a str) -> Cow<'a, str> {
    if stripped.chars().count() >= SHORT_REPLY_CHARS || !is_reply_subject(subject) {
        return Cow::Borrowed(stripped);
    }
    let normalized = body.replace("\r\n", "\n").replace('\r', "\n");
    let unquoted: Vec<&str> = normalized.lines().map(unquote).collect();
    Cow::Owned(strip_signature(&unquoted.join("\n")))
}

/// A reply's new text shorter than this is read with the mail it quotes.
const SHORT_REPLY_CHARS: usize = 160;

/// Whether a subject marks a reply ("RE:", "AW:", "SV:", "Réf :").
fn is_reply_subject(subject: &str) -> bool {
    let Some((prefix, _)) = subject.trim_start().split_once(':') else {
        return false;
    };
    let p = prefix.trim().to_ascii_lowercase();
    let p = p.trim_end_matches(|c: char| c.is_ascii_digit() || "[]()".contains(c));
    matches!(p, "re" | "aw" | "ref" | "sv" | "res" | "rif")
}

/// Whether a subject marks a forward: a forward prefix, possibly after reply prefixes.
pub fn is_forward_subject(subject: &str) -> bool {
    let mut rest = subject.trim_start();
    for _ in 0..4 {
        let Some((prefix, after)) = rest.split_once(':') else {
            return false;
        };
        let p = prefix.trim().to_ascii_lowercase();
        let p = p.trim_end_matches(|c: char| c.is_ascii_digit() || "[]()".contains(c));
        match p {
            "fw" | "fwd" | "tr" | "rv" | "wg" | "enc" => return true,
            "re" | "aw" | "ref" | "sv" | "res" => rest = after.trim_start(),
            _ => return false,
        }
    }
    false
}

fn strip(body: &str, forward: bool) -> String {
    let normalized = body.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = normalized.lines().collect();
    let mut out: Vec<&str> = Vec::with_capacity(lines.len());
    let mut in_forward = false;
    let mut i = 0;
    while let Some(&line) = lines.get(i) {
        // Markers and separators all contain ':', "--" or "__"; most lines contain none.
        let marked = line.contains(':') || line.contains("--") || line.contains("__");
        if marked && FORWARD_MARKER.is_match(unquote(line)) {
            in_forward = true;
            out.push(unquote(line));
            i += 1;
            continue;
        }
        if in_forward {
            // Forwarded text is new to us: keep it, headers included, without
            // its quoting; a reply header or "Original Message" inside it
            // still ends it.
            if ORIGINAL_MESSAGE.is_match(line) || is_reply_header(&lines, i) {
                break;
            }
            out.push(unquote(line));
            i += 1;
            continue;
        }
        // A forward (by its subject) in Outlook's style: the "Original Message" or header
        // block starts the forwarded mail, which is kept like any forwarded content.
        let outlook_block =
            marked && (ORIGINAL_MESSAGE.is_match(line) || is_header_block(&lines, i));
        if forward && outlook_block {
            in_forward = true;
            out.push(unquote(line));
            i += 1;
            continue;
        }
        if outlook_block || is_reply_header(&lines, i) {
            break;
        }
        if marked && UNDERSCORES.is_match(line) {
            if next_non_blank(&lines, i + 1).is_some_and(|n| is_header_block(&lines, n)) {
                if forward {
                    i += 1;
                    continue;
                }
                break;
            }
            // A lone separator carries no text.
            i += 1;
            continue;
        }
        if is_quoted(line) {
            i += 1;
            continue;
        }
        out.push(line);
        i += 1;
    }
    strip_signature(&out.join("\n"))
}

/// Removes a signature: everything from a line that is exactly "-- " (or
/// "--") on, and mobile footer lines ("Sent from my iPhone", "Get Outlook for
/// Android", ...). Trailing blank lines are trimmed.
pub fn strip_signature(body: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for line in body.lines() {
        let l = line.strip_suffix('\r').unwrap_or(line);
        if l == "-- " || l == "--" {
            break;
        }
        // Footers are short lines; the regex runs only on those.
        if l.len() <= 120 && mobile_footer(l) {
            continue;
        }
        out.push(l);
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    while out.first().is_some_and(|l| l.trim().is_empty()) {
        out.remove(0);
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_patterns_compile() {
        for r in [
            &REPLY_HEADER,
            &NAME_WROTE,
            &ORIGINAL_MESSAGE,
            &UNDERSCORES,
            &FROM_HEADER,
            &DATE_HEADER,
            &OTHER_HEADER,
            &FORWARD_MARKER,
            &MOBILE_FOOTER,
        ] {
            assert!(r.regex.is_some());
        }
    }

    /// Each regex's cheap test lets through what the regex matches: a line of each kind
    /// still matches through the guard, and a line of times compiles nothing it need not.
    #[test]
    fn the_guards_let_every_kind_of_line_through() {
        let cases: [(&Guarded, &str); 10] = [
            (
                &REPLY_HEADER,
                "On Tue, 3 Nov 2026 at 09:12, Ann Lee <ann@b.example> wrote:",
            ),
            (&NAME_WROTE, "Ann Lee a\u{a0}écrit\u{a0}:"),
            (&ORIGINAL_MESSAGE, "  -----Mensaje original-----"),
            (&UNDERSCORES, "________________________________"),
            (&FROM_HEADER, "*De\u{a0}:* Ann Lee <ann@b.example>"),
            (&DATE_HEADER, "Envoyé : lundi 2 novembre 2026 09:12"),
            (&OTHER_HEADER, "Reply-To: desk@b.example"),
            (&FORWARD_MARKER, "Begin forwarded message:"),
            (&FORWARD_MARKER, "---------- Forwarded message ---------"),
            (&MOBILE_FOOTER, "Enviado desde mi iPhone"),
        ];
        for (pattern, line) in cases {
            assert!(pattern.is_match(line), "{line}");
        }
        for line in [
            "Since 5:10 nothing goes out -- at all",
            "Call ext. 0: ask for Ray",
        ] {
            assert!(!FROM_HEADER.is_match(line) && !REPLY_HEADER.is_match(line));
            assert!(!(REPLY_HEADER.may_match)(line) && !(FROM_HEADER.may_match)(line));
        }
    }

    #[test]
    fn outlook_forward_keeps_the_forwarded_mail() {
        let body = "Forwarding from our nurse manager.\n\n-----Original Message-----\nFrom: Ann <a@b.example>\nSent: Tuesday, May 6, 2025 9:48 AM\nTo: Desk <d@b.example>\nSubject: quick one\n\nPages to the fellows are 20 minutes late.";
        let kept = strip_quotes_of("FW: quick one", body);
        assert!(
            kept.contains("Pages to the fellows are 20 minutes late."),
            "{kept}"
        );
        assert!(
            kept.starts_with("Forwarding from our nurse manager."),
            "{kept}"
        );
        // A reply with the same block drops it.
        assert_eq!(
            strip_quotes_of("RE: quick one", body),
            "Forwarding from our nurse manager."
        );
        assert!(is_forward_subject("Fwd: x"));
        assert!(is_forward_subject("RE: TR: x"));
        assert!(!is_forward_subject("Free: x"));
        assert!(!is_forward_subject("pages"));
    }

    #[test]
    fn a_short_reply_is_triaged_with_the_mail_it_quotes() {
        let body = "Still happening.\n\nOn Mon, Nov 23, 2026 at 9:02 AM Ann <a@b.example> wrote:\n> Pages to the ICU are not arriving.\n";
        let stripped = strip_quotes_of("RE: pages", body);
        let text = triage_text("RE: pages", body, &stripped);
        assert!(
            text.contains("Pages to the ICU are not arriving."),
            "{text}"
        );
        // Not a reply, or a reply that says enough: the stripped text.
        assert_eq!(
            triage_text("pages", body, &strip_quotes(body)),
            "Still happening."
        );
        let long = format!("{}\n\n> old", "The whole unit cannot log in. ".repeat(8));
        assert!(!triage_text("RE: pages", &long, &strip_quotes(&long)).contains("old"));
    }

    #[test]
    fn reply_header_parts_are_bounded() {
        assert!(reply_header(
            "On Mon, Nov 23, 2026 at 9:02 AM Ann <a@b.example> wrote:"
        ));
        assert!(reply_header(
            "Am Mo., 23. Nov. 2026 um 09:02 Uhr schrieb Ann <a@b.example>:"
        ));
        let long = format!("On Monday {} wrote:", "x".repeat(260));
        assert!(!reply_header(&long));
        let long = format!("Am Mo., 23. Nov. 2026 schrieb {}:", "x".repeat(260));
        assert!(!reply_header(&long));
    }

    #[test]
    fn plain_message_is_unchanged() {
        let body = "Hello,\n\nThe pager is down.\n\nThanks,\nAnn";
        assert_eq!(strip_quotes(body), body);
    }

    #[test]
    fn gmail_reply() {
        let body = "Thanks, but it's still stuck.\n\nKevin\n\nOn Mon, Nov 23, 2026 at 9:02 AM Support <support@vendor.example> wrote:\n> Hi Dr. Zhou,\n>\n> We've refreshed the swap.\n";
        assert_eq!(strip_quotes(body), "Thanks, but it's still stuck.\n\nKevin");
    }

    #[test]
    fn gmail_reply_header_wrapped_over_two_lines() {
        let body = "Still broken.\n\nOn Mon, Nov 23, 2026 at 9:02 AM Support Team <\nsupport@vendor.example> wrote:\n\n> earlier text\n";
        assert_eq!(strip_quotes(body), "Still broken.");
        let body = "Still broken.\n\nOn Mon, Nov 23, 2026 at 9:02 AM Support Team <support@vendor.example>\nwrote:\n> earlier text\n";
        assert_eq!(strip_quotes(body), "Still broken.");
    }

    #[test]
    fn gmail_localized_headers() {
        let de = "Danke!\n\nAm Mo., 23. Nov. 2026 um 09:02 Uhr schrieb Support <support@vendor.example>:\n> Hallo";
        assert_eq!(strip_quotes(de), "Danke!");
        let fr = "Merci.\n\nLe lun. 23 nov. 2026 à 09:02, Support <support@vendor.example> a écrit :\n> Bonjour";
        assert_eq!(strip_quotes(fr), "Merci.");
        let es = "Gracias.\n\nEl lun, 23 nov 2026 a las 9:02, Support (<support@vendor.example>) escribió:\n> Hola";
        assert_eq!(strip_quotes(es), "Gracias.");
    }

    #[test]
    fn outlook_desktop_original_message() {
        let body = "It happened again tonight.\n\nEmeka Okafor, MD\n\n-----Original Message-----\nFrom: Support <support@vendor.example>\nSent: Monday, November 16, 2026 9:12 AM\nTo: Emeka Okafor <e@x.example>\nSubject: RE: [#20418] wrong doctor\n\nHello Dr. Okafor,\n";
        assert_eq!(
            strip_quotes(body),
            "It happened again tonight.\n\nEmeka Okafor, MD"
        );
    }

    #[test]
    fn outlook_desktop_header_block_with_separator() {
        let body = "Yes, please go ahead.\r\n\r\nMaria\r\n\r\n________________________________\r\nFrom: Support <support@vendor.example>\r\nSent: Tuesday, November 17, 2026 10:00 AM\r\nTo: Maria <m@x.example>\r\nSubject: RE: account\r\n\r\nShall we reset it?\r\n";
        assert_eq!(strip_quotes(body), "Yes, please go ahead.\n\nMaria");
    }

    #[test]
    fn outlook_web_bold_headers() {
        let body = "Confirmed, thanks.\n\nGet Outlook for iOS\n________________________________\n*From:* Support <support@vendor.example>\n*Sent:* Tuesday, November 17, 2026 10:00 AM\n*To:* Lee\n*Subject:* RE: x\n\nold text";
        assert_eq!(strip_quotes(body), "Confirmed, thanks.");
    }

    #[test]
    fn outlook_header_block_without_separator() {
        let body = "See below.\n\nFrom: Jane Roe <jane@x.example>\nDate: Tuesday, November 17, 2026 at 10:00 AM\nTo: Support <support@vendor.example>\nSubject: pages\n\nold";
        assert_eq!(strip_quotes(body), "See below.");
    }

    #[test]
    fn from_line_in_content_is_kept() {
        let body = "From: the night charge nurse on 4 West\nNone of the pages arrive.\n\nSent: nothing since 2am";
        assert_eq!(strip_quotes(body), body);
        let body = "From: 7pm onwards nobody can log in.\nPlease help.";
        assert_eq!(strip_quotes(body), body);
    }

    #[test]
    fn apple_mail_reply() {
        let body = "Works now, thank you!\n\nSent from my iPhone\n\n> On Nov 23, 2026, at 9:02 AM, Support <support@vendor.example> wrote:\n>\n> Please try again.\n";
        assert_eq!(strip_quotes(body), "Works now, thank you!");
        let body = "Works now.\n\nOn Nov 23, 2026, at 9:02 AM, Support <support@vendor.example> wrote:\n\n> Please try again.\n";
        assert_eq!(strip_quotes(body), "Works now.");
    }

    #[test]
    fn apple_mail_forward_is_kept() {
        let body = "See the note from our lawyer below.\n\nBegin forwarded message:\n\n> From: Stephen Lau <slau@law.example>\n> Subject: records\n> Date: November 19, 2026 at 2:48:00 PM EST\n> To: Colleen <c@x.example>\n>\n> We will need the audit trail.\n";
        let out = strip_quotes(body);
        assert!(out.starts_with("See the note from our lawyer below."));
        assert!(out.contains("Begin forwarded message:"));
        assert!(out.contains("We will need the audit trail."));
        assert!(out.contains("From: Stephen Lau"));
    }

    #[test]
    fn gmail_forward_is_kept() {
        let body = "Can you update the address?\n\n---------- Forwarded message ---------\nFrom: Office <info@x.example>\nDate: Fri, Nov 27, 2026 at 4:02 PM\nSubject: new office address\nTo: All Staff <staff@x.example>\n\nEffective December 1, our office is moving.\n";
        let out = strip_quotes(body);
        assert!(out.contains("Effective December 1, our office is moving."));
        assert!(out.contains("Can you update the address?"));
    }

    #[test]
    fn thunderbird_reply() {
        let body = "That fixed it.\n\nOn 11/23/26 9:02 AM, Support wrote:\n> Try now.\n";
        assert_eq!(strip_quotes(body), "That fixed it.");
        let body = "That fixed it.\n\nSupport Team wrote:\n> Try now.\n";
        assert_eq!(strip_quotes(body), "That fixed it.");
    }

    #[test]
    fn name_wrote_without_quotes_is_content() {
        let body = "The nurse wrote:\nPatient in 612 needs a callback.";
        assert_eq!(strip_quotes(body), body);
    }

    #[test]
    fn on_sentence_without_wrote_is_content() {
        let body = "On Monday at 5:10 the pages stopped.\nNobody wrote back.";
        assert_eq!(strip_quotes(body), body);
    }

    #[test]
    fn interleaved_quotes_keep_new_text() {
        let body = "> Is it all phones?\nYes, all 14 on the unit.\n> Since when?\nSince 5:10.\n";
        assert_eq!(strip_quotes(body), "Yes, all 14 on the unit.\nSince 5:10.");
    }

    #[test]
    fn signature_delimiter() {
        let body = "Please reset my PIN.\n\n-- \nMarisol Benitez\nGranite Behavioral Health\n";
        assert_eq!(strip_quotes(body), "Please reset my PIN.");
        let body = "Please reset my PIN.\n--\nMarisol";
        assert_eq!(strip_signature(body), "Please reset my PIN.");
        // A longer dash line is not a signature delimiter.
        let body = "Item one\n---\nItem two";
        assert_eq!(strip_signature(body), body);
    }

    #[test]
    fn mobile_footers() {
        assert_eq!(
            strip_signature("can't log in\n\nSent from my iPhone"),
            "can't log in"
        );
        assert_eq!(
            strip_signature("can't log in\n\nGet Outlook for Android"),
            "can't log in"
        );
        assert_eq!(
            strip_signature("help\nSent from my Galaxy, an AT&T 5G smartphone"),
            "help"
        );
        // A sentence that merely starts alike is content.
        let body = "Sent from my desk phone to the ED, the page never arrived and the whole unit has been waiting on it for an hour.";
        assert_eq!(strip_signature(body), body);
    }

    #[test]
    fn empty_and_all_quoted() {
        assert_eq!(strip_quotes(""), "");
        assert_eq!(strip_quotes("> a\n> b\n"), "");
    }
}
