//! Learning from agents: the rules against the agents' final labels (confusion matrices,
//! level 1–2 recall and false alarms) and `supportd triage tune`, which fits the weights
//! in pure Rust — L2-regularised logistic regression over the features that fired and
//! hashed word n-grams, pulled towards the rules file's own weights so that a few hundred
//! corrections adjust the rules rather than replace them. The category is one softmax over
//! the categories' rule totals and the mail's L2-normalised n-grams: the rules give it its
//! strongest inputs, the words learn what they miss.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::engine::{Evidence, Scores};
use super::weights::{Linear, Weights, DEFAULT_BUCKETS};
use super::Rules;

/// Below this many corrections `tune` refuses: too few to learn from.
pub const MIN_CORRECTIONS: usize = 50;
/// The newest fifth of the corrections is held back to measure the result, unless told
/// otherwise ([`TuneOptions::held_back`]).
pub const HELD_BACK: f64 = 0.2;

/// One ticket an agent labelled: what fired, what the rules said, what the agents decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub evidence: Evidence,
    pub rules_category: String,
    pub rules_urgency: u8,
    pub final_category: String,
    pub final_urgency: u8,
}

/// Rows: the agents' label; columns: the predicted one.
#[derive(Debug, Clone, PartialEq)]
pub struct Confusion {
    pub title: String,
    pub labels: Vec<String>,
    pub counts: Vec<Vec<usize>>,
}

impl Confusion {
    fn new(title: &str, labels: Vec<String>) -> Confusion {
        let n = labels.len();
        Confusion {
            title: title.into(),
            labels,
            counts: vec![vec![0; n]; n],
        }
    }

    fn add(&mut self, truth: &str, predicted: &str) {
        for l in [truth, predicted] {
            if !self.labels.iter().any(|x| x == l) {
                self.labels.push(l.to_string());
                for row in &mut self.counts {
                    row.push(0);
                }
                self.counts.push(vec![0; self.labels.len()]);
            }
        }
        let t = self.labels.iter().position(|x| x == truth);
        let p = self.labels.iter().position(|x| x == predicted);
        if let (Some(t), Some(p)) = (t, p) {
            if let Some(c) = self.counts.get_mut(t).and_then(|r| r.get_mut(p)) {
                *c += 1;
            }
        }
    }
}

impl fmt::Display for Confusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} (rows: agents' final label; columns: rules)",
            self.title
        )?;
        let w = self
            .labels
            .iter()
            .map(|l| l.len())
            .max()
            .unwrap_or(1)
            .max(5);
        write!(f, "  {:w$}", "")?;
        for (i, _) in self.labels.iter().enumerate() {
            write!(f, " {:>4}", format!("c{}", i + 1))?;
        }
        writeln!(f)?;
        for (i, (l, row)) in self.labels.iter().zip(&self.counts).enumerate() {
            write!(f, "  {l:w$}")?;
            for c in row {
                write!(f, " {c:>4}")?;
            }
            writeln!(f, "   c{} = {l}", i + 1)?;
        }
        Ok(())
    }
}

/// Headline figures of predictions against the agents' labels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub n: usize,
    pub category_ok: usize,
    pub urgency_ok: usize,
    /// Mails the agents put at level 1–2, and how many of them were predicted 1–2.
    pub high: usize,
    pub high_found: usize,
    /// Mails the agents put at level 3–4, and how many were raised to 1–2.
    pub low: usize,
    pub low_raised: usize,
}

fn pct(a: usize, b: usize) -> String {
    if b == 0 {
        "n/a".into()
    } else {
        format!("{:.1} %", 100.0 * a as f64 / b as f64)
    }
}

impl Figures {
    pub fn add(&mut self, truth: (&str, u8), predicted: (&str, u8)) {
        self.n += 1;
        self.category_ok += usize::from(truth.0 == predicted.0);
        self.urgency_ok += usize::from(truth.1 == predicted.1);
        if truth.1 <= 2 {
            self.high += 1;
            self.high_found += usize::from(predicted.1 <= 2);
        } else {
            self.low += 1;
            self.low_raised += usize::from(predicted.1 <= 2);
        }
    }

