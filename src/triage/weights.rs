//! Learned weights: what `supportd triage tune` writes (`triage-weights.toml`, beside the
//! rules) and what an admin installs with `[scoring] weights_file` in the rules file.
//!
//! Each urgency decision (`impact`, `stopped`, `prompt`) is a linear score: a bias, a
//! weight per rule feature that fired (by id), and a weight per hashed word n-gram of the
//! mail (unigrams and bigrams, FNV-1a, modulo `ngram_buckets`).
//!
//! Each category (`[category.ID]`) is one class of a softmax: a bias, a weight per
//! category's rule total (`features` keyed by category id: the topic rules' own scores
//! are its strongest inputs), and a weight per n-gram bucket, the mail's n-grams counted
//! once each and divided by the square root of their number (L2-normalised), so that a
//! long mail does not outvote the rules. The highest score wins.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::fold::{Folded, BREAK};

/// Hash buckets for word n-grams unless the weights file says otherwise.
pub const DEFAULT_BUCKETS: u32 = 1 << 14;

/// One linear decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    pub bias: f64,
    /// Rule feature id (or category rule id) → weight.
    pub features: BTreeMap<String, f64>,
    /// N-gram bucket → weight.
    pub ngrams: Ngrams,
}

/// The most n-gram buckets a weights file may have: each decision keeps one weight per
/// bucket in memory (8 MB at this size).
pub const MAX_BUCKETS: u32 = 1 << 20;

/// N-gram bucket → weight, one slot per bucket up to the highest one set: a lookup is an
/// index, and the built-rules cache stores the array as bytes, read back by copying
/// instead of hashing ~10,000 entries per decision. A zero weight is the same as none.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ngrams {
    #[serde(with = "super::flat::packed::f64s")]
    weights: Vec<f64>,
}

impl Ngrams {
    /// The weight of `bucket`, if it has one.
    pub fn get(&self, bucket: u32) -> Option<f64> {
        let w = *self.weights.get(bucket as usize)?;
        (w != 0.0).then_some(w)
    }

    /// Sets the weight of `bucket` (below [`MAX_BUCKETS`]; others are ignored).
    pub fn insert(&mut self, bucket: u32, weight: f64) {
        if bucket >= MAX_BUCKETS {
            return;
        }
        let i = bucket as usize;
        if self.weights.len() <= i {
            if weight == 0.0 {
                return;
            }
            self.weights.resize(i + 1, 0.0);
        }
        if let Some(slot) = self.weights.get_mut(i) {
            *slot = weight;
        }
    }

    /// No bucket was ever given a weight (a fast path: then every lookup misses).
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// The buckets with a weight, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, f64)> + '_ {
        (0u32..)
            .zip(self.weights.iter().copied())
            .filter(|(_, w)| *w != 0.0)
    }
}

impl PartialEq for Ngrams {
    fn eq(&self, other: &Ngrams) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Linear {
    /// The score of a mail whose features `fired` and whose n-gram hashes are `ngrams`.
    pub fn score<'a>(
        &self,
        fired: impl IntoIterator<Item = &'a str>,
        ngrams: &[u32],
        buckets: u32,
    ) -> f64 {
        self.score_with(fired, self.ngram_score(ngrams, buckets))
    }

    /// [`Linear::score`] with the n-grams' part already summed (from an [`NgramTable`]).
    pub fn score_with<'a>(&self, fired: impl IntoIterator<Item = &'a str>, ngram_sum: f64) -> f64 {
        let f: f64 = fired
            .into_iter()
            .filter_map(|id| self.features.get(id))
            .sum();
        self.bias + f + ngram_sum
    }

    /// The n-grams' part of the score.
    pub fn ngram_score(&self, ngrams: &[u32], buckets: u32) -> f64 {
        if self.ngrams.is_empty() || buckets == 0 {
            return 0.0;
        }
        ngrams
            .iter()
            .filter_map(|h| self.ngrams.get(h % buckets))
            .sum()
    }
}

