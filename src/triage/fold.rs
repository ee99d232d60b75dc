//! Folding: the one normal form that both the rules' phrases and the mail's text are
//! matched in, so a rule written once matches every spelling of it.
//!
//! * case and accents are folded (`Infirmière` → `infirmiere`, `NIÑO` → `nino`);
//! * every run of characters that are not letters or digits is one space, so `on-call`,
//!   `on call` and `on  call` are the same two words;
//! * English contractions lose their apostrophe (`can't` → `cant`, `don’t` → `dont`),
//!   any other apostrophe separates words (`l'application` → `l application`);
//! * numbers keep only their size: a one-digit number is `0`, two digits `00`, three
//!   `000`, longer `0000` (`since 7:00` → `since 0 00`, `22 nurses` → `00 nurses`);
//! * a sentence end (`.`, `!`, `?`, `;` before a space) or a blank line is ` | `, which no
//!   phrase and no proximity window crosses.
//!
//! The folded text starts and ends with a space and has exactly one space between words, so
//! a phrase is found as the literal ` word word ` and word boundaries come for free.

use unicode_normalization::char::{decompose_canonical, is_combining_mark};

/// The separator a sentence end folds to.
pub const BREAK: u8 = b'|';

/// A folded text, plus what folding noticed on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folded {
    /// ` word word | word `: see the module documentation.
    pub text: String,
    /// Letters seen, and how many of them were upper-case (for "written in capitals").
    pub letters: usize,
    pub upper: usize,
    /// `!` characters seen.
    pub exclamations: usize,
    /// `?` characters seen.
    pub questions: usize,
}

impl Folded {
    /// Whole words: the text between spaces, breaks excluded.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.text
            .split(' ')
            .filter(|w| !w.is_empty() && w.as_bytes() != [BREAK])
    }
}

/// Folds `text`; `keep_case` keeps upper-case letters (for the few case-sensitive phrases,
/// such as `=ED` for an emergency department).
pub fn fold(text: &str, keep_case: bool) -> Folded {
    let mut out = Folded {
        text: String::with_capacity(text.len() + 2),
        ..Folded::default()
    };
    out.text.push(' ');
    let mut digits = 0usize;
    // Pending separator: 0 none, 1 space, 2 break.
    let mut sep = 0u8;
    let mut newlines = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            if digits == 0 {
                // A number is a word of its own: `v1` → `v 0`.
                sep = sep.max(1);
                flush_sep(&mut out.text, &mut sep);
            }
            digits += 1;
            newlines = 0;
            continue;
        }
        if digits > 0 {
            push_number(&mut out.text, digits);
            digits = 0;
            // A letter right after a number is a new word: `9pm` → `0 pm`.
            sep = sep.max(1);
        }
        if c.is_ascii_alphabetic() {
            flush_sep(&mut out.text, &mut sep);
            out.letters += 1;
            if c.is_ascii_uppercase() {
                out.upper += 1;
                out.text
                    .push(if keep_case { c } else { c.to_ascii_lowercase() });
            } else {
                out.text.push(c);
            }
            newlines = 0;
            continue;
        }
        match c {
            '\'' | '\u{2019}' | '\u{2018}' | '\u{02BC}' | '`' | '\u{00B4}' => {
                // `n't` joins: can't → cant; any other apostrophe splits words.
                let after_n = out.text.ends_with(['n', 'N']);
                let t_next = matches!(chars.peek(), Some('t' | 'T'));
                if after_n && t_next && sep == 0 {
                    let mut look = chars.clone();
                    look.next();
                    if look.next().is_none_or(|n| !n.is_alphanumeric()) {
                        continue;
                    }
                }
                sep = sep.max(1);
            }
            '.' | '!' | '?' | ';' => {
                if c == '!' {
                    out.exclamations += 1;
                } else if c == '?' {
                    out.questions += 1;
                }
                let ends = chars.peek().is_none_or(|n| n.is_whitespace());
                sep = if ends { 2 } else { sep.max(1) };
                newlines = 0;
            }
            '\n' => {
                newlines += 1;
                sep = if newlines >= 2 { 2 } else { sep.max(1) };
            }
            c if c.is_whitespace() => sep = sep.max(1),
            c if c.is_ascii() => {
                sep = sep.max(1);
                newlines = 0;
            }
            c => {
                newlines = 0;
                fold_other(c, keep_case, &mut out, &mut sep);
            }
        }
    }
    if digits > 0 {
        push_number(&mut out.text, digits);
    }
    if !out.text.ends_with(' ') {
        out.text.push(' ');
    }
    out
}