    pub fn ratio(a: usize, b: usize) -> f64 {
        if b == 0 {
            1.0
        } else {
            a as f64 / b as f64
        }
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "category {} ({}/{}), urgency exact {} ({}/{}), level 1-2 recall {} ({}/{}), level 3-4 raised to 1-2 {} ({}/{})",
            pct(self.category_ok, self.n), self.category_ok, self.n,
            pct(self.urgency_ok, self.n), self.urgency_ok, self.n,
            pct(self.high_found, self.high), self.high_found, self.high,
            pct(self.low_raised, self.low), self.low_raised, self.low,
        )
    }
}

/// `supportd triage report`: the rules' labels against the agents'.
#[derive(Debug, Clone)]
pub struct Report {
    pub figures: Figures,
    pub category: Confusion,
    pub urgency: Confusion,
}

pub fn report(samples: &[Sample], categories: &[String]) -> Report {
    let mut figures = Figures::default();
    let mut category = Confusion::new("category", categories.to_vec());
    let levels = (1..=4).map(|l| format!("level {l}")).collect();
    let mut urgency = Confusion::new("urgency", levels);
    for s in samples {
        figures.add(
            (&s.final_category, s.final_urgency),
            (&s.rules_category, s.rules_urgency),
        );
        category.add(&s.final_category, &s.rules_category);
        urgency.add(
            &format!("level {}", s.final_urgency),
            &format!("level {}", s.rules_urgency),
        );
    }
    Report {
        figures,
        category,
        urgency,
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} corrected tickets: {}", self.figures.n, self.figures)?;
        let fig = &self.figures;
        writeln!(
            f,
            "level 1-2: recall {} ({} of {} urgent tickets missed), false alarms {} ({} of {} level 3-4 tickets raised)",
            pct(fig.high_found, fig.high),
            fig.high - fig.high_found,
            fig.high,
            pct(fig.low_raised, fig.low),
            fig.low_raised,
            fig.low
        )?;
        writeln!(f)?;
        write!(f, "{}", self.category)?;
        writeln!(f)?;
        write!(f, "{}", self.urgency)
    }
}

/// Why `tune` did not produce weights.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TuneError {
    #[error("too few corrections to tune: {0} (at least {MIN_CORRECTIONS} are needed); keep correcting tickets with #urgency and #category")]
    TooFew(usize),
}

/// What `tune` learned, and how it does on the held-back corrections.
#[derive(Debug, Clone)]
pub struct TuneOutcome {
    pub weights: Weights,
    pub trained: usize,
    pub held_back: usize,
    /// What triage said then (installed weights included) on the held-back part.
    pub before: Figures,
    /// The learned weights on the held-back part.
    pub after: Figures,
    /// Corrections learned from whose final category the rules no longer define: left out
    /// of the category's fit (the urgency still learns from them).
    pub unknown_category: usize,
}

/// Options of the fit.
#[derive(Debug, Clone, Copy)]
pub struct TuneOptions {
    pub buckets: u32,
    /// The share of the newest corrections held back to measure (0: learn from all, and
    /// measure nothing).
    pub held_back: f64,
    /// Inverse strength of the category softmax's L2 penalty (as in liblinear's `C`: the
    /// penalty is `|W|² / (2 C N)` beside the mean loss).
    pub category_c: f64,
    pub category_iterations: usize,
    /// Weight of a level 1–2 example in the impact decision: above 1 favours recall.
    pub urgent_weight: f64,
    pub l2_features: f64,
    pub l2_ngrams: f64,
    pub iterations: usize,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions {
            buckets: DEFAULT_BUCKETS,
            held_back: HELD_BACK,
            category_c: 30.0,
            category_iterations: 1500,
            urgent_weight: 2.0,
            l2_features: 0.05,
            l2_ngrams: 0.05,
            iterations: 400,
        }
    }
}