/// The n-gram weights of several decisions, bucket by bucket: the weights of one bucket
/// for every decision sit side by side, so a mail's n-gram is one memory access for all
/// of them (the installed weights' 3 urgency decisions and every category), where one
/// array per decision cost a cache miss per decision.
///
/// Weights files write four decimals, so a table read from one holds whole numbers of
/// ten-thousandths, kept in two bytes each (eight as `f64`): every piped `supportd ingest -`
/// reads the table from the built-rules cache, and its size was a third of that process's
/// set-up. Their sums are exact, divided once at the end: the correctly rounded sum of the
/// file's weights, which [`Linear::ngram_score`] (adding `f64`s one by one) matches to
/// within rounding. Weights off that grid are kept as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredTable")]
pub struct NgramTable {
    /// Decisions per bucket.
    width: usize,
    /// Bucket `b`'s weights at `b * width ..`, up to the highest bucket any decision sets.
    cells: Cells,
}

/// [`NgramTable`] as the built-rules cache stores it, checked when read back.
#[derive(Deserialize)]
struct StoredTable {
    width: usize,
    cells: Cells,
}

impl TryFrom<StoredTable> for NgramTable {
    type Error = String;

    /// A table that decodes but does not hang together (rows cut short, a wide weight that
    /// is no marker's, out of order) is an error: the cache file is then rebuilt.
    fn try_from(t: StoredTable) -> Result<NgramTable, String> {
        let len = t.cells.len();
        let rows_whole = match t.width {
            0 => len == 0,
            w => len.is_multiple_of(w),
        };
        let wide_ok = match &t.cells {
            Cells::Grid { cells, wide } => {
                wide.windows(2).all(|p| p[0].0 < p[1].0)
                    && wide
                        .iter()
                        .all(|(i, _)| cells.get(*i as usize) == Some(&i16::MIN))
            }
            Cells::Exact(_) => true,
        };
        if !rows_whole || !wide_ok {
            return Err("n-gram table of a wrong shape".into());
        }
        Ok(NgramTable {
            width: t.width,
            cells: t.cells,
        })
    }
}

/// Ten-thousandths per unit of weight: the four decimals weights files are written with.
const GRID: f64 = 10_000.0;

