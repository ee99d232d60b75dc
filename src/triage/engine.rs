//! Scoring: one mail → [`Classification`] (category, urgency, language, reasons), and the
//! [`Explanation`] of every feature's contribution behind `supportd classify --explain`.

use std::collections::BTreeMap;
use std::fmt;

use super::fold::{fold, Folded};
use super::phrases::{Hits, PhraseSet, Span};
use super::signals::{Signal, Signals, TextSignals};
use super::weights::ngrams;
use super::Rules;

/// The three urgency decisions, in the order of [`Feature::weights`] and [`Model::bias`].
pub const DECISIONS: [&str; 3] = ["impact", "stopped", "prompt"];

/// A category `[[rule]]`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct CategoryRule {
    pub id: String,
    pub categories: Vec<usize>,
    pub patterns: Vec<usize>,
    /// Phrases that cancel a pattern match they overlap ("everyone else" for "everyone").
    pub except: Vec<usize>,
    /// Phrases that veto the rule in a text where they occur anywhere.
    pub unless: Vec<usize>,
    pub body_weight: f64,
    pub subject_weight: f64,
    pub each_pattern: bool,
}

/// An urgency `[[feature]]`: fires on its patterns, a signal, the category, or other
/// features, and adds `weights` to the three decisions.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Feature {
    pub id: String,
    pub patterns: Vec<usize>,
    pub except: Vec<usize>,
    pub unless: Vec<usize>,
    pub signal: Option<Signal>,
    pub categories: Vec<usize>,
    /// Indexes of earlier features.
    pub all_of: Vec<usize>,
    pub any_of: Vec<usize>,
    pub none_of: Vec<usize>,
    pub weights: [f64; 3],
}

/// `[urgency]`: the decisions' biases, the safety margin, the capitals threshold.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Model {
    pub bias: [f64; 3],
    pub margin: f64,
    pub capitals_ratio: f64,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            bias: [0.0; 3],
            margin: 1.0,
            capitals_ratio: 0.6,
        }
    }
}

/// What triage looks at in one mail. `body` must already be stripped of quoted text and
/// signatures (`mail::quote::strip_quotes`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TriageInput<'a> {
    pub subject: &'a str,
    pub body: &'a str,
    /// From the mail's headers; `Signals::default()` when unknown.
    pub signals: Signals,
}

/// The three decision scores (positive: the more urgent side).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Scores {
    /// ≥ 0: level 1–2.
    pub impact: f64,
    /// ≥ 0: level 1 rather than 2.
    pub stopped: f64,
    /// ≥ 0: level 3 rather than 4.
    pub prompt: f64,
}

/// The result of triaging one message.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Classification {
    /// Category id (one of [`Rules::categories`]).
    pub category: String,
    /// Urgency level 1–4.
    pub urgency: u8,
    /// ISO 639-1 code of the customer's language (`[language] detect`).
    pub language: String,
    /// The category rules and urgency features that fired, then, when the safety margin
    /// decided the level, a sentence saying so.
    pub reasons: Vec<String>,
    /// Ids of the category rules that fired.
    pub rules: Vec<String>,
    /// Ids of the urgency features that fired.
    pub features: Vec<String>,
    pub scores: Scores,
    /// Level 2 because the impact score was within `[urgency] margin` below the boundary.
    pub margin: bool,
    /// Hashed word n-grams of the mail (see [`super::weights::ngrams`]); computed only when
    /// learned weights are installed (they score them) or for [`Rules::classify_with_evidence`].
    #[serde(skip)]
    pub ngrams: Vec<u32>,
    /// Each category's total, in file order.
    #[serde(skip)]
    pub category_scores: Vec<f64>,
}

/// What fired for one mail, as stored with an agent's correction and read by
/// `supportd triage tune` (JSON in `corrections.features`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evidence {
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub ngrams: Vec<u32>,
    /// Each category's rule total, where not 0 (absent in corrections stored before
    /// supportd recorded them: `triage tune` then counts the fired rules' body weights).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub category_totals: BTreeMap<String, f64>,
}