/// Fits weights on `samples` (oldest first: the newest fifth is held back for figures).
pub fn tune(rules: &Rules, samples: &[Sample], opt: TuneOptions) -> Result<TuneOutcome, TuneError> {
    if samples.len() < MIN_CORRECTIONS {
        return Err(TuneError::TooFew(samples.len()));
    }
    let share = opt.held_back.clamp(0.0, 0.9);
    let held = ((samples.len() as f64) * share).ceil() as usize;
    let (train, test) = samples.split_at(samples.len() - held);
    let weights = fit(rules, train, opt);
    let mut before = Figures::default();
    let mut after = Figures::default();
    for s in test {
        let truth = (s.final_category.as_str(), s.final_urgency);
        before.add(truth, (&s.rules_category, s.rules_urgency));
        let (c, u) = rules.predict(&s.evidence, &weights);
        after.add(truth, (&c, u));
    }
    let unknown_category = train
        .iter()
        .filter(|s| rules.category(&s.final_category).is_none())
        .count();
    Ok(TuneOutcome {
        weights,
        trained: train.len(),
        held_back: test.len(),
        before,
        after,
        unknown_category,
    })
}

/// Fits all decisions on `train` (no hold-out).
pub fn fit(rules: &Rules, train: &[Sample], opt: TuneOptions) -> Weights {
    let features: Vec<String> = rules.feature_ids().map(String::from).collect();
    let prior: Vec<[f64; 3]> = rules.feature_weights();
    let bias = rules.decision_biases();
    let urgency_rows: Vec<Vec<usize>> = train
        .iter()
        .map(|s| {
            encode(
                &s.evidence.features,
                &s.evidence.ngrams,
                &features,
                opt.buckets,
            )
        })
        .collect();
    let decision =
        |d: usize, keep: &dyn Fn(u8) -> bool, positive: &dyn Fn(u8) -> bool, pos_weight: f64| {
            let mut rows = Vec::new();
            for (s, x) in train.iter().zip(&urgency_rows) {
                if keep(s.final_urgency) {
                    let y = positive(s.final_urgency);
                    rows.push((x.as_slice(), y, if y { pos_weight } else { 1.0 }));
                }
            }
            let w0: Vec<f64> = prior.iter().map(|p| p[d]).collect();
            logistic(&rows, &w0, bias[d], features.len(), opt).into_linear(&features, opt.buckets)
        };
    let impact = decision(0, &|_| true, &|u| u <= 2, opt.urgent_weight);
    let stopped = decision(1, &|u| u <= 2, &|u| u == 1, 1.0);
    let prompt = decision(2, &|u| u >= 3, &|u| u == 3, 1.0);

    let category = fit_categories(rules, train, opt);
    Weights {
        ngram_buckets: opt.buckets,
        impact,
        stopped,
        prompt,
        category,
    }
}

/// While learning, the rule totals are divided by this, so that they start on the scale of
/// the normalised n-grams (a total of ~20 is a clear topic); the weights written are
/// multiplied back, and inference uses the raw totals.
const TOTAL_SCALE: f64 = 40.0;

/// Each category's rule total for a sample, in the rules' category order: the stored
/// totals, or for corrections stored before supportd recorded them, the body weights of
/// the rules that fired.
fn sample_totals(rules: &Rules, e: &Evidence) -> Vec<f64> {
    let cats = rules.categories();
    if !e.category_totals.is_empty() {
        return cats
            .iter()
            .map(|c| e.category_totals.get(&c.id).copied().unwrap_or(0.0))
            .collect();
    }
    let ids: Vec<&str> = rules.rule_ids().collect();
    cats.iter()
        .map(|c| {
            let w = rules.category_rule_weights(&c.id);
            ids.iter()
                .zip(&w)
                .filter(|(id, _)| e.rules.iter().any(|r| r == *id))
                .map(|(_, w)| w)
                .sum()
        })
        .collect()
}

/// One sample's inputs to the category softmax: (index, value), the scaled rule totals
/// first, then each n-gram's bucket with 1/sqrt(n) (a bucket two n-grams share counts twice,
/// as at inference).
fn category_inputs(totals: &[f64], ngrams: &[u32], buckets: u32) -> Vec<(usize, f64)> {
    let k = totals.len();
    let mut x: Vec<(usize, f64)> = totals
        .iter()
        .enumerate()
        .filter(|(_, t)| **t != 0.0)
        .map(|(i, t)| (i, t / TOTAL_SCALE))
        .collect();
    if !ngrams.is_empty() && buckets > 0 {
        let v = 1.0 / (ngrams.len() as f64).sqrt();
        let mut b: Vec<usize> = ngrams.iter().map(|h| k + (h % buckets) as usize).collect();
        b.sort_unstable();
        for i in b {
            match x.last_mut() {
                Some(last) if last.0 == i => last.1 += v,
                _ => x.push((i, v)),
            }
        }
    }
    x
}

