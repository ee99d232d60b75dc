//! Which articles a new ticket's acknowledgement suggests. Pure: the mail's words become a
//! full-text query ([`mail_terms`]); the store ranks the articles (FTS5's bm25 on SQLite,
//! a bm25-like sum of `ts_rank_cd` on PostgreSQL); [`select`]
//! keeps those whose score passes the threshold, at most a few. A wrong suggestion is worse
//! than none, so the threshold is set for precision (see README, Help Center).

use serde::Serialize;

/// Besides [`crate::mail::words::FUNCTION_WORDS`]: words that say nothing about which
/// article fits, and the support-mail words every article would match.
#[rustfmt::skip]
const STOPWORDS: &[&str] = &[
    "want", "wants", "make", "made", "question", "tomorrow", "week", "day", "days", "thing",
    "things", "hey", "there's", "it's", "i'm", "don't", "won't", "we're", "let's", "sure",
    "message", "wrote", "writing", "write", "ask", "asking", "tried", "try", "trying",
    "appreciate", "quick", "quickly", "par", "ils", "elle", "son", "ses", "comme", "tout",
    "tous", "aux", "été", "être", "avoir", "fait", "vos", "nos", "leur", "leurs", "quand",
    "comment", "aussi", "très", "bien", "peut", "pouvez", "faire", "mon", "mes", "moi", "elles",
    "uno", "más", "sus", "este", "estos", "estas", "ustedes", "usted", "cuando", "también",
    "muy", "puede", "pueden", "hacer", "tiene", "tienen", "hay", "ser", "están", "fue", "son",
    "mis",
];

/// The most words of one mail that go into the query (subject first).
pub const MAX_TERMS: usize = 40;

/// The distinct content words of the subject, then the text, lower-cased, at most
/// [`MAX_TERMS`].
pub fn terms(subject: &str, text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for source in [subject, text] {
        for word in source.split(|c: char| !(c.is_alphanumeric() || c == '\'')) {
            let word = word.trim_matches('\'').to_lowercase();
            if word.chars().count() < 3
                || word.chars().all(|c| c.is_ascii_digit())
                || crate::mail::words::is_common(word.as_str(), STOPWORDS)
                || out.contains(&word)
            {
                continue;
            }
            out.push(word);
            if out.len() == MAX_TERMS {
                return out;
            }
        }
    }
    out
}

/// An FTS5 MATCH expression: any of the terms, each quoted (FTS5 applies the table's own
/// tokenizer, Porter stemming included, to a quoted string). None when no term is left.
pub fn fts_query(terms: &[String]) -> Option<String> {
    let quoted: Vec<String> = terms
        .iter()
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect();
    (!quoted.is_empty()).then(|| quoted.join(" OR "))
}

/// The words a mail's suggestions rank on: its content words, those of the subject twice.
/// The ranking adds up every word of the query, so a subject word (the customer's own
/// summary) counts double.
pub fn mail_terms(subject: &str, text: &str) -> Vec<String> {
    let mut all = terms(subject, text);
    all.extend(terms(subject, ""));
    all
}

/// A term as PostgreSQL gets it: nothing but its letters, digits and apostrophes (what
/// [`terms`] keeps), so it is one word to the parser and never an operator.
fn pg_word(t: &str) -> String {
    t.chars()
        .filter(|c| c.is_alphanumeric() || *c == '\'')
        .collect()
}

/// The terms, space-separated, for PostgreSQL's per-word ranking (each one goes through
/// `plainto_tsquery`, which takes no operators). None when no term is left.
pub fn pg_terms(terms: &[String]) -> Option<String> {
    let words: Vec<String> = terms
        .iter()
        .map(|t| pg_word(t))
        .filter(|w| !w.is_empty())
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// A `websearch_to_tsquery` text: any of the terms, each quoted (PostgreSQL applies the
/// configuration's stemmer to it; `websearch_to_tsquery` never fails on its input). None
/// when no term is left.
pub fn websearch_query(terms: &[String]) -> Option<String> {
    let quoted: Vec<String> = terms
        .iter()
        .map(|t| pg_word(t))
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{w}\""))
        .collect();
    (!quoted.is_empty()).then(|| quoted.join(" or "))
}

/// An article the index ranked for a mail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub slug: String,
    pub title: String,
    /// The ranking score: −bm25 with the column weights, higher is better.
    pub score: f64,
    /// The article's `languages` (empty = any).
    pub languages: Vec<String>,
    /// The words of its title and keywords that the mail matched, distinct.
    pub matched: Vec<String>,
}

