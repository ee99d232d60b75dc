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
/// plainly English sample. Both sorted (binary search; a test keeps them so).
const ENGLISH: &[&str] = &[
    "and", "any", "are", "been", "can", "for", "from", "has", "have", "is", "it", "not", "of",
    "our", "please", "that", "the", "they", "this", "to", "was", "we", "with", "you", "your",
];
const NOT_ENGLISH: &[&str] = &[
    "al", "bonjour", "buenas", "buenos", "con", "de", "del", "des", "du", "el", "es", "est", "et",
    "gracias", "hola", "il", "je", "la", "las", "le", "les", "lo", "los", "merci", "ne", "no",
    "nous", "para", "pas", "por", "que", "qui", "se", "su", "un", "una", "une", "vous", "y",
];

/// A fast path before whatlang (a third of a classification's time): a sample in plain ASCII
/// with at least 5 English function words and not one French or Spanish one is English. Any
/// accent, or any word such as "la", "que", "de", leaves the decision to whatlang.
fn plainly_english(sample: &str) -> bool {
    if !sample.is_ascii() {
        return false;
    }
    let mut english = 0;
    // Every listed word has at most 7 letters: a longer one is none of them.
    let mut buf = [0u8; 7];
    for word in sample.split(|c: char| !c.is_ascii_alphabetic()) {
        let Some(lower) = buf.get_mut(..word.len()).filter(|_| !word.is_empty()) else {
            continue;
        };
        lower.copy_from_slice(word.as_bytes());
        lower.make_ascii_lowercase();
        // ASCII letters only, so always UTF-8.
        let lower = std::str::from_utf8(lower).unwrap_or_default();
        if NOT_ENGLISH.binary_search(&lower).is_ok() {
            return false;
        }
        english += usize::from(ENGLISH.binary_search(&lower).is_ok());
    }
    english >= 5
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
    fn the_function_word_lists_are_sorted_and_short() {
        for list in [ENGLISH, NOT_ENGLISH] {
            assert!(list.is_sorted(), "{list:?}");
            assert!(list.iter().all(|w| !w.is_empty() && w.len() <= 7));
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