/// The category softmax, fitted by full-batch gradient descent with Nesterov momentum on
/// the mean cross-entropy plus `|W|² / (2 C N)`. It starts from the rules' own decision
/// (each category weighs its own total) and keeps only the categories of the rules.
fn fit_categories(rules: &Rules, train: &[Sample], opt: TuneOptions) -> BTreeMap<String, Linear> {
    let cats: Vec<String> = rules.categories().iter().map(|c| c.id.clone()).collect();
    let (k, dim) = (cats.len(), cats.len() + opt.buckets as usize);
    let rows: Vec<(Vec<(usize, f64)>, usize)> = train
        .iter()
        .filter_map(|s| {
            let y = cats.iter().position(|c| *c == s.final_category)?;
            let totals = sample_totals(rules, &s.evidence);
            Some((category_inputs(&totals, &s.evidence.ngrams, opt.buckets), y))
        })
        .collect();
    // w[c * dim + j]; bias[c].
    let mut w = vec![0.0; k * dim];
    for c in 0..k {
        if let Some(x) = w.get_mut(c * dim + c) {
            *x = 1.0;
        }
    }
    let mut bias = vec![0.0; k];
    if !rows.is_empty() && k > 0 {
        let n = rows.len() as f64;
        let lambda = 1.0 / (opt.category_c.max(1e-9) * n);
        let lr = 1.0;
        let momentum = 0.9;
        let (mut vw, mut vb) = (vec![0.0; k * dim], vec![0.0; k]);
        let (mut gw, mut gb) = (vec![0.0; k * dim], vec![0.0; k]);
        let mut p = vec![0.0; k];
        for _ in 0..opt.category_iterations {
            // Nesterov: the gradient at the look-ahead point.
            let look_w: Vec<f64> = w.iter().zip(&vw).map(|(a, v)| a + momentum * v).collect();
            let look_b: Vec<f64> = bias
                .iter()
                .zip(&vb)
                .map(|(a, v)| a + momentum * v)
                .collect();
            gw.iter_mut().for_each(|g| *g = 0.0);
            gb.iter_mut().for_each(|g| *g = 0.0);
            for (x, y) in &rows {
                for (c, pc) in p.iter_mut().enumerate() {
                    let row = &look_w[c * dim..(c + 1) * dim];
                    *pc = look_b.get(c).copied().unwrap_or(0.0)
                        + x.iter()
                            .map(|(j, v)| row.get(*j).copied().unwrap_or(0.0) * v)
                            .sum::<f64>();
                }
                let max = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = p.iter().map(|l| (l - max).exp()).sum();
                for (c, pc) in p.iter().enumerate() {
                    let err = ((pc - max).exp() / z - if c == *y { 1.0 } else { 0.0 }) / n;
                    if let Some(g) = gb.get_mut(c) {
                        *g += err;
                    }
                    for (j, v) in x {
                        if let Some(g) = gw.get_mut(c * dim + j) {
                            *g += err * v;
                        }
                    }
                }
            }
            for i in 0..w.len() {
                let g = gw[i] + lambda * look_w[i];
                vw[i] = momentum * vw[i] - lr * g;
                w[i] += vw[i];
            }
            for c in 0..k {
                vb[c] = momentum * vb[c] - lr * gb[c];
                bias[c] += vb[c];
            }
        }
    }
    let mut out = BTreeMap::new();
    for (c, id) in cats.iter().enumerate() {
        let mut l = Linear {
            bias: bias.get(c).copied().unwrap_or(0.0),
            ..Linear::default()
        };
        for j in 0..dim {
            let x = w.get(c * dim + j).copied().unwrap_or(0.0);
            if x.abs() < 1e-4 {
                continue;
            }
            match cats.get(j) {
                Some(total) => {
                    l.features.insert(total.clone(), x / TOTAL_SCALE);
                }
                None => l.ngrams.insert((j - k) as u32, x),
            }
        }
        out.insert(id.clone(), l);
    }
    out
}