impl Candidate {
    /// How many different words of the article the mail matched: forms of one word
    /// (`reactivate`, `reactivation`) count once (their first five letters).
    pub fn distinct_words(&self) -> usize {
        let mut heads: Vec<String> = self
            .matched
            .iter()
            .map(|w| w.chars().take(5).collect())
            .collect();
        heads.sort();
        heads.dedup();
        heads.len()
    }
}

/// An article a mail is told about.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Suggestion {
    pub slug: String,
    pub title: String,
    /// `{public_url}/help/{slug}`.
    pub link: String,
    pub score: f64,
}

/// How suggestions are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// The score a candidate must reach.
    pub threshold: f64,
    /// The different words of its title and keywords a mail must match: one word, even
    /// repeated ("request" in "Feature request"), is no evidence of the topic.
    pub min_words: usize,
    /// The most suggestions one mail gets.
    pub max: usize,
}

/// The candidates that pass (best first, at most `max`), and those that do not (the rest,
/// best first, for `suggest --all`). An article limited to other languages never passes, nor
/// one matched on fewer than `min_words` different words.
pub fn select(
    mut candidates: Vec<Candidate>,
    tuning: Tuning,
    language: &str,
) -> (Vec<Candidate>, Vec<Candidate>) {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut pass = Vec::new();
    let mut below = Vec::new();
    for c in candidates {
        let speaks = c.languages.is_empty() || c.languages.iter().any(|l| l == language);
        let enough = c.score >= tuning.threshold && c.distinct_words() >= tuning.min_words;
        if speaks && enough && pass.len() < tuning.max {
            pass.push(c);
        } else {
            below.push(c);
        }
    }
    (pass, below)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_drop_stopwords_numbers_and_repeats() {
        let t = terms(
            "Re: Please reactivate Dr. Jones",
            "Hello, Dr Jones was deactivated in 2024. Please reactivate her account!",
        );
        assert_eq!(t, vec!["reactivate", "jones", "deactivated", "account"]);
        assert_eq!(
            fts_query(&t).unwrap(),
            "\"reactivate\" OR \"jones\" OR \"deactivated\" OR \"account\""
        );
        assert_eq!(fts_query(&[]), None);
        let hostile = vec![
            "a\" OR -b".to_string(),
            "c&d|!e:*".to_string(),
            "ok".to_string(),
        ];
        assert_eq!(
            websearch_query(&hostile).unwrap(),
            "\"aORb\" or \"cde\" or \"ok\""
        );
        assert_eq!(pg_terms(&hostile).unwrap(), "aORb cde ok");
        assert_eq!(pg_terms(&["-".to_string()]), None);
        assert_eq!(
            mail_terms("Reactivate account", "please reactivate"),
            vec!["reactivate", "account", "reactivate", "account"]
        );
        let many = "word ".repeat(10) + &(0..100).map(|i| format!("w{i}x ")).collect::<String>();
        assert_eq!(terms("", &many).len(), MAX_TERMS);
    }

    #[test]
    fn select_keeps_passing_candidates_in_the_language() {
        let c = |slug: &str, score: f64, langs: &[&str]| Candidate {
            slug: slug.into(),
            title: slug.into(),
            score,
            languages: langs.iter().map(|l| l.to_string()).collect(),
            matched: vec!["reactivate".into(), "reactivation".into(), "account".into()],
        };
        let tuning = Tuning {
            threshold: 5.0,
            min_words: 2,
            max: 2,
        };
        assert_eq!(c("a", 1.0, &[]).distinct_words(), 2);
        let (pass, below) = select(
            vec![
                c("a", 6.0, &[]),
                c("b", 9.0, &["fr"]),
                c("c", 7.0, &["en"]),
                c("d", 5.5, &[]),
                c("e", 1.0, &[]),
            ],
            tuning,
            "en",
        );
        let slugs = |v: &[Candidate]| v.iter().map(|c| c.slug.clone()).collect::<Vec<_>>();
        assert_eq!(slugs(&pass), vec!["c", "a"]);
        assert_eq!(slugs(&below), vec!["b", "d", "e"]);
        let one_word = Candidate {
            matched: vec!["request".into()],
            ..c("f", 9.0, &[])
        };
        let (pass, _) = select(vec![one_word], tuning, "en");
        assert!(pass.is_empty());
    }
}
