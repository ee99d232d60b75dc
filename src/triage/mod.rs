//! Triage: the category and urgency level of a new ticket, and the customer's language.
//!
//! Everything domain-specific lives in `config/triage.toml` (its comments explain it); this
//! module is the engine, pure (no I/O, no async):
//!
//! * [`fold`]: case, accents, punctuation and numbers folded, so a phrase is written once;
//! * [`phrases`]: the phrase language of the rules, matched through one trie of words;
//! * [`rules`]: reading and validating the file, every problem with its line;
//! * [`engine`]: scoring. The **category** is topic-driven: `[[rule]]`s add their weight to
//!   one or more categories, the highest total wins. The **urgency** comes from
//!   `[[feature]]`s that describe impact rather than topic (scope, the clinical path
//!   broken, patient safety, since when, a workaround, the sender's own signals,
//!   negations); each adds its weights to three decisions: `impact` (level 1–2 or 3–4),
//!   `stopped` (1 or 2), `prompt` (3 or 4). A score close below the level 1–2 boundary
//!   (`[urgency] margin`) gives level 2, and the reasons say so;
//! * [`signals`]: `Importance`/`X-Priority` (from the caller) and capitals, `!!`, terse mail;
//! * [`lang`]: language detection (whatlang);
//! * [`weights`]: weights learned by `supportd triage tune`, installed by the rules file's
//!   `[scoring] weights_file`; [`tune`]: the learning and the confusion matrices.

pub mod engine;
mod flat;
pub mod fold;
pub mod lang;
pub mod phrases;
pub mod rules;
pub mod signals;
mod trie;
pub mod tune;
pub mod weights;

pub use engine::{Classification, Evidence, Explanation, TriageInput};
pub use signals::Signals;
pub use weights::Weights;

/// One urgency level and its service levels.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Level {
    pub level: u8,
    pub name: String,
    pub first_response_hours: u32,
    pub resolution_hours: u32,
    pub advise_phone: bool,
}

/// One ticket category.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Category {
    pub id: String,
    pub name: String,
}

/// A compiled, validated rules file (and, when installed, learned weights). Serialisable
/// whole for the built-rules cache ([`crate::rules_cache`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Rules {
    /// Every pattern of every rule and feature, matched in one pass.
    phrases: phrases::PhraseSet,
    levels: Vec<Level>,
    categories: Vec<Category>,
    rules: Vec<engine::CategoryRule>,
    features: Vec<engine::Feature>,
    default_category: String,
    category_threshold: f64,
    model: engine::Model,
    languages: lang::Languages,
    /// `[scoring] weights_file` as written (relative to the rules file).
    weights_file: Option<String>,
    weights: Option<Weights>,
    /// The installed weights' [`Rules::category_matrix`] (set by [`Rules::with_weights`]).
    #[serde(default)]
    category_matrix: Vec<f64>,
    /// The installed weights' n-gram weights, taken out of them by [`Rules::with_weights`]:
    /// the three urgency decisions, then each category in the rules' order.
    #[serde(default)]
    ngram_table: weights::NgramTable,
}

impl Rules {
    /// The level definition for an urgency value.
    pub fn level(&self, urgency: u8) -> Option<&Level> {
        self.levels.iter().find(|l| l.level == urgency)
    }

