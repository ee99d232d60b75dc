//! The customer's language, detected with `whatlang` among the languages the rules file
//! names (`[language] detect`), so the acknowledgement can answer in it.

use whatlang::{Detector, Lang};

/// Text detection looks at; a few sentences are plenty and keep it fast.
const SAMPLE_BYTES: usize = 200;
/// Below this whatlang confidence, or for fewer letters than this, the default language;
/// below `RELIABLE_LETTERS` only a detection whatlang itself calls reliable counts.
const MIN_CONFIDENCE: f64 = 0.05;
const MIN_LETTERS: usize = 8;
const RELIABLE_LETTERS: usize = 60;

/// ISO 639-1 codes the rules file may name, and whatlang's language for each.
const KNOWN: &[(&str, Lang)] = &[
    ("en", Lang::Eng),
    ("fr", Lang::Fra),
    ("es", Lang::Spa),
    ("de", Lang::Deu),
    ("it", Lang::Ita),
    ("pt", Lang::Por),
    ("nl", Lang::Nld),
];

/// The languages to tell apart, and the answer when the text says too little. Stored (the
/// built-rules cache) as the codes; the detector is made again when read back.
#[derive(Debug, serde::Deserialize)]
#[serde(try_from = "Stored")]
pub struct Languages {
    detector: Detector,
    codes: Vec<(&'static str, Lang)>,
    default: String,
}

/// [`Languages`] as stored: the codes to tell apart and the default.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    detect: Vec<String>,
    default: String,
}

impl serde::Serialize for Languages {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let stored = Stored {
            detect: self.codes.iter().map(|c| c.0.to_string()).collect(),
            default: self.default.clone(),
        };
        serde::Serialize::serialize(&stored, s)
    }
}

impl TryFrom<Stored> for Languages {
    type Error = String;

    fn try_from(s: Stored) -> Result<Languages, String> {
        let detect: Vec<(String, usize)> = s.detect.into_iter().map(|c| (c, 0)).collect();
        Languages::new(&detect, &(s.default, 0)).map_err(|(_, e)| e)
    }
}

impl Default for Languages {
    fn default() -> Self {
        let codes: Vec<_> = KNOWN.iter().take(3).copied().collect();
        Languages {
            detector: detector(&codes),
            codes,
            default: "en".into(),
        }
    }
}

impl Languages {
    /// From `[language] detect` and `default` (each with its line, for errors).
    pub fn new(
        detect: &[(String, usize)],
        default: &(String, usize),
    ) -> Result<Languages, (usize, String)> {
        let mut codes = Vec::new();
        for (code, line) in detect {
            match KNOWN.iter().find(|k| k.0 == code) {
                Some(k) => codes.push(*k),
                None => {
                    return Err((
                        *line,
                        format!("unknown language `{code}` in `detect` (known: {})", known()),
                    ))
                }
            }
        }
        if codes.is_empty() {
            return Err((default.1, "`detect` must name at least one language".into()));
        }
        if !codes.iter().any(|c| c.0 == default.0) {
            return Err((
                default.1,
                format!("`default` `{}` must be one of `detect`", default.0),
            ));
        }
        Ok(Languages {
            detector: detector(&codes),
            codes,
            default: default.0.clone(),
        })
    }

    /// The ISO 639-1 code of the language `subject` and `body` are written in.
    pub fn detect(&self, subject: &str, body: &str) -> String {
        let mut sample = String::with_capacity(SAMPLE_BYTES + subject.len() + 1);
        sample.push_str(subject);
        sample.push('\n');
        let mut cut = SAMPLE_BYTES.min(body.len());
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        sample.push_str(body.get(..cut).unwrap_or(""));
        let letters = sample.chars().filter(|c| c.is_alphabetic()).count();
        if letters < MIN_LETTERS {
            return self.default.clone();
        }
        if plainly_english(&sample) && self.codes.iter().any(|c| c.0 == "en") {
            return "en".into();
        }
        match self.detector.detect(&sample) {
            Some(info)
                if info.confidence() >= MIN_CONFIDENCE
                    && (letters >= RELIABLE_LETTERS || info.is_reliable()) =>
            {
                self.codes
                    .iter()
                    .find(|c| c.1 == info.lang())
                    .map_or_else(|| self.default.clone(), |c| c.0.to_string())
            }
            _ => self.default.clone(),
        }
    }