/// Whether pattern `id` matched somewhere no `except` phrase overlaps.
fn pattern_fires(hits: &Hits, id: usize, except: &[usize]) -> bool {
    hits.of(id).any(|s| !vetoed(hits, &s, except))
}

fn vetoed(hits: &Hits, span: &Span, except: &[usize]) -> bool {
    except.iter().any(|&e| hits.of(e).any(|x| x.overlaps(span)))
}

/// How many times a rule counts in one text: 0 when an `unless` phrase occurs or no
/// pattern fires; else 1, or the number of distinct patterns that fire (`each_pattern`).
fn rule_hits(rule: &CategoryRule, hits: &Hits) -> usize {
    if rule.unless.iter().any(|&u| hits.of(u).next().is_some()) {
        return 0;
    }
    let firing = rule
        .patterns
        .iter()
        .filter(|&&p| pattern_fires(hits, p, &rule.except));
    if rule.each_pattern {
        firing.count()
    } else {
        usize::from(firing.take(1).count() > 0)
    }
}

struct Texts {
    subject: Folded,
    body: Folded,
    hits: [Hits; 2],
}

fn scan(phrases: &PhraseSet, subject: &str, body: &str) -> Texts {
    // One fold keeping case; the case-folded text is its ASCII lower-case copy (folding
    // leaves only ASCII in Latin scripts, and the byte offsets stay the same).
    let both = |text: &str| {
        let exact = fold(text, true);
        let mut lower = exact.clone();
        lower.text.make_ascii_lowercase();
        (lower, exact)
    };
    let ((s, sx), (b, bx)) = (both(subject), both(body));
    let exact = phrases.needs_exact();
    let hs = phrases.matches(&s, exact.then_some(&sx));
    let hb = phrases.matches(&b, exact.then_some(&bx));
    Texts {
        subject: s,
        body: b,
        hits: [hs, hb],
    }
}

impl Rules {
    /// Classifies a message without header signals. `body` must already be stripped of
    /// quoted text and signatures.
    pub fn classify(&self, subject: &str, body: &str) -> Classification {
        self.classify_mail(&TriageInput {
            subject,
            body,
            signals: Signals::default(),
        })
    }

    /// Classifies a message.
    pub fn classify_mail(&self, input: &TriageInput<'_>) -> Classification {
        self.classify_inner(input, self.weights.is_some())
    }

    /// Classifies a message and returns what fired, to be stored with an agents'
    /// correction (`corrections.features`) for `supportd triage tune`.
    pub fn classify_with_evidence(&self, input: &TriageInput<'_>) -> (Classification, Evidence) {
        let c = self.classify_inner(input, true);
        let e = Evidence {
            rules: c.rules.clone(),
            features: c.features.clone(),
            ngrams: c.ngrams.clone(),
            category_totals: self
                .categories
                .iter()
                .zip(&c.category_scores)
                .filter(|(_, t)| **t != 0.0)
                .map(|(k, t)| (k.id.clone(), *t))
                .collect(),
        };
        (c, e)
    }

