//! The sender's own urgency signals: headers the caller reads from the parsed mail
//! ([`Signals`]), and what the engine sees in the text itself (capitals, `!!!`, a mail of
//! a few words). A [[feature]] with `signal = "..."` fires on one of them ([`Signal`]).

use super::fold::Folded;

/// What the mail's headers say about its urgency. The caller fills it from the parsed mail
/// (`supportd classify` and the pipeline read the raw header block with
/// [`Signals::observe_header`]); the default is "nothing said".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signals {
    /// `Importance: high` (Outlook), `Priority: urgent` (RFC 2156) or
    /// `X-MSMail-Priority: High`.
    pub importance_high: bool,
    /// `X-Priority: N`, 1 (highest) to 5, when present.
    pub x_priority: Option<u8>,
}

/// The headers [`Signals::observe_header`] reads (a test keeps the two in step).
const SIGNAL_HEADERS: [&str; 4] = ["importance", "x-msmail-priority", "priority", "x-priority"];

impl Signals {
    /// Records one header; names are case-insensitive, unrelated headers are ignored.
    pub fn observe_header(&mut self, name: &str, value: &str) {
        let value = value.trim();
        let first_word = value
            .split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or("");
        if name.eq_ignore_ascii_case("importance") || name.eq_ignore_ascii_case("x-msmail-priority")
        {
            self.importance_high |= first_word.eq_ignore_ascii_case("high");
        } else if name.eq_ignore_ascii_case("priority") {
            self.importance_high |= first_word.eq_ignore_ascii_case("urgent");
        } else if name.eq_ignore_ascii_case("x-priority") {
            if let Ok(n) = first_word.parse::<u8>() {
                if (1..=5).contains(&n) {
                    self.x_priority = Some(n);
                }
            }
        }
    }

    /// Reads the header section of a raw message (up to the first blank line), unfolding
    /// continuation lines. Never fails: unreadable lines are skipped. Only the four headers
    /// [`Signals::observe_header`] reads are copied; the others are skipped in place.
    pub fn from_raw_headers(raw: &[u8]) -> Signals {
        let mut s = Signals::default();
        // (name, value) of the header being read, when it is one of ours.
        let mut current: Option<(&str, String)> = None;
        for line in raw.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(&first) = line.first() else {
                break; // the blank line that ends the header section
            };
            if first == b' ' || first == b'\t' {
                if let Some((_, v)) = current.as_mut() {
                    v.push(' ');
                    v.push_str(String::from_utf8_lossy(line).trim());
                }
                continue;
            }
            if let Some((n, v)) = current.take() {
                s.observe_header(n, &v);
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = std::str::from_utf8(line.get(..colon).unwrap_or_default())
                .map(str::trim)
                .unwrap_or_default();
            if SIGNAL_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                let value = String::from_utf8_lossy(line.get(colon + 1..).unwrap_or_default());
                current = Some((name, value.into_owned()));
            }
        }
        if let Some((n, v)) = current {
            s.observe_header(n, &v);
        }
        s
    }
}

/// A signal a [[feature]] can fire on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Signal {
    /// [`Signals::importance_high`].
    ImportanceHigh,
    /// `X-Priority` 1 or 2.
    XPriorityHigh,
    /// The subject or the body is written in capitals (`[urgency] capitals_ratio` of at
    /// least 12 letters).
    Capitals,
    /// Two or more `!` in a row, in the subject or body.
    Exclamations,
    /// A body of at most 12 words: a terse mail from a phone, or a subject-only mail.
    Short,
}

/// What the engine measured in the text, for the text-based signals.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TextSignals {
    pub capitals: bool,
    pub exclamations: bool,
    pub short: bool,
}

impl TextSignals {
    pub(crate) fn measure(subject: &Folded, body: &Folded, raw: (&str, &str), ratio: f64) -> Self {
        let caps = |f: &Folded| f.letters >= 12 && f.upper as f64 >= ratio * f.letters as f64;
        TextSignals {
            capitals: caps(subject) || caps(body),
            exclamations: raw.0.contains("!!") || raw.1.contains("!!"),
            short: body.words().take(13).count() <= 12,
        }
    }
}

impl Signal {
    pub const NAMES: &'static str =
        "importance_high, x_priority_high, capitals, exclamations, short";

    pub fn parse(name: &str) -> Option<Signal> {
        Some(match name {
            "importance_high" => Signal::ImportanceHigh,
            "x_priority_high" => Signal::XPriorityHigh,
            "capitals" => Signal::Capitals,
            "exclamations" => Signal::Exclamations,
            "short" => Signal::Short,
            _ => return None,
        })
    }

    pub(crate) fn fires(self, headers: &Signals, text: &TextSignals) -> bool {
        match self {
            Signal::ImportanceHigh => headers.importance_high,
            Signal::XPriorityHigh => headers.x_priority.is_some_and(|p| p <= 2),
            Signal::Capitals => text.capitals,
            Signal::Exclamations => text.exclamations,
            Signal::Short => text.short,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triage::fold::fold;

    #[test]
    fn headers() {
        let raw = b"From: a@b.example\r\nImportance: High\r\nX-Priority: 1 (Highest)\r\nSubject: x\r\n\r\nImportance: low\r\n";
        let s = Signals::from_raw_headers(raw);
        assert!(s.importance_high);
        assert_eq!(s.x_priority, Some(1));
        let s = Signals::from_raw_headers(b"X-Priority:\r\n 3\nSubject: y\n\nbody");
        assert!(!s.importance_high);
        assert_eq!(s.x_priority, Some(3));
        let mut s = Signals::default();
        s.observe_header("PRIORITY", "urgent");
        s.observe_header("x-priority", "9");
        assert!(s.importance_high);
        assert_eq!(s.x_priority, None);
        assert_eq!(Signals::from_raw_headers(b""), Signals::default());
        // Every header the byte scan keeps is one observe_header reads.
        for name in SIGNAL_HEADERS {
            let mut s = Signals::default();
            for value in ["high", "urgent", "1"] {
                s.observe_header(name, value);
            }
            assert_ne!(s, Signals::default(), "{name}");
        }
        // The header section ends at the first blank line, whatever the line ends after it.
        let s = Signals::from_raw_headers(b"Subject: y\n\nImportance: high\r\n\r\n");
        assert_eq!(s, Signals::default());
        // A folded value, an unreadable byte and a line without a colon are read or skipped.
        let s = Signals::from_raw_headers(
            b"X-Bad: \xff\xfe\r\nno colon here\r\nimportance:\r\n\tHIGH\r\n\r\n",
        );
        assert!(s.importance_high);
    }

    #[test]
    fn text_signals() {
        let (s, b) = (
            "NOTHING SENDING FROM ED!!!!",
            "WE CANNOT REACH THE SURGEON ON CALL",
        );
        let t = TextSignals::measure(&fold(s, false), &fold(b, false), (s, b), 0.6);
        assert!(t.capitals && t.exclamations && t.short);
        let (s, b) = (
            "URGENT",
            "Please update my e-mail address when you have a moment, thanks a lot for the help.",
        );
        let t = TextSignals::measure(&fold(s, false), &fold(b, false), (s, b), 0.6);
        assert!(!t.capitals && !t.exclamations && !t.short);
        assert!(Signal::parse("capitals").is_some() && Signal::parse("caps").is_none());
        let h = Signals {
            importance_high: false,
            x_priority: Some(2),
        };
        assert!(Signal::XPriorityHigh.fires(&h, &t));
    }
}