    /// The fallback language.
    pub fn default_code(&self) -> &str {
        &self.default
    }
}

/// English function words, and the French and Spanish ones (and greetings) that rule out a
/// plainly English sample ("no" is as English as it is Spanish: the other Spanish words
/// tell). Lower-case ASCII letters, at most [`KEY_LETTERS`] each (the build and a test keep
/// them so).
const ENGLISH: &[&str] = &[
    "and", "any", "are", "been", "can", "for", "from", "has", "have", "is", "it", "not", "of",
    "our", "please", "that", "the", "they", "this", "to", "was", "we", "with", "you", "your",
];
const NOT_ENGLISH: &[&str] = &[
    "al", "bonjour", "buenas", "buenos", "con", "de", "del", "des", "du", "el", "es", "est", "et",
    "gracias", "hola", "il", "je", "la", "las", "le", "les", "lo", "los", "merci", "ne", "nous",
    "para", "pas", "por", "que", "qui", "se", "su", "un", "una", "une", "vous", "y",
];

/// The longest word a [`key`] holds: eight bytes, one per letter.
const KEY_LETTERS: usize = 8;

/// A word of at most [`KEY_LETTERS`] ASCII letters as one number: its bytes lower-cased,
/// little-endian. No letter is 0, so two words of different lengths never share a key.
/// Looking words up as numbers keeps the fast path below free of string comparisons.
const fn key(word: &[u8]) -> u64 {
    let mut k = 0u64;
    let mut i = 0;
    while i < word.len() && i < KEY_LETTERS {
        // Bounded by the loop condition; `| 0x20` lower-cases an ASCII letter.
        k |= ((word[i] | 0x20) as u64) << (8 * i);
        i += 1;
    }
    k
}

/// Every listed word's key, sorted, with whether it is English (else it rules English out).
const WORDS: [(u64, bool); ENGLISH.len() + NOT_ENGLISH.len()] = {
    let mut table = [(0u64, false); ENGLISH.len() + NOT_ENGLISH.len()];
    let mut n = 0;
    while n < table.len() {
        let english = n < ENGLISH.len();
        let word = if english {
            ENGLISH[n]
        } else {
            NOT_ENGLISH[n - ENGLISH.len()]
        };
        // A word a key cannot hold fails the build.
        assert!(!word.is_empty() && word.len() <= KEY_LETTERS);
        // Insertion sort (a const context has no `sort`).
        let entry = (key(word.as_bytes()), english);
        let mut at = n;
        while at > 0 && table[at - 1].0 > entry.0 {
            table[at] = table[at - 1];
            at -= 1;
        }
        table[at] = entry;
        n += 1;
    }
    table
};

/// A fast path before whatlang (a third of a classification's time): a sample in ASCII
/// with at least 5 English function words and not one French or Spanish one is English.
/// Beyond ASCII, only typographic punctuation is allowed (curly quotes, dashes, ellipses, a
/// no-break space: English mail from phones and word processors is full of them). Anything
/// else (an accented letter, a combining accent, `¿`, `«`) or a word such as "la", "que",
/// "de" leaves the decision to whatlang.
fn plainly_english(sample: &str) -> bool {
    if !sample.chars().all(|c| c.is_ascii() || typographic(c)) {
        return false;
    }
    let mut english = 0;
    for word in sample.as_bytes().split(|b| !b.is_ascii_alphabetic()) {
        // Every listed word fits a key: a longer one is none of them.
        if word.is_empty() || word.len() > KEY_LETTERS {
            continue;
        }
        match WORDS.binary_search_by_key(&key(word), |w| w.0) {
            Ok(i) if WORDS.get(i).is_some_and(|w| w.1) => english += 1,
            Ok(_) => return false,
            Err(_) => {}
        }
    }
    english >= 5
}