fn flush_sep(text: &mut String, sep: &mut u8) {
    match *sep {
        0 => {}
        1 => {
            if !text.ends_with(' ') {
                text.push(' ');
            }
        }
        _ => {
            // Never two breaks in a row, never a break first.
            if text.len() > 1 && !text.ends_with("| ") {
                if !text.ends_with(' ') {
                    text.push(' ');
                }
                text.push('|');
                text.push(' ');
            } else if !text.ends_with(' ') {
                text.push(' ');
            }
        }
    }
    *sep = 0;
}

fn push_number(text: &mut String, digits: usize) {
    text.push_str(match digits {
        1 => "0",
        2 => "00",
        3 => "000",
        _ => "0000",
    });
}

/// Non-ASCII characters: letters lose their accents (canonical decomposition without the
/// combining marks), a few ligatures are spelled out, typographic punctuation separates.
fn fold_other(c: char, keep_case: bool, out: &mut Folded, sep: &mut u8) {
    let spelled: Option<&str> = match c {
        'œ' => Some("oe"),
        'Œ' => Some(if keep_case { "OE" } else { "oe" }),
        'æ' => Some("ae"),
        'Æ' => Some(if keep_case { "AE" } else { "ae" }),
        'ß' => Some("ss"),
        'ø' => Some("o"),
        'Ø' => Some(if keep_case { "O" } else { "o" }),
        'ł' => Some("l"),
        'Ł' => Some(if keep_case { "L" } else { "l" }),
        _ => None,
    };
    if let Some(s) = spelled {
        flush_sep(&mut out.text, sep);
        out.letters += 1;
        out.upper += usize::from(c.is_uppercase());
        out.text.push_str(s);
        return;
    }
    if !c.is_alphanumeric() {
        if c == '¡' {
            out.exclamations += 1;
        } else if c == '¿' {
            out.questions += 1;
        }
        *sep = (*sep).max(1);
        return;
    }
    flush_sep(&mut out.text, sep);
    out.letters += 1;
    let upper = c.is_uppercase();
    out.upper += usize::from(upper);
    let mut push = |d: char| {
        if is_combining_mark(d) {
            return;
        }
        if keep_case {
            out.text.push(d);
        } else {
            out.text.extend(d.to_lowercase());
        }
    };
    decompose_canonical(c, &mut push);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> String {
        fold(s, false).text
    }

    #[test]
    fn case_accents_and_punctuation() {
        assert_eq!(f("Infirmière — NIÑO"), " infirmiere nino ");
        assert_eq!(f("on-call  On Call\ton\ncall"), " on call on call on call ");
        assert_eq!(f("Œuvre, straße"), " oeuvre strasse ");
        assert_eq!(f("med/surg"), " med surg ");
    }

    #[test]
    fn contractions_join_other_apostrophes_split() {
        assert_eq!(f("I can't, they DON’T"), " i cant they dont ");
        assert_eq!(f("l'application n'arrive"), " l application n arrive ");
        assert_eq!(f("it's Dana's"), " it s dana s ");
        assert_eq!(f("can'tonight"), " can tonight ");
    }

    #[test]
    fn numbers_keep_their_size() {
        assert_eq!(f("since 7:00, 22 nurses"), " since 0 00 00 nurses ");
        assert_eq!(
            f("at 9pm ~0200 call 555-0100"),
            " at 0 pm 0000 call 000 0000 "
        );
        assert_eq!(f("W-9 3rd"), " w 0 0 rd ");
    }

    #[test]
    fn sentence_ends_and_blank_lines_break() {
        assert_eq!(f("Down. Nobody can log in!"), " down | nobody can log in ");
        assert_eq!(f("a\nb\n\nc"), " a b | c ");
        assert_eq!(f("v1.2 e.g."), " v 0 0 e g ");
        assert_eq!(f("Hello.\n\nThanks"), " hello | thanks ");
        assert_eq!(f(""), " ");
        assert_eq!(f("?!"), " ");
    }

    #[test]
    fn counts_capitals_and_marks() {
        let x = fold("NOTHING WORKS!!! ¿Qué?", false);
        assert_eq!(x.letters, 15);
        assert_eq!(x.upper, 13);
        assert_eq!(x.exclamations, 3);
        assert_eq!(x.questions, 2);
        assert_eq!(fold("The ED is DOWN", true).text, " The ED is DOWN ");
    }

    #[test]
    fn words_skip_breaks() {
        let x = fold("a b. c", false);
        assert_eq!(x.words().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    }
}