/// The largest weight kept in ten-thousandths (±1,677 units; the shipped weights stay
/// below 5): sums of up to 2^29 such weights stay exact in an `i64` and as an `f64`.
const GRID_MAX: f64 = (1 << 24) as f64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Cells {
    /// Every weight in ten-thousandths. `i16::MIN` marks one outside an `i16`, found in
    /// `wide` (cell index → ten-thousandths, sorted by index).
    Grid {
        #[serde(with = "super::flat::packed::i16s")]
        cells: Vec<i16>,
        wide: Vec<(u32, i32)>,
    },
    /// Some weight is off the grid: every weight as it is.
    Exact(#[serde(with = "super::flat::packed::f64s")] Vec<f64>),
}

impl Default for Cells {
    fn default() -> Self {
        Cells::Exact(Vec::new())
    }
}

impl Cells {
    fn len(&self) -> usize {
        match self {
            Cells::Grid { cells, .. } => cells.len(),
            Cells::Exact(w) => w.len(),
        }
    }

    /// `weights` in ten-thousandths when every one is a whole number of them.
    fn on_grid(weights: Vec<f64>) -> Cells {
        let mut cells = Vec::with_capacity(weights.len());
        let mut wide = Vec::new();
        for (i, w) in weights.iter().enumerate() {
            let q = (w * GRID).round();
            let exact = q / GRID == *w && q.abs() <= GRID_MAX;
            let Ok(i) = u32::try_from(i) else {
                return Cells::Exact(weights);
            };
            if !exact {
                return Cells::Exact(weights);
            }
            // In range (checked above): the cast is exact.
            let q = q as i32;
            match i16::try_from(q) {
                Ok(n) if n != i16::MIN => cells.push(n),
                _ => {
                    cells.push(i16::MIN);
                    wide.push((i, q));
                }
            }
        }
        Cells::Grid { cells, wide }
    }
}

impl NgramTable {
    /// Whether this table holds `columns` decisions (or nothing, for none).
    pub(crate) fn fits(&self, columns: usize) -> bool {
        match columns {
            0 => self.cells.len() == 0,
            c => self.width == c,
        }
    }

    /// The table of `columns`, one decision's n-gram weights each, in the order their sums
    /// come back from [`NgramTable::sums`].
    pub fn new(columns: Vec<Ngrams>) -> NgramTable {
        let width = columns.len();
        let rows = columns.iter().map(|n| n.weights.len()).max().unwrap_or(0);
        let mut weights = vec![0.0; rows * width];
        for (c, column) in columns.into_iter().enumerate() {
            for (slot, w) in weights
                .iter_mut()
                .skip(c)
                .step_by(width.max(1))
                .zip(column.weights)
            {
                *slot = w;
            }
        }
        NgramTable {
            width,
            cells: Cells::on_grid(weights),
        }
    }

    /// Each decision's n-gram sum for a mail whose n-gram hashes are `ngrams`, in the
    /// order of the columns the table was made from; all zero without n-gram weights.
    pub fn sums(&self, ngrams: &[u32], buckets: u32) -> Vec<f64> {
        let w = self.width;
        if self.cells.len() == 0 || buckets == 0 {
            return vec![0.0; w];
        }
        // A row past the table (or a product that overflows) is no row: skipped below.
        let rows = ngrams
            .iter()
            .map(|h| ((h % buckets) as usize).saturating_mul(w));
        match &self.cells {
            Cells::Grid { cells, wide } => {
                let mut acc = vec![0_i64; w];
                for start in rows {
                    let Some(row) = cells.get(start..start.saturating_add(w)) else {
                        continue;
                    };
                    for (a, q) in acc.iter_mut().zip(row) {
                        *a += i64::from(*q);
                    }
                    // Rare: a weight outside an `i16`, whose marker was just added.
                    if row.contains(&i16::MIN) {
                        for (c, a) in acc.iter_mut().enumerate() {
                            if row.get(c) != Some(&i16::MIN) {
                                continue;
                            }
                            let at = u32::try_from(start + c).unwrap_or(u32::MAX);
                            let v = wide
                                .binary_search_by_key(&at, |(i, _)| *i)
                                .ok()
                                .and_then(|k| wide.get(k))
                                .map_or(0, |(_, v)| i64::from(*v));
                            *a += v - i64::from(i16::MIN);
                        }
                    }
                }
                // Whole numbers below 2^53 (each cell at most 2^24, see GRID_MAX): exact as
                // `f64`, one rounding in the division.
                acc.into_iter().map(|a| a as f64 / GRID).collect()
            }
            Cells::Exact(weights) => {
                let mut sums = vec![0.0; w];
                for start in rows {
                    if let Some(row) = weights.get(start..start.saturating_add(w)) {
                        // A bucket a decision has no weight for holds 0.0, which adds nothing.
                        for (s, x) in sums.iter_mut().zip(row) {
                            *s += x;
                        }
                    }
                }
                sums
            }
        }
    }
}

/// A complete set of learned weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub ngram_buckets: u32,
    /// Level 1–2 (positive) or 3–4.
    pub impact: Linear,
    /// Level 1 (positive) or 2, for level 1–2 mail.
    pub stopped: Linear,
    /// Level 3 (positive) or 4, for level 3–4 mail.
    pub prompt: Linear,
    /// Category id → its score; the highest wins. Empty: the rules' category scoring.
    pub category: BTreeMap<String, Linear>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLinear {
    bias: f64,
    #[serde(default)]
    features: BTreeMap<String, f64>,
    #[serde(default)]
    ngrams: FileNgrams,
}

/// A decision's n-gram weights: `"BUCKET:WEIGHT BUCKET:WEIGHT …"` in one string, on one line
/// (what `tune` writes), or a table `BUCKET = WEIGHT` (files of earlier versions). Read as
/// a table, the ~29,000 weights of the shipped file cost ~200 M instructions (~40 ms) in
/// every process that loads them; as one-line strings ~24 M (a string over several lines
/// costs the TOML lexer ten times more than one line).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum FileNgrams {
    Packed(String),
    Table(BTreeMap<String, f64>),
}