    fn classify_inner(&self, input: &TriageInput<'_>, with_ngrams: bool) -> Classification {
        let t = scan(&self.phrases, input.subject, input.body);
        let ngrams = if with_ngrams {
            ngrams(&[&t.subject, &t.body])
        } else {
            Vec::new()
        };

        // Category: topic rules, subject and body scored apart.
        let mut cat_scores = vec![0.0_f64; self.categories.len()];
        let mut rules_fired = Vec::new();
        for rule in &self.rules {
            let (ns, nb) = (rule_hits(rule, &t.hits[0]), rule_hits(rule, &t.hits[1]));
            if ns + nb == 0 {
                continue;
            }
            let score = rule.subject_weight * ns as f64 + rule.body_weight * nb as f64;
            rules_fired.push(rule.id.clone());
            for &c in &rule.categories {
                if let Some(s) = cat_scores.get_mut(c) {
                    *s += score;
                }
            }
        }
        let sums = self.ngram_sums(&ngrams);
        let learned = self.weights.as_ref().filter(|w| !w.category.is_empty());
        let category = match learned {
            Some(w) => self.learned_category(
                &cat_scores,
                sums.get(DECISIONS.len()..).unwrap_or(&[]),
                ngrams.len(),
                w,
                &self.category_matrix,
            ),
            None => {
                // Highest score wins; ties go to the category listed first.
                let mut best: Option<(usize, f64)> = None;
                for (i, &s) in cat_scores.iter().enumerate() {
                    if s >= self.category_threshold && best.is_none_or(|(_, b)| s > b) {
                        best = Some((i, s));
                    }
                }
                best.and_then(|(i, _)| self.categories.get(i))
                    .map(|c| c.id.clone())
            }
        }
        .unwrap_or_else(|| self.default_category.clone());
        let category_index = self.categories.iter().position(|c| c.id == category);

        // Urgency features, in file order (combinations refer to earlier ones).
        let text = TextSignals::measure(
            &t.subject,
            &t.body,
            (input.subject, input.body),
            self.model.capitals_ratio,
        );
        let mut fired = vec![false; self.features.len()];
        for (i, f) in self.features.iter().enumerate() {
            let on = |j: &usize| fired.get(*j).copied().unwrap_or(false);
            let mut ok = f.all_of.iter().all(on)
                && (f.any_of.is_empty() || f.any_of.iter().any(on))
                && !f.none_of.iter().any(on);
            if ok && !f.patterns.is_empty() {
                ok = t.hits.iter().any(|h| {
                    !f.unless.iter().any(|&u| h.of(u).next().is_some())
                        && f.patterns.iter().any(|&p| pattern_fires(h, p, &f.except))
                });
            }
            if ok {
                if let Some(sig) = f.signal {
                    ok = sig.fires(&input.signals, &text);
                }
            }
            if ok && !f.categories.is_empty() {
                ok = category_index.is_some_and(|c| f.categories.contains(&c));
            }
            if let Some(slot) = fired.get_mut(i) {
                *slot = ok;
            }
        }
        let features: Vec<String> = self
            .features
            .iter()
            .zip(&fired)
            .filter(|(_, on)| **on)
            .map(|(f, _)| f.id.clone())
            .collect();

        let scores = self.scores(&features, &fired, &sums);
        let (urgency, margin) = self.level_of(&scores);
        let mut reasons = rules_fired.clone();
        reasons.extend(features.iter().cloned());
        if margin {
            reasons.push(format!(
                "safety margin: impact score {:.2} is within {:.2} of the level 1-2 boundary, so level 2 rather than 3 or 4",
                scores.impact, self.model.margin
            ));
        }
        Classification {
            category,
            urgency,
            language: self.languages.detect(input.subject, input.body),
            reasons,
            rules: rules_fired,
            features,
            scores,
            margin,
            ngrams,
            category_scores: cat_scores,
        }
    }

    /// Every installed decision's n-gram sum for a mail, in one pass over its n-grams: the
    /// urgency decisions' ([`DECISIONS`] order), then each category's (the rules' order).
    /// Empty without installed weights.
    fn ngram_sums(&self, ngrams: &[u32]) -> Vec<f64> {
        match &self.weights {
            Some(w) => self.ngram_table.sums(ngrams, w.ngram_buckets),
            None => Vec::new(),
        }
    }

