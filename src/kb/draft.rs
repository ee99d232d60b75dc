//! `#kb Title`: an agent's public answer becomes a draft article in `kb/drafts/`, with the
//! people taken out of it. Pure: the text, the ticket's names and keys in, Markdown out. The
//! draft is never published by itself: an admin reads it and moves it into `kb/`.
//!
//! Removed: the ticket's access and agent keys (and any 20-character key-like token), links
//! carrying them, email addresses, phone numbers, other runs of 5 or more digits (record and
//! account numbers), postal-address lines, the names of the ticket's people (requester,
//! collaborators, agents) wherever they appear, and the greeting and sign-off lines that
//! name someone. Names nobody told us (a patient's, written in free text) cannot be known:
//! that is why a person reviews every draft.

use std::sync::OnceLock;

use regex::Regex;

/// What the answer is drafted from, and whom it must not name.
#[derive(Debug, Clone)]
pub struct DraftInput<'a> {
    pub title: &'a str,
    pub category: &'a str,
    pub ticket_number: i64,
    /// The answer's text, as relayed to the customer.
    pub answer: &'a str,
    /// The names and addresses of the ticket's people.
    pub names: &'a [String],
    /// The ticket's secrets: access key, agent key.
    pub keys: &'a [String],
    /// `YYYY-MM-DD`, and the agent who asked, for the draft's header comment.
    pub date: &'a str,
    pub agent: &'a str,
}

/// How a match of one pattern is replaced.
#[derive(Clone, Copy)]
enum Kind {
    /// Always, by this text.
    Always(&'static str),
    /// Only when the match holds at least this many digits (a phone number, not a date).
    Digits(usize, &'static str),
}

fn regexes() -> &'static [(Regex, Kind)] {
    static R: OnceLock<Vec<(Regex, Kind)>> = OnceLock::new();
    R.get_or_init(|| {
        let table = [
            // Links to a ticket or sign-in page carry secrets.
            (
                r"https?://\S*/(t|signin)/[^\s\[]+",
                Kind::Always("[link removed]"),
            ),
            (
                r"(?i)\b[a-z0-9._%+\-]+@[a-z0-9.\-]+\.[a-z]{2,}\b",
                Kind::Always("[email removed]"),
            ),
            // Key-like tokens: 20 base32 characters with at least two digits.
            (r"(?i)\b[a-z2-7]{20}\b", Kind::Digits(2, "[key removed]")),
            (
                r"(?:\+\d{1,3}[\s.\-]?)?(?:\(\d{1,4}\)[\s.\-]?)?\d{2,4}(?:[\s.\-]\d{2,4}){1,4}\b",
                Kind::Digits(7, "[phone removed]"),
            ),
            (r"\b\d{5,}\b", Kind::Always("[number removed]")),
        ];
        table
            .into_iter()
            .filter_map(|(p, kind)| Regex::new(p).ok().map(|r| (r, kind)))
            .collect()
    })
}

/// `pattern`, compiled once into `cell` (None if it does not compile: the pass it serves
/// is then skipped).
fn compiled(cell: &'static OnceLock<Option<Regex>>, pattern: &str) -> Option<&'static Regex> {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

fn postal_line() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    compiled(
        &R,
        r"(?i)^\s*\d{1,5}[a-z]?,?\s+(?:[\w'.\-]+\s+){0,4}(street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|way|court|ct|place|pl|suite|rue|avenue|chemin|calle|avenida|plaza)\b.*$",
    )
}

fn titled_name() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    compiled(
        &R,
        r"\b(?P<t>Dr\.?|Doctor|Nurse|Mr\.?|Mrs\.?|Ms\.?|Mme|Mlle|M\.|Dra?\.?|Sr\.?|Sra\.?|Prof\.?)\s+\p{Lu}[\p{L}'\-]+(?:\s+\p{Lu}[\p{L}'\-]+)?",
    )
}

fn greeting_or_signoff() -> Option<&'static Regex> {
    static R: OnceLock<Option<Regex>> = OnceLock::new();
    compiled(
        &R,
        r"(?i)^\s*(hi|hello|hey|dear|good (morning|afternoon|evening)|bonjour|hola|estimad[oa]|cher|chère|best|regards|kind regards|best regards|thanks|thank you|cheers|sincerely|cordialement|saludos|atentamente)\b[^.!?]{0,40}[,!]?\s*$",
    )
}

