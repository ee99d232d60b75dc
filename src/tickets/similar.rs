//! Text similarity, pure: the normalised text of a mail (near-duplicate merge) and how alike
//! two tickets' texts are (incident grouping).
//!
//! Two measures, the larger wins:
//! - **shingles**: the Jaccard index of the sets of 3-word shingles of both texts (all words,
//!   folded). High for the same text with edits, resent or forwarded;
//! - **shared rare terms**: the cosine of the two sets of rare terms, words outside a built-in
//!   list of common words (English, French and Spanish function words and the vocabulary
//!   every support mail shares: "please", "help", "issue", "today", ...), with a crude plural
//!   folding. High for two people describing the same outage in their own words ("pages stuck
//!   in queued" / "paging queue stuck, pages not sent"). At least [`MIN_SHARED_TERMS`] must be
//!   shared, so two one-line mails sharing one word never match.

use std::collections::HashSet;

use crate::mail::words::is_common;

/// Fewest rare terms two texts must share for the term measure to count.
pub const MIN_SHARED_TERMS: usize = 2;

/// Besides [`crate::mail::words::FUNCTION_WORDS`]: words every support mail has, never
/// evidence that two mails are about the same thing.
#[rustfmt::skip]
const COMMON: &[&str] = &[
    "two", "onto", "many", "under", "every", "either", "neither", "until", "upon", "via", "per",
    "nor", "isn", "aren", "wasn", "weren", "don", "doesn", "didn", "won", "cannot", "hasn",
    "haven", "nothing", "down", "through", "between", "without", "within", "across", "around",
    "against", "during", "whether", "though", "urgent", "urgently", "issues", "problems",
    "error", "errors", "working", "work", "works", "worked", "evening", "tonight", "minutes",
    "minute", "hour", "hours", "times", "look", "looking", "unable", "else", "seems", "seem",
    "thought", "happening", "happened", "started", "start", "right", "call", "called", "calling",
    "phone", "tickets", "update", "system", "users", "user", "staff", "site", "clinic",
    "hospital", "office", "getting", "going", "keep", "keeps", "sincerely", "currently",
    "really", "quite", "ago", "soon", "fix", "fixed", "broken", "down", "anybody", "noticed",
    "notice", "appears", "appear", "everybody", "report", "reporting", "reported", "immediately",
    "critical", "emergency", "affected", "affecting", "impact", "impacting", "patient",
    "patients", "care", "doctor", "doctors", "nurse", "nurses", "aide", "urgent", "probleme",
    "problème", "aujourd", "hui", "ayuda", "problema", "hoy",
];

/// The words of `text`: letters and digits, folded to lower case.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// The text as a comparison key: its words joined by one space, so a message rewrapped,
/// re-encoded or rendered from HTML by another client compares equal to the original.
pub fn normalised(text: &str) -> String {
    words(text).join(" ")
}

/// A subject without reply and forward prefixes (`Re:`, `Fwd:`, `AW:`, ...), normalised.
pub fn normalised_subject(subject: &str) -> String {
    let mut s = subject.trim();
    loop {
        let lower = s.to_ascii_lowercase();
        let Some(prefix) = ["re:", "fw:", "fwd:", "aw:", "tr:", "rv:", "sv:", "wg:"]
            .iter()
            .find(|p| lower.starts_with(*p))
        else {
            break;
        };
        s = s.get(prefix.len()..).unwrap_or("").trim_start();
    }
    normalised(s)
}

fn fold(word: &str) -> String {
    // Crude English plural folding: "pages" and "page", "faxes" and "fax", "pharmacies"
    // and "pharmacy" are one term each; "access" and "status" stay.
    if let Some(stem) = word.strip_suffix("ies").filter(|s| s.chars().count() >= 3) {
        return format!("{stem}y");
    }
    if let Some(stem) = word
        .strip_suffix("es")
        .filter(|s| s.ends_with('x') || s.ends_with("sh") || s.ends_with("ch"))
    {
        return stem.to_string();
    }
    match word.strip_suffix('s') {
        Some(stem) if stem.chars().count() >= 4 && !stem.ends_with('s') && !stem.ends_with('u') => {
            stem.to_string()
        }
        _ => word.to_string(),
    }
}

/// The rare terms of `text`: words of at least 3 letters, not all digits, not common.
pub fn rare_terms(text: &str) -> HashSet<String> {
    words(text)
        .into_iter()
        .filter(|w| w.chars().count() >= 3)
        .filter(|w| !w.chars().all(|c| c.is_ascii_digit()))
        .filter(|w| !is_common(w, COMMON))
        .map(|w| fold(&w))
        .filter(|w| !is_common(w, COMMON))
        .collect()
}