/// Active indexes: known ids first, then `ids.len() + bucket` for each n-gram.
fn encode(fired: &[String], ngrams: &[u32], ids: &[String], buckets: u32) -> Vec<usize> {
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let mut x: Vec<usize> = fired
        .iter()
        .filter_map(|f| index.get(f.as_str()).copied())
        .collect();
    x.extend(
        ngrams
            .iter()
            .map(|h| ids.len() + (h % buckets.max(1)) as usize),
    );
    x.sort_unstable();
    x.dedup();
    x
}

struct Fitted {
    bias: f64,
    w: Vec<f64>,
}

impl Fitted {
    fn into_linear(self, ids: &[String], buckets: u32) -> Linear {
        let mut l = Linear {
            bias: self.bias,
            ..Linear::default()
        };
        for (i, w) in self.w.iter().enumerate() {
            if w.abs() < 1e-4 {
                continue;
            }
            match ids.get(i) {
                Some(id) => {
                    l.features.insert(id.clone(), *w);
                }
                None => {
                    let b = (i - ids.len()) as u32;
                    if b < buckets {
                        l.ngrams.insert(b, *w);
                    }
                }
            }
        }
        l
    }
}

/// Full-batch gradient descent on the weighted logistic loss, L2 towards the prior `w0`
/// (the rules' own weights; 0 for n-grams).
fn logistic(
    rows: &[(&[usize], bool, f64)],
    w0: &[f64],
    b0: f64,
    n_ids: usize,
    opt: TuneOptions,
) -> Fitted {
    let dim = n_ids + opt.buckets as usize;
    let mut w: Vec<f64> = (0..dim)
        .map(|i| w0.get(i).copied().unwrap_or(0.0))
        .collect();
    let mut b = b0;
    if rows.is_empty() {
        return Fitted { bias: b, w };
    }
    let total: f64 = rows.iter().map(|r| r.2).sum();
    let lr = 0.5;
    let mut g = vec![0.0; dim];
    for _ in 0..opt.iterations {
        g.iter_mut().for_each(|x| *x = 0.0);
        let mut gb = 0.0;
        for (x, y, sw) in rows {
            let z = b + x
                .iter()
                .map(|&i| w.get(i).copied().unwrap_or(0.0))
                .sum::<f64>();
            let p = 1.0 / (1.0 + (-z).exp());
            let err = sw * (p - if *y { 1.0 } else { 0.0 }) / total;
            gb += err;
            for &i in x.iter() {
                if let Some(gi) = g.get_mut(i) {
                    *gi += err;
                }
            }
        }
        for (i, (wi, gi)) in w.iter_mut().zip(&g).enumerate() {
            let (lambda, prior) = if i < n_ids {
                (opt.l2_features, w0.get(i).copied().unwrap_or(0.0))
            } else {
                (opt.l2_ngrams, 0.0)
            };
            *wi -= lr * (gi + lambda * (*wi - prior) / total.max(1.0) * 10.0);
        }
        b -= lr * gb;
    }
    Fitted { bias: b, w }
}

impl Rules {
    /// Category and level that learned `weights` give a mail whose evidence this is: the
    /// scoring of [`Rules::classify_mail`] with those weights installed, without the text.
    /// Its n-gram sums add `f64`s one by one where the installed table sums whole
    /// ten-thousandths exactly: the same to within rounding.
    pub fn predict(&self, e: &Evidence, w: &Weights) -> (String, u8) {
        let ids = || e.features.iter().map(String::as_str);
        let scores = Scores {
            impact: w.impact.score(ids(), &e.ngrams, w.ngram_buckets),
            stopped: w.stopped.score(ids(), &e.ngrams, w.ngram_buckets),
            prompt: w.prompt.score(ids(), &e.ngrams, w.ngram_buckets),
        };
        let (level, _) = self.level_of(&scores);
        let category = if w.category.is_empty() {
            None
        } else {
            let matrix = self.category_matrix(w);
            let words: Vec<f64> = self
                .categories()
                .iter()
                .map(|c| {
                    w.category
                        .get(&c.id)
                        .map_or(0.0, |l| l.ngram_score(&e.ngrams, w.ngram_buckets))
                })
                .collect();
            self.learned_category(&sample_totals(self, e), &words, e.ngrams.len(), w, &matrix)
        };
        (
            category.unwrap_or_else(|| self.default_category().to_string()),
            level,
        )
    }
}