    /// All levels, most urgent first.
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// The category with this id.
    pub fn category(&self, id: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.id == id)
    }

    /// All categories, in file order.
    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// The category used when no category rule scores enough.
    pub fn default_category(&self) -> &str {
        &self.default_category
    }

    /// The level when nothing points anywhere: the outcome of the decisions' biases alone.
    pub fn default_urgency(&self) -> u8 {
        self.classify("", "").urgency
    }

    /// The ids of the `[[feature]]`s, in file order.
    pub fn feature_ids(&self) -> impl Iterator<Item = &str> {
        self.features.iter().map(|f| f.id.as_str())
    }

    /// The ids of the category `[[rule]]`s, in file order.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.id.as_str())
    }

    /// `[scoring] weights_file`, as written in the rules file (relative to it).
    pub fn weights_file(&self) -> Option<&str> {
        self.weights_file.as_deref()
    }

    /// The patterns as built, for the built-rules cache ([`crate::rules_cache`]).
    pub fn phrases(&self) -> &phrases::PhraseSet {
        &self.phrases
    }

    /// The installed learned weights, if any. Their n-gram weights are not in them: scoring
    /// reads those from one table of every decision (see [`Rules::with_weights`]), so these
    /// cannot score or be written out on their own: for tests only, for that reason.
    #[cfg(test)]
    pub(crate) fn weights(&self) -> Option<&Weights> {
        self.weights.as_ref()
    }

    /// Whether rules read back from the built-rules cache hang together: the n-gram table
    /// has a column for each decision the installed weights make (the urgency decisions, and
    /// each category when the category is learned) and none without weights. The cache is
    /// keyed and decoded with checks of its own; this catches a file that decodes to the
    /// wrong shape (then it is rebuilt).
    pub(crate) fn consistent(&self) -> bool {
        let urgency = engine::DECISIONS.len();
        let columns = match &self.weights {
            None => 0,
            Some(w) if w.category.is_empty() => urgency,
            Some(_) => urgency + self.categories.len(),
        };
        let k = self.categories.len();
        self.ngram_table.fits(columns)
            && (self.weights.is_none() || self.category_matrix.len() == k * k)
    }

    /// Installs learned weights (they replace the file's weights for scoring). Refused when
    /// they name a category these rules do not define.
    pub fn with_weights(mut self, weights: Weights) -> Result<Rules, String> {
        for (id, l) in &weights.category {
            if self.category(id).is_none() {
                return Err(format!(
                    "the weights name category `{id}`, which the rules do not define"
                ));
            }
            if let Some(k) = l.features.keys().find(|k| self.category(k).is_none()) {
                return Err(format!(
                    "[category.{id}] weighs `{k}`, which is not a category of the rules: a \
                     category's weights are per category total (written by an older \
                     `supportd triage tune`? tune again)"
                ));
            }
        }
        if !weights.category.is_empty() {
            if let Some(c) = self
                .categories()
                .iter()
                .find(|c| !weights.category.contains_key(&c.id))
            {
                return Err(format!(
                    "the weights learned no [category.{}], a category the rules define: it \
                     could never be chosen (tune again with the new taxonomy, or remove the \
                     [category.*] sections to pick categories by the rules alone)",
                    c.id
                ));
            }
        }
        self.category_matrix = self.category_matrix(&weights);
        let mut weights = weights;
        // The n-gram weights move into one table: the urgency decisions in
        // `engine::DECISIONS` order, then each category in the rules' order (checked above:
        // every category has weights, or none has).
        let take = std::mem::take::<weights::Ngrams>;
        let mut columns = vec![
            take(&mut weights.impact.ngrams),
            take(&mut weights.stopped.ngrams),
            take(&mut weights.prompt.ngrams),
        ];
        for c in &self.categories {
            if let Some(l) = weights.category.get_mut(&c.id) {
                columns.push(take(&mut l.ngrams));
            }
        }
        self.ngram_table = weights::NgramTable::new(columns);
        self.weights = Some(weights);
        Ok(self)
    }
}

/// Test support: each development mail (`tests/fixtures/triage-dev`) as triage sees it
/// (parsed, quotes stripped, no header signals), with its path, in name order; returns how
/// many were seen (a missing folder is none, which the callers' counts catch).
#[cfg(test)]
pub(crate) fn each_dev_mail(mut f: impl FnMut(&std::path::Path, &TriageInput<'_>)) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/triage-dev");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    paths.sort();
    let mut seen = 0;
    for path in paths {
        let Ok(raw) = std::fs::read(&path) else {
            continue;
        };
        let Ok(m) = crate::mail::parse::parse(&raw) else {
            continue;
        };
        let body = crate::mail::quote::strip_quotes(&m.body);
        let input = TriageInput {
            subject: &m.subject,
            body: &body,
            signals: Signals::default(),
        };
        f(&path, &input);
        seen += 1;
    }
    seen
}

/// One problem found in a rules file: the config files' own type, so `check-config` reports
/// both files alike (file:line: message).
pub use crate::toml_check::Problem;

/// Why a rules file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    /// The file is not valid TOML, or is valid TOML with invalid content. Every problem
    /// found is listed, each with its line when known, by the one TOML problem reporter.
    #[error("invalid triage rules: {0}")]
    Invalid(crate::toml_check::Problems),
}

impl TriageError {
    /// A problem with the rules as a whole (e.g. weights that don't fit them).
    pub fn whole(origin: impl Into<String>, message: impl Into<String>) -> TriageError {
        TriageError::Invalid(crate::toml_check::Problems::file(&origin.into(), message))
    }

    /// The individual problems, in file order.
    pub fn problems(&self) -> &[Problem] {
        match self {
            TriageError::Invalid(p) => &p.problems,
        }
    }
}

#[cfg(test)]
mod tests;