    /// The three decision scores: the file's weights, or the installed learned ones, with
    /// `ngram_sums` from the installed weights' n-gram table (urgency decisions first).
    fn scores(&self, features: &[String], fired: &[bool], ngram_sums: &[f64]) -> Scores {
        let s = match &self.weights {
            Some(w) => {
                let ids = || features.iter().map(String::as_str);
                let sum = |d: usize| ngram_sums.get(d).copied().unwrap_or(0.0);
                [
                    w.impact.score_with(ids(), sum(0)),
                    w.stopped.score_with(ids(), sum(1)),
                    w.prompt.score_with(ids(), sum(2)),
                ]
            }
            None => {
                let mut s = self.model.bias;
                for (f, _) in self.features.iter().zip(fired).filter(|(_, on)| **on) {
                    for (d, w) in s.iter_mut().zip(f.weights) {
                        *d += w;
                    }
                }
                s
            }
        };
        Scores {
            impact: s[0],
            stopped: s[1],
            prompt: s[2],
        }
    }

    /// `w`'s category weights on the categories' rule totals as a matrix: row by row (the
    /// scored category), column by column (the total), both in the rules' category order.
    /// Built once when weights are installed, so that scoring a mail indexes instead of
    /// looking each total up by name.
    pub(crate) fn category_matrix(&self, w: &super::Weights) -> Vec<f64> {
        let ids: Vec<&str> = self.categories.iter().map(|c| c.id.as_str()).collect();
        ids.iter()
            .flat_map(|row| {
                let l = w.category.get(*row);
                ids.iter()
                    .map(move |col| l.and_then(|l| l.features.get(*col)).copied().unwrap_or(0.0))
            })
            .collect()
    }

    /// With learned category weights `w` and their [`Rules::category_matrix`]: each
    /// category's learned score in parts (bias, from the rule totals, from the words), in
    /// the rules' category order; `totals` are the categories' rule totals in that order,
    /// `words` each category's n-gram sum for the mail (same order) and `n` its number of
    /// n-grams (the sums are divided by its square root).
    pub(crate) fn learned_scores(
        &self,
        totals: &[f64],
        words: &[f64],
        n: usize,
        w: &super::Weights,
        matrix: &[f64],
    ) -> Vec<(f64, f64, f64)> {
        let k = self.categories.len();
        self.categories
            .iter()
            .enumerate()
            .map(|(c, cat)| {
                let Some(l) = w.category.get(&cat.id) else {
                    return (f64::NEG_INFINITY, 0.0, 0.0);
                };
                let row = matrix.get(c * k..(c + 1) * k).unwrap_or(&[]);
                let from_totals: f64 = row.iter().zip(totals).map(|(a, t)| a * t).sum();
                let words = match (n, words.get(c)) {
                    (0, _) | (_, None) => 0.0,
                    (n, Some(sum)) => sum / (n as f64).sqrt(),
                };
                (l.bias, from_totals, words)
            })
            .collect()
    }

    /// With learned category weights: the best-scoring category (ties: the one listed
    /// first). Every category of the rules has weights ([`Rules::with_weights`] checks).
    pub(crate) fn learned_category(
        &self,
        totals: &[f64],
        words: &[f64],
        n: usize,
        w: &super::Weights,
        matrix: &[f64],
    ) -> Option<String> {
        let mut best: Option<(usize, f64)> = None;
        for (i, (b, t, n)) in self
            .learned_scores(totals, words, n, w, matrix)
            .into_iter()
            .enumerate()
        {
            let s = b + t + n;
            if best.is_none_or(|(_, x)| s > x) {
                best = Some((i, s));
            }
        }
        best.and_then(|(i, _)| self.categories.get(i))
            .map(|c| c.id.clone())
    }

    /// Each feature's weights for the three decisions, in file order.
    pub fn feature_weights(&self) -> Vec<[f64; 3]> {
        self.features.iter().map(|f| f.weights).collect()
    }

    /// The three decisions' biases.
    pub fn decision_biases(&self) -> [f64; 3] {
        self.model.bias
    }