impl Default for FileNgrams {
    fn default() -> Self {
        FileNgrams::Packed(String::new())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    ngram_buckets: u32,
    impact: FileLinear,
    stopped: FileLinear,
    prompt: FileLinear,
    #[serde(default)]
    category: BTreeMap<String, FileLinear>,
}

fn to_file(l: &Linear) -> FileLinear {
    let ngrams: Vec<(u32, f64)> = l.ngrams.iter().collect();
    FileLinear {
        bias: round(l.bias),
        features: l
            .features
            .iter()
            .map(|(k, v)| (k.clone(), round(*v)))
            .collect(),
        ngrams: FileNgrams::Packed(packed(&ngrams)),
    }
}

/// `ngrams` (sorted by bucket) as `BUCKET:WEIGHT` pairs separated by spaces.
fn packed(ngrams: &[(u32, f64)]) -> String {
    let pairs: Vec<String> = ngrams
        .iter()
        .map(|(k, v)| format!("{k}:{}", round(*v)))
        .collect();
    pairs.join(" ")
}

fn round(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

fn from_file(f: FileLinear, what: &str, buckets: u32) -> Result<Linear, String> {
    let bucket = |k: &str| match k.parse::<u32>() {
        Ok(b) if b < buckets => Ok(b),
        Ok(_) => Err(format!(
            "{what}.ngrams: bucket `{k}` is not below ngram_buckets ({buckets})"
        )),
        Err(_) => Err(format!("{what}.ngrams: `{k}` is not a bucket number")),
    };
    let mut ngrams = Ngrams::default();
    match f.ngrams {
        FileNgrams::Table(table) => {
            for (k, v) in table {
                if !v.is_finite() {
                    return Err(format!(
                        "{what}.ngrams: bucket `{k}` has a weight that is not finite"
                    ));
                }
                ngrams.insert(bucket(&k)?, v);
            }
        }
        FileNgrams::Packed(text) => {
            for pair in text.split_ascii_whitespace() {
                let parsed = pair.split_once(':').and_then(|(k, v)| {
                    let w = v.parse::<f64>().ok().filter(|w| w.is_finite())?;
                    Some((k, w))
                });
                let Some((k, w)) = parsed else {
                    return Err(format!(
                        "{what}.ngrams: `{pair}` is not BUCKET:WEIGHT (a bucket number and a finite weight)"
                    ));
                };
                ngrams.insert(bucket(k)?, w);
            }
        }
    }
    // A NaN or infinite score would decide silently (NaN compares false with everything).
    if !f.bias.is_finite() {
        return Err(format!("{what}.bias is not a finite number"));
    }
    if let Some((k, _)) = f.features.iter().find(|(_, w)| !w.is_finite()) {
        return Err(format!(
            "{what}.features: `{k}` has a weight that is not finite"
        ));
    }
    Ok(Linear {
        bias: f.bias,
        features: f.features,
        ngrams,
    })
}

impl Weights {
    /// Reads a weights file; the error names the line.
    pub fn from_toml(text: &str, origin: &str) -> Result<Weights, String> {
        let f: File = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        if f.ngram_buckets == 0 || f.ngram_buckets > MAX_BUCKETS {
            return Err(format!(
                "{origin}: ngram_buckets must be from 1 to {MAX_BUCKETS}"
            ));
        }
        let buckets = f.ngram_buckets;
        let mut category = BTreeMap::new();
        for (id, l) in f.category {
            let l = from_file(l, &format!("category.{id}"), buckets)
                .map_err(|e| format!("{origin}: {e}"))?;
            category.insert(id, l);
        }
        let err = |e: String| format!("{origin}: {e}");
        Ok(Weights {
            ngram_buckets: f.ngram_buckets,
            impact: from_file(f.impact, "impact", buckets).map_err(err)?,
            stopped: from_file(f.stopped, "stopped", buckets).map_err(err)?,
            prompt: from_file(f.prompt, "prompt", buckets).map_err(err)?,
            category,
        })
    }

    /// The file text, after `header` (comment lines).
    pub fn to_toml(&self, header: &str) -> Result<String, String> {
        let f = File {
            ngram_buckets: self.ngram_buckets,
            impact: to_file(&self.impact),
            stopped: to_file(&self.stopped),
            prompt: to_file(&self.prompt),
            category: self
                .category
                .iter()
                .map(|(k, v)| (k.clone(), to_file(v)))
                .collect(),
        };
        let body = toml::to_string(&f).map_err(|e| e.to_string())?;
        Ok(format!("{header}{body}"))
    }
}

/// An n-gram's hash is FNV-1a (32 bits) of its words with a space between each two: stable
/// across versions and platforms (stored n-grams stay valid). This is its starting state.
const FNV_BASIS: u32 = 0x811c_9dc5;

/// FNV-1a from the state `h` on through `bytes`.
fn fnv1a_more(mut h: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Hashes of the word unigrams and bigrams (not across a sentence break) of the texts,
/// sorted, without duplicates.
pub fn ngrams(texts: &[&Folded]) -> Vec<u32> {
    // A word and a pair for about every six bytes of folded text: one allocation, mostly.
    let mut out = Vec::with_capacity(texts.iter().map(|t| t.text.len() / 3).sum());
    for t in texts {
        // The state after the previous word and a space: a pair's hash goes on from it
        // (the hash of "p w" as one text) instead of hashing the previous word again.
        let mut prev: Option<u32> = None;
        for w in t.text.split(' ').filter(|w| !w.is_empty()) {
            if w.as_bytes() == [BREAK] {
                prev = None;
                continue;
            }
            let word = fnv1a_more(FNV_BASIS, w.as_bytes());
            out.push(word);
            if let Some(p) = prev {
                out.push(fnv1a_more(p, w.as_bytes()));
            }
            prev = Some(fnv1a_more(word, b" "));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triage::fold::fold;

    /// The n-gram hash as written down: the parts as one text, a space between each two.
    fn fnv1a(parts: &[&str]) -> u32 {
        let mut h = FNV_BASIS;
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                h = fnv1a_more(h, b" ");
            }
            h = fnv1a_more(h, p.as_bytes());
        }
        h
    }

    #[test]
    fn ngrams_are_stable_and_stop_at_breaks() {
        let a = ngrams(&[&fold("Pages down. Call", false)]);
        // pages, down, "pages down", call — no "down call".
        assert_eq!(a.len(), 4);
        assert!(a.contains(&fnv1a(&["pages", "down"])));
        assert!(!a.contains(&fnv1a(&["down", "call"])));
        assert_eq!(fnv1a(&["a"]), 0xe40c292c);
        // Pairs hashed as before (the stored weights depend on it).
        let b = ngrams(&[&fold("Pages down", false)]);
        let mut want = vec![
            fnv1a(&["pages"]),
            fnv1a(&["down"]),
            fnv1a(&["pages", "down"]),
        ];
        want.sort_unstable();
        assert_eq!(b, want);
        assert_eq!(fnv1a(&["pages", "down"]), fnv1a(&["pages down"]));
        // FNV-1a of "pages down", computed apart from this code.
        assert!(b.contains(&0xc187_35dd));
    }

    /// Three decisions of different lengths (the longest sets bucket 40 of 64), one empty,
    /// with the weights `weight` gives their buckets.
    fn decisions(weight: impl Fn(u32) -> f64) -> [Linear; 3] {
        let mut a = Linear::default();
        let mut b = Linear::default();
        for k in [1u32, 5, 9, 33] {
            a.ngrams.insert(k, weight(k));
        }
        for k in [5u32, 9, 40] {
            b.ngrams.insert(k, -weight(k + 1));
        }
        [a, b, Linear::default()]
    }

    /// The table of `d` against each decision's own sum, within `tolerance`.
    fn table_sums_as_decisions(d: [Linear; 3], tolerance: f64) -> NgramTable {
        let table = NgramTable::new(d.iter().map(|l| l.ngrams.clone()).collect());
        // Hashes in range, folded by the bucket count onto set buckets, and past every row.
        let hashes = [1u32, 5, 9, 40, 64 + 33, 128 + 5, 50, 63, 7];
        let sums = table.sums(&hashes, 64);
        for (i, l) in d.iter().enumerate() {
            let own = l.ngram_score(&hashes, 64);
            assert!(
                (sums[i] - own).abs() <= tolerance,
                "decision {i}: {} / {own}",
                sums[i]
            );
        }
        assert_eq!(table.sums(&hashes, 0), vec![0.0; 3]);
        table
    }

    #[test]
    fn a_table_sums_as_each_decision_does() {
        // Four decimals, as weights files write them: two bytes a weight, with the few that
        // do not fit (and the marker's own value) kept aside; sums exact.
        let on_grid = table_sums_as_decisions(
            decisions(|k| match k {
                9 => 4.2316,
                33 => -3.2768,
                _ => (f64::from(k) * 137.0 - 2500.0) / GRID,
            }),
            1e-12,
        );
        match &on_grid.cells {
            Cells::Grid { wide, .. } => assert_eq!(wide.len(), 2, "{wide:?}"),
            Cells::Exact(_) => panic!("four-decimal weights are kept in ten-thousandths"),
        }
        // Off the grid (more decimals): kept as they are, and summed as each decision does.
        let exact = table_sums_as_decisions(decisions(|k| f64::from(k) / 7.0 - 1.3), 0.0);
        assert!(matches!(exact.cells, Cells::Exact(_)));
        assert_eq!(NgramTable::default().sums(&[1, 2], 64), Vec::<f64>::new());
        // As the built-rules cache stores it, and back.
        let bytes = postcard::to_allocvec(&on_grid).unwrap_or_default();
        let back: NgramTable = postcard::from_bytes(&bytes).unwrap_or_default();
        assert_eq!(back, on_grid);
        let bytes = postcard::to_allocvec(&exact).unwrap_or_default();
        let back: NgramTable = postcard::from_bytes(&bytes).unwrap_or_default();
        assert_eq!(back, exact);
        // A table that decodes but does not hang together is refused (the cache is rebuilt).
        let cut = NgramTable {
            width: 3,
            cells: Cells::Exact(vec![0.5; 7]),
        };
        let stray = NgramTable {
            width: 1,
            cells: Cells::Grid {
                cells: vec![1, 2],
                wide: vec![(1, 40_000)],
            },
        };
        for t in [cut, stray] {
            let bytes = postcard::to_allocvec(&t).unwrap_or_default();
            assert!(postcard::from_bytes::<NgramTable>(&bytes).is_err(), "{t:?}");
        }
    }

    #[test]
    fn round_trip_and_errors() -> Result<(), String> {
        let mut w = Weights {
            ngram_buckets: 64,
            impact: Linear {
                bias: -1.5,
                ..Linear::default()
            },
            stopped: Linear::default(),
            prompt: Linear::default(),
            category: BTreeMap::new(),
        };
        w.impact.features.insert("scope.all".into(), 2.25);
        w.impact.ngrams.insert(7, 0.5);
        w.category.insert(
            "billing".into(),
            Linear {
                bias: 0.1,
                ..Linear::default()
            },
        );
        let text = w.to_toml("# learned\n")?;
        assert!(text.starts_with("# learned\n"));
        assert_eq!(Weights::from_toml(&text, "w.toml")?, w);
        assert_eq!(
            w.impact.score(["scope.all", "x"], &[7 + 64, 3], 64),
            -1.5 + 2.25 + 0.5
        );
        let bad = Weights::from_toml(
            "ngram_buckets = 4\n[impact]\nbias = 1\nbogus = 2\n",
            "w.toml",
        );
        assert!(bad.is_err_and(|e| e.contains("w.toml") && e.contains("bogus")));
        Ok(())
    }

    #[test]
    fn ngrams_are_written_packed_and_read_packed_or_as_a_table() -> Result<(), String> {
        let mut w = Weights {
            ngram_buckets: 64,
            impact: Linear::default(),
            stopped: Linear::default(),
            prompt: Linear::default(),
            category: BTreeMap::new(),
        };
        for b in 0..20u32 {
            w.impact.ngrams.insert(b, f64::from(b) / 8.0 - 1.0);
        }
        w.prompt.ngrams.insert(63, -0.0625);
        let text = w.to_toml("")?;
        assert!(text.contains("0:-1 1:-0.875"), "{text}");
        assert_eq!(Weights::from_toml(&text, "w.toml")?, w);

        let table = "ngram_buckets = 64
[impact]
bias = 0
[impact.ngrams]
3 = 0.5
                     [stopped]
bias = 0
[prompt]
bias = 0
";
        let read = Weights::from_toml(table, "old.toml")?;
        assert_eq!(read.impact.ngrams.get(3), Some(0.5));
        // A bucket at or past ngram_buckets is refused, and so are too many buckets.
        let past = table.replace("3 = 0.5", "64 = 0.5");
        let e = Weights::from_toml(&past, "old.toml").unwrap_err();
        assert!(e.contains("not below ngram_buckets (64)"), "{e}");
        let huge = table.replace("ngram_buckets = 64", "ngram_buckets = 4000000000");
        let e = Weights::from_toml(&huge, "old.toml").unwrap_err();
        assert!(e.contains("ngram_buckets must be from 1 to"), "{e}");

        for bad in ["\"3\"", "\"x:1\"", "\"3:nan\"", "\"3:1:2\"", "\"3:\""] {
            let text = format!(
                "ngram_buckets = 64
[impact]
bias = 0
ngrams = {bad}
[stopped]
bias = 0
                 [prompt]
bias = 0
"
            );
            let e = Weights::from_toml(&text, "w.toml").expect_err(bad);
            assert!(
                e.contains("w.toml") && e.contains("impact.ngrams"),
                "{bad}: {e}"
            );
        }
        Ok(())
    }
}
