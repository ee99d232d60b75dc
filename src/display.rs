//! Attacker-controlled text made safe to show. Subjects, bodies, names and filenames come
//! from mail, and a terminal obeys the control sequences in what it prints (ESC `[`, OSC
//! `ESC ]` hyperlinks and title changes, a bare CR that overwrites a line), while bidi
//! overrides and invisible characters make text read differently from what it is
//! (`invoice`, U+202E, `fdp.exe` shows as `invoiceexe.pdf`). Pure: used by the CLI's text output, its
//! JSON output and the attachment-name sanitiser.

use std::fmt::Write as _;

/// Characters that change how the text around them is displayed without being visible:
/// bidi embeddings, overrides, isolates and marks; zero-width spaces and joiners' invisible
/// relatives (word joiner, invisible operators); the byte-order mark; soft hyphen; the
/// Mongolian vowel separator; interlinear annotation marks; Unicode tag characters; the line
/// and paragraph separators (line breaks to some viewers, not to others). ZWJ and ZWNJ
/// (U+200C, U+200D) are not here: emoji sequences and Persian and Indic words need them.
pub fn is_hidden_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// One line of untrusted text for a terminal: every control character (C0 including CR, LF,
/// TAB and ESC, DEL, C1) and every [`is_hidden_format`] character is written as a visible
/// escape (`\x1b`, `\u{202e}`), so the line can neither move the cursor, start an escape
/// sequence, nor reorder what follows it.
pub fn terminal_line(s: &str) -> String {
    escape(s, false)
}

/// A multi-line untrusted text (a message body) for a terminal: like [`terminal_line`], but
/// line feeds and tabs stay as they are, so the body reads as it was written.
pub fn terminal_text(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, multi_line: bool) -> String {
    if !s.chars().any(|c| needs_escape(c, multi_line)) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if needs_escape(c, multi_line) {
            push_escape(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

fn needs_escape(c: char, multi_line: bool) -> bool {
    if multi_line && (c == '\n' || c == '\t') {
        return false;
    }
    c.is_control() || is_hidden_format(c)
}

fn push_escape(out: &mut String, c: char) {
    let code = u32::from(c);
    // Writing to a String cannot fail.
    let _ = if code < 0x100 {
        write!(out, "\\x{code:02x}")
    } else {
        write!(out, "\\u{{{code:x}}}")
    };
}

/// Makes serialized JSON safe to print on a terminal. serde_json escapes U+0000–U+001F (ESC
/// included) but writes DEL, the C1 controls (U+0080–U+009F, which some terminals read as
/// CSI and OSC) and bidi overrides raw. Outside strings JSON holds none of these characters,
/// so each one found is inside a string, where `\uXXXX` means the same character: consumers
/// decode exactly the same value.
pub fn json_for_terminal(json: &str) -> String {
    if !json.chars().any(|c| c.is_control() || is_hidden_format(c)) {
        return json.to_string();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        // serde_json already escaped C0 inside strings; C0 left over is JSON's own
        // whitespace (pretty-printing's newlines and indentation).
        if (c.is_control() && u32::from(c) >= 0x7f) || is_hidden_format(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_lines_show_controls_as_escapes() {
        let hostile =
            "Pager \u{1b}]8;;http://evil.example\u{7}click\u{1b}]8;;\u{7} \u{1b}[2J\rdone";
        let shown = terminal_line(hostile);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(
            shown,
            "Pager \\x1b]8;;http://evil.example\\x07click\\x1b]8;;\\x07 \\x1b[2J\\x0ddone"
        );
        assert_eq!(terminal_line("two\nlines"), "two\\x0alines");
        assert_eq!(terminal_line("C1 \u{9b}31m"), "C1 \\x9b31m");
        assert_eq!(terminal_line("del \u{7f}"), "del \\x7f");
        assert_eq!(
            terminal_line("invoice\u{202e}fdp.exe"),
            "invoice\\u{202e}fdp.exe"
        );
        assert_eq!(terminal_line("Zoë Ångström"), "Zoë Ångström");
        // Joiners that real words and emoji need stay.
        assert_eq!(
            terminal_line("👩\u{200d}⚕️ می‌خواهم"),
            "👩\u{200d}⚕️ می‌خواهم"
        );
    }

    #[test]
    fn bodies_keep_line_breaks_and_tabs() {
        let body = "Hello,\n\tthe pager\u{1b}[31m is red\r\nBye";
        assert_eq!(
            terminal_text(body),
            "Hello,\n\tthe pager\\x1b[31m is red\\x0d\nBye"
        );
    }

    #[test]
    fn json_keeps_its_meaning_and_loses_raw_controls() {
        let value = serde_json::json!({
            "subject": "a\u{1b}[2Jb\u{9b}c\u{7f}d\u{202e}e\u{e0041}f",
            "name": "Zoë"
        });
        let json = serde_json::to_string_pretty(&value).expect("json");
        assert!(
            json.contains('\u{9b}'),
            "serde_json writes C1 raw: {json:?}"
        );
        let safe = json_for_terminal(&json);
        assert!(
            !safe
                .chars()
                .any(|c| (c.is_control() && c != '\n') || is_hidden_format(c)),
            "{safe:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&safe).expect("still JSON");
        assert_eq!(back, value);
    }
}