    /// For each category rule (file order), its body weight if it votes for `category`.
    pub fn category_rule_weights(&self, category: &str) -> Vec<f64> {
        let index = self.categories.iter().position(|c| c.id == category);
        self.rules
            .iter()
            .map(|r| match index {
                Some(i) if r.categories.contains(&i) => r.body_weight,
                _ => 0.0,
            })
            .collect()
    }

    /// The level for decision scores, and whether the safety margin decided it.
    pub(crate) fn level_of(&self, s: &Scores) -> (u8, bool) {
        if s.impact >= 0.0 {
            (if s.stopped >= 0.0 { 1 } else { 2 }, false)
        } else if s.impact >= -self.model.margin {
            (2, true)
        } else {
            (if s.prompt >= 0.0 { 3 } else { 4 }, false)
        }
    }

    /// The words that made each rule and feature fire (the first match of each), for
    /// `classify --explain`.
    fn evidence_text(&self, input: &TriageInput<'_>) -> Vec<(String, String)> {
        let t = scan(&self.phrases, input.subject, input.body);
        let texts = [&t.subject.text, &t.body.text];
        let first = |patterns: &[usize], except: &[usize]| {
            t.hits.iter().zip(texts).find_map(|(h, text)| {
                patterns.iter().find_map(|&p| {
                    h.of(p)
                        .find(|s| !vetoed(h, s, except))
                        .and_then(|s| text.get(s.start as usize..s.end as usize))
                        .map(|w| w.trim().to_string())
                })
            })
        };
        let rules = self
            .rules
            .iter()
            .map(|r| (&r.id, first(&r.patterns, &r.except)));
        let features = self
            .features
            .iter()
            .map(|f| (&f.id, first(&f.patterns, &f.except)));
        rules
            .chain(features)
            .filter_map(|(id, w)| w.map(|w| (id.clone(), w)))
            .collect()
    }

    /// Classifies a message and explains the result: each fired feature's contribution to
    /// each decision and the words that fired it (`classify --explain`).
    pub fn explain(&self, input: &TriageInput<'_>) -> Explanation {
        let c = self.classify_mail(input);
        let words = self.evidence_text(input);
        let said = |id: &str| {
            words
                .iter()
                .find(|(k, _)| k == id)
                .map_or_else(|| id.to_string(), |(_, w)| format!("{id} \"{w}\""))
        };
        let sums = self.ngram_sums(&c.ngrams);
        let mut decisions = Vec::new();
        for (d, name) in DECISIONS.iter().enumerate() {
            let (bias, mut parts): (f64, Vec<(String, f64)>) = match &self.weights {
                Some(w) => {
                    let l = [&w.impact, &w.stopped, &w.prompt][d];
                    let mut parts: Vec<(String, f64)> = c
                        .features
                        .iter()
                        .filter_map(|id| l.features.get(id).map(|x| (said(id), *x)))
                        .collect();
                    let ng = sums.get(d).copied().unwrap_or(0.0);
                    if ng != 0.0 {
                        parts.push(("(learned word n-grams)".into(), ng));
                    }
                    (l.bias, parts)
                }
                None => (
                    self.model.bias[d],
                    self.features
                        .iter()
                        .filter(|f| c.features.contains(&f.id) && f.weights[d] != 0.0)
                        .map(|f| (said(&f.id), f.weights[d]))
                        .collect(),
                ),
            };
            parts.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
            let total = [c.scores.impact, c.scores.stopped, c.scores.prompt][d];
            decisions.push(Decision {
                name,
                bias,
                parts,
                total,
            });
        }
        let mut categories: Vec<(String, f64)> = self
            .categories
            .iter()
            .zip(&c.category_scores)
            .filter(|(_, s)| **s != 0.0)
            .map(|(k, s)| (k.id.clone(), *s))
            .collect();
        categories.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut learned_categories: Vec<LearnedCategory> = match &self.weights {
            Some(w) if !w.category.is_empty() => self
                .categories
                .iter()
                .zip(self.learned_scores(
                    &c.category_scores,
                    sums.get(DECISIONS.len()..).unwrap_or(&[]),
                    c.ngrams.len(),
                    w,
                    &self.category_matrix,
                ))
                .map(|(k, (bias, totals, words))| LearnedCategory {
                    id: k.id.clone(),
                    bias,
                    totals,
                    words,
                })
                .collect(),
            _ => Vec::new(),
        };
        learned_categories.sort_by(|a, b| b.score().total_cmp(&a.score()));
        learned_categories.truncate(3);
        Explanation {
            category: c.category.clone(),
            urgency: c.urgency,
            language: c.language.clone(),
            categories,
            learned_categories,
            rules: c.rules.iter().map(|r| said(r)).collect(),
            decisions,
            margin: self.model.margin,
            margin_applied: c.margin,
            learned: self.weights.is_some(),
        }
    }
}