/// `text` without the people and secrets listed in the module's comment.
pub fn redact(text: &str, names: &[String], keys: &[String]) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        if greeting_or_signoff().is_some_and(|r| r.is_match(line)) {
            continue;
        }
        if postal_line().is_some_and(|r| r.is_match(line)) {
            lines.push("[address removed]".into());
            continue;
        }
        lines.push(line.to_string());
    }
    let mut out = lines.join("\n");
    // People named only by their address in the text: the parts of its local part are
    // names too (ellen.fitch@ → Ellen, Fitch).
    let mut names: Vec<String> = names.to_vec();
    if let Some((re, _)) = regexes().get(1) {
        names.extend(re.find_iter(&out).map(|m| m.as_str().to_string()));
    }
    for (re, kind) in regexes() {
        out = re
            .replace_all(&out, |c: &regex::Captures<'_>| {
                let m = c.get(0).map_or("", |m| m.as_str());
                match *kind {
                    Kind::Always(with) => with.to_string(),
                    Kind::Digits(n, with) => {
                        if m.bytes().filter(u8::is_ascii_digit).count() >= n {
                            with.to_string()
                        } else {
                            m.to_string()
                        }
                    }
                }
            })
            .into_owned();
    }
    for key in keys.iter().filter(|k| !k.is_empty()) {
        out = out.replace(key.as_str(), "[key removed]");
    }
    // Names: whole words, case-insensitive; each part of a full name on its own too, and of
    // an address only its local part (its domain names no one).
    let mut parts: Vec<&str> = Vec::new();
    for n in &names {
        let person = match n.split_once('@') {
            Some((local, _)) => local,
            None => n.as_str(),
        };
        for p in
            person.split(|c: char| c.is_whitespace() || matches!(c, '.' | ',' | '_' | '-' | '+'))
        {
            if p.chars().count() >= 3 && !parts.contains(&p) {
                parts.push(p);
            }
        }
    }
    for p in parts {
        if let Ok(re) = Regex::new(&format!(r"(?i)\b{}\b", regex::escape(p))) {
            out = re.replace_all(&out, "[name removed]").into_owned();
        }
    }
    // A title before a capitalised word names someone: Dr. Fitch, Nurse Kelly.
    if let Some(re) = titled_name() {
        out = re.replace_all(&out, "$t [name removed]").into_owned();
    }
    let kept: Vec<&str> = out
        .lines()
        .filter(|l| l.trim() != "[name removed]")
        .collect();
    kept.join("\n").trim().to_string()
}

/// The draft's file name stem: the title in lower-case ASCII words joined by `-`, with the
/// ticket number (one draft per ticket and title).
pub fn slug(title: &str, ticket_number: i64) -> String {
    let mut s = String::new();
    for c in title.chars() {
        let c = match c {
            'à' | 'â' | 'á' | 'ä' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'î' | 'ï' | 'í' => 'i',
            'ô' | 'ó' | 'ö' => 'o',
            'ù' | 'û' | 'ú' | 'ü' => 'u',
            'ç' => 'c',
            'ñ' => 'n',
            c => c.to_ascii_lowercase(),
        };
        if c.is_ascii_alphanumeric() {
            s.push(c);
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
        if s.len() >= 60 {
            break;
        }
    }
    let s = s.trim_end_matches('-');
    let s = if s.is_empty() { "article" } else { s };
    format!("{s}-{ticket_number}")
}

/// The draft article: front matter an admin completes, then the redacted answer.
pub fn markdown(d: &DraftInput<'_>) -> String {
    let toml_str = |s: &str| {
        let mut q = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => q.push_str("\\\""),
                '\\' => q.push_str("\\\\"),
                c if c.is_control() => {}
                c => q.push(c),
            }
        }
        q.push('"');
        q
    };
    let keywords: Vec<String> = super::suggest::terms(d.title, "")
        .iter()
        .map(|k| toml_str(k))
        .collect();
    let body = redact(d.answer, d.names, d.keys);
    format!(
        "+++\n# DRAFT from ticket #{number}, asked for by {agent} on {date}.\n\
         # Names, addresses, phone numbers and keys were removed automatically; check for\n\
         # anything else that identifies a person (a patient's name, a record number) before\n\
         # moving this file into kb/ to publish it.\n\
         title = {title}\ncategory = {category}\nkeywords = [{keywords}]\n+++\n{body}\n",
        number = d.ticket_number,
        agent = d.agent.replace('\n', " "),
        date = d.date,
        title = toml_str(d.title),
        category = toml_str(d.category),
        keywords = keywords.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_and_secrets_are_removed() {
        let answer = "Hi Ann,\n\nI reactivated the account of Dr. Ann Smith (ann.smith@clinic.example).\n\
                      Your key abcdefgh23klmnopqr45 works at https://help.example/t/abcdefgh23klmnopqr45 too.\n\
                      Call us at +1 555 010 0199 or (555) 010-0100, MRN 88812345.\n\
                      12 Harbour Street, Springfield\n\
                      To reactivate a user, open Admin > Users and press Reactivate.\n\nBest regards,\nBob";
        let names = vec![
            "Ann Smith".to_string(),
            "ann.smith@clinic.example".into(),
            "Bob Agent".into(),
        ];
        let keys = vec!["abcdefgh23klmnopqr45".to_string()];
        let r = redact(answer, &names, &keys);
        for gone in [
            "Ann",
            "Smith",
            "ann.smith",
            "abcdefgh23",
            "555",
            "88812345",
            "Harbour",
            "Bob",
            "Hi ",
        ] {
            assert!(!r.contains(gone), "{gone} still in:\n{r}");
        }
        assert!(
            r.contains("open Admin > Users and press Reactivate."),
            "{r}"
        );
        assert!(
            r.contains("[email removed]") && r.contains("[phone removed]"),
            "{r}"
        );
        assert!(r.contains("[address removed]"), "{r}");
    }

    #[test]
    fn draft_parses_as_an_article_once_moved() {
        let names = vec!["Ann".to_string()];
        let md = markdown(&DraftInput {
            title: "How to \"reactivate\" a user",
            category: "user-access",
            ticket_number: 1042,
            answer: "Hello Ann,\nOpen Admin > Users.",
            names: &names,
            keys: &[],
            date: "2026-12-03",
            agent: "bob@vendor.example",
        });
        let s = slug("How to \"reactivate\" a user — vite!", 1042);
        assert_eq!(s, "how-to-reactivate-a-user-vite-1042");
        let a = crate::kb::article::parse("kb/x.md", &s, &md).unwrap();
        assert_eq!(a.title, "How to \"reactivate\" a user");
        assert_eq!(a.keywords, vec!["reactivate", "user"]);
        assert_eq!(a.text, "Open Admin > Users.");
    }
}