/// A no-break space, or a character of Unicode's General Punctuation block (U+2000–U+206F:
/// spaces, dashes, quotes, ellipsis, bullets).
fn typographic(c: char) -> bool {
    c == '\u{a0}' || ('\u{2000}'..='\u{206f}').contains(&c)
}

fn detector(codes: &[(&'static str, Lang)]) -> Detector {
    Detector::with_allowlist(codes.iter().map(|c| c.1).collect())
}

fn known() -> String {
    KNOWN.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_words_are_keyed_apart() {
        // Their length is checked by the build (`WORDS`); their letters here.
        for list in [ENGLISH, NOT_ENGLISH] {
            assert!(list
                .iter()
                .all(|w| w.bytes().all(|b| b.is_ascii_lowercase())));
        }
        // Keys tell the words apart, and the table is sorted for the binary search.
        assert!(WORDS.windows(2).all(|p| p[0].0 < p[1].0), "{WORDS:?}");
        assert_eq!(key(b"The"), key(b"the"));
        assert_ne!(key(b"the"), key(b"they"));
        assert!(plainly_english(
            "THE app IS down AND we HAVE tried: please CALL"
        ));
        assert!(!plainly_english(
            "The app is down and we have tried, gracias"
        ));
        // Typographic punctuation is not an accent; an accented letter is, composed or not,
        // and so are Spanish and French punctuation.
        assert!(plainly_english(
            "We\u{2019}ve tried \u{2014} no one can log in and the \u{201c}app\u{201d} is down for you"
        ));
        for other in ["caf\u{e9}", "cafe\u{301}", "\u{bf}", "\u{ab}"] {
            assert!(!plainly_english(&format!(
                "We have tried and the app is down for you {other}"
            )));
        }
        assert!(plainly_english(
            "Please can you fix this, we have the app and it is down"
        ));
        assert!(!plainly_english(
            "Please can you fix this, we have the app and it is down, merci"
        ));
        assert!(!plainly_english("the and to is"));
    }

    #[test]
    fn english_french_spanish() {
        let l = Languages::default();
        assert_eq!(
            l.detect(
                "Pages not arriving",
                "None of the nurses on the unit can log in since this morning."
            ),
            "en"
        );
        assert_eq!(
            l.detect(
                "Infirmières",
                "Aucune infirmière de l'unité ne peut se connecter depuis ce matin, c'est urgent."
            ),
            "fr"
        );
        assert_eq!(
            l.detect(
                "Enfermeras",
                "Ninguna de nuestras enfermeras puede entrar a la aplicación desde esta mañana."
            ),
            "es"
        );
        assert_eq!(l.detect("", "ok"), "en");
        // Unaccented Spanish with English words in it is not taken for English.
        assert!(!plainly_english(
            "the app is down, no podemos entrar y los pacientes are waiting for the doctor"
        ));
        assert!(plainly_english(
            "None of the nurses on the unit can log in and we have tried everything."
        ));
    }

    #[test]
    fn configured_languages() {
        let l = Languages::new(&[("fr".into(), 3), ("en".into(), 3)], &("fr".into(), 4));
        assert!(l.is_ok_and(|l| l.default_code() == "fr"));
        let bad = Languages::new(&[("xx".into(), 3)], &("en".into(), 4));
        assert!(bad.is_err_and(|e| e.0 == 3 && e.1.contains("unknown language `xx`")));
        let bad = Languages::new(&[("fr".into(), 3)], &("en".into(), 4));
        assert!(bad.is_err_and(|e| e.0 == 4));
    }
}