/// One decision's explanation.
#[derive(Debug, Clone)]
pub struct Decision {
    pub name: &'static str,
    pub bias: f64,
    /// (feature, contribution), largest first.
    pub parts: Vec<(String, f64)>,
    pub total: f64,
}

/// One category's learned score, in parts.
#[derive(Debug, Clone)]
pub struct LearnedCategory {
    pub id: String,
    pub bias: f64,
    /// From the categories' rule totals.
    pub totals: f64,
    /// From the mail's word n-grams.
    pub words: f64,
}

impl LearnedCategory {
    pub fn score(&self) -> f64 {
        self.bias + self.totals + self.words
    }
}

/// Why a mail got its category and level.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub category: String,
    pub urgency: u8,
    pub language: String,
    /// Category totals, highest first.
    pub categories: Vec<(String, f64)>,
    /// With learned category weights: the three best categories' scores and their parts.
    pub learned_categories: Vec<LearnedCategory>,
    pub rules: Vec<String>,
    pub decisions: Vec<Decision>,
    pub margin: f64,
    pub margin_applied: bool,
    /// Learned weights (not the rules file's) gave the scores.
    pub learned: bool,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  category {}   urgency {}   language {}{}",
            self.category,
            self.urgency,
            self.language,
            if self.learned {
                "   (learned weights)"
            } else {
                ""
            }
        )?;
        let cats: Vec<String> = self
            .categories
            .iter()
            .map(|(c, s)| format!("{c} {s:.2}"))
            .collect();
        writeln!(
            f,
            "  category scores: {}",
            if cats.is_empty() {
                "none".into()
            } else {
                cats.join(", ")
            }
        )?;
        if !self.learned_categories.is_empty() {
            let best: Vec<String> = self
                .learned_categories
                .iter()
                .map(|l| {
                    format!(
                        "{} {:+.2} (bias {:+.2}, rule totals {:+.2}, words {:+.2})",
                        l.id,
                        l.score(),
                        l.bias,
                        l.totals,
                        l.words
                    )
                })
                .collect();
            writeln!(f, "  learned category scores: {}", best.join("; "))?;
        }
        writeln!(
            f,
            "  category rules fired: {}",
            if self.rules.is_empty() {
                "none".into()
            } else {
                self.rules.join(", ")
            }
        )?;
        let what = [
            "level 1-2 if >= 0",
            "level 1 rather than 2 if >= 0",
            "level 3 rather than 4 if >= 0",
        ];
        for (d, text) in self.decisions.iter().zip(what) {
            writeln!(f, "  {} = {:+.2}  ({text})", d.name, d.total)?;
            writeln!(f, "      {:+.2}  bias", d.bias)?;
            for (id, w) in &d.parts {
                writeln!(f, "      {w:+.2}  {id}")?;
            }
        }
        if self.margin_applied {
            writeln!(
                f,
                "  safety margin: impact within {:.2} below 0, so level 2",
                self.margin
            )?;
        }
        Ok(())
    }
}