/// The 3-word shingles of `text` (a text of fewer words is one shingle).
pub fn shingles(text: &str) -> HashSet<String> {
    let w = words(text);
    if w.is_empty() {
        return HashSet::new();
    }
    if w.len() < 3 {
        return std::iter::once(w.join(" ")).collect();
    }
    w.windows(3).map(|s| s.join(" ")).collect()
}

/// What is compared of one ticket: computed once per text.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub shingles: HashSet<String>,
    pub terms: HashSet<String>,
}

impl Profile {
    pub fn of(text: &str) -> Profile {
        Profile {
            shingles: shingles(text),
            terms: rare_terms(text),
        }
    }
}

/// How alike two texts are, with both measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Jaccard index of the 3-word shingles, 0–1.
    pub shingles: f64,
    /// Cosine of the rare-term sets, 0–1 (0 with fewer than [`MIN_SHARED_TERMS`] shared).
    pub terms: f64,
    /// Rare terms both share.
    pub shared_terms: usize,
}

impl Score {
    /// The larger of the two measures.
    pub fn value(&self) -> f64 {
        self.shingles.max(self.terms)
    }
}

fn count(n: usize) -> f64 {
    // Set sizes are far below 2^52: exact as f64.
    u32::try_from(n).map(f64::from).unwrap_or(f64::MAX)
}

/// Compares two profiles.
pub fn score(a: &Profile, b: &Profile) -> Score {
    let inter = a.shingles.intersection(&b.shingles).count();
    let union = a.shingles.len() + b.shingles.len() - inter;
    let shingles = if union == 0 {
        0.0
    } else {
        count(inter) / count(union)
    };
    let shared_terms = a.terms.intersection(&b.terms).count();
    let terms = if shared_terms < MIN_SHARED_TERMS {
        0.0
    } else {
        count(shared_terms) / (count(a.terms.len()) * count(b.terms.len())).sqrt()
    };
    Score {
        shingles,
        terms,
        shared_terms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(a: &str, b: &str) -> Score {
        score(&Profile::of(a), &Profile::of(b))
    }

    #[test]
    fn normalising_ignores_wrapping_case_and_punctuation() {
        assert_eq!(
            normalised("Pages are STUCK,\r\n  in \"Queued\" -- since 9am!"),
            normalised("pages are stuck in queued since 9am")
        );
        assert_ne!(normalised("pages stuck"), normalised("pages not stuck"));
        assert_eq!(normalised_subject("Re: FWD: re:Pager down"), "pager down");
        assert_eq!(normalised_subject("Reboot needed"), "reboot needed");
    }

    #[test]
    fn the_same_text_scores_one_and_unrelated_texts_zero() {
        let a = "The paging console shows every page stuck in Queued since 08:10.";
        let s = sim(a, a);
        assert!((s.value() - 1.0).abs() < 1e-9, "{s:?}");
        let s = sim(
            a,
            "Please reset the password of our new billing clerk, she is locked out.",
        );
        assert_eq!(s.value(), 0.0, "{s:?}");
    }

    #[test]
    fn shared_rare_terms_match_the_same_outage_in_other_words() {
        let s = sim(
            "Console pages stuck in queued. Nothing reaches the pagers.",
            "Our pagers get nothing, every page sits queued on the console",
        );
        assert!(s.shared_terms >= 3 && s.terms > 0.5, "{s:?}");
        assert!(s.shingles < 0.2, "{s:?}");
    }

    #[test]
    fn common_words_alone_are_no_match() {
        let s = sim(
            "Urgent: please help, the system is not working today, patients affected",
            "URGENT help needed - nothing is working this morning, patient care affected",
        );
        assert_eq!(s.terms, 0.0, "{s:?}");
        assert!(s.value() < 0.3, "{s:?}");
    }

    #[test]
    fn one_shared_word_is_not_enough() {
        let s = sim("Printer jammed", "Printer driver install");
        assert_eq!(s.shared_terms, 1);
        assert_eq!(s.terms, 0.0);
    }

    #[test]
    fn plurals_fold() {
        assert!(rare_terms("pages pagers").contains("page"));
        assert!(rare_terms("pages pagers").contains("pager"));
        assert!(rare_terms("access").contains("access"), "no fold of -ss");
        assert!(rare_terms("faxes").contains("fax"));
        assert!(rare_terms("pharmacies").contains("pharmacy"));
        assert!(rare_terms("status").contains("status"));
    }
}
