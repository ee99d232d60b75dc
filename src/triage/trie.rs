//! Phrases as a trie of words: every pattern part's alternatives are inserted word by word
//! (no expansion into strings), and a text is matched by walking the trie from each word.
//! Building it costs a hash insert per trie node: ~10 M instructions of the ~30 M set-up
//! for the shipped file, which a `supportd ingest -` process, triaging one mail, pays.

use std::collections::HashMap;

use super::flat::{packed, EdgeTable, WordTable};

/// foldhash's fast, fixed-seed hasher, for the small maps of prefixes (the words and the
/// edges are [`WordTable`] and [`EdgeTable`]).
type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// Bits in the filter of root prefixes' first three bytes.
const HEADS: usize = 1 << 14;

fn head(a: u8, b: u8, c: u8) -> usize {
    (usize::from(a) * 961 + usize::from(b) * 31 + usize::from(c)) % HEADS
}

/// A word of a phrase: a known word, or a prefix (`deactivat*`, only last).
enum Word {
    Id(u32),
    Prefix(Box<str>),
}

/// Words → parts that end there. Serialisable for the built-rules cache
/// ([`crate::rules_cache`]), which saves a `supportd ingest -` process the building.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Trie {
    words: WordTable,
    /// (node, word) → node; node 0 is the root.
    edges: EdgeTable,
    /// Word → the node it leads to from the root (0: none): the first step of every walk.
    #[serde(with = "packed::u32s")]
    root: Vec<u32>,
    /// Prefix words (`deactivat*`) leaving the root: prefix → end nodes.
    root_prefixes: Map<Box<str>, Vec<u32>>,
    /// The lengths of those prefixes, shortest first.
    prefix_lengths: Vec<usize>,
    /// The first three bytes of each root prefix: a word starting otherwise needs no lookup.
    prefix_heads: Vec<u64>,
    /// Some word has an upper-case letter (the case-sensitive trie): a word without one
    /// cannot start a phrase.
    upper: bool,
    /// Prefix words deeper in a phrase: node → (prefix, end node).
    inner_prefixes: Map<u32, Vec<(Box<str>, u32)>>,
    /// Node → the first entry of its list of parts whose phrase ends there, in
    /// `end_parts` (`NONE`: no phrase ends there). One flat list, not a vector per node:
    /// the shipped rules have ~15,000 end nodes, and an allocation each (and a free each at
    /// exit) was a tenth of the set-up.
    #[serde(with = "packed::u32s")]
    ends: Vec<u32>,
    /// `(part, next entry of the same node or NONE)`.
    #[serde(with = "packed::u32_pairs")]
    end_parts: Vec<(u32, u32)>,
}

const NONE: u32 = u32::MAX;

impl Trie {
    fn node(&mut self) -> u32 {
        self.ends.push(NONE);
        (self.ends.len() - 1) as u32
    }

    fn word(&mut self, w: &str) -> u32 {
        self.upper |= w.bytes().any(|b| b.is_ascii_uppercase());
        self.words.intern(w)
    }

    /// Follows (or adds) the edge for `word` from `from`.
    fn step(&mut self, from: u32, word: &Word) -> u32 {
        let prefix = match word {
            Word::Id(w) => {
                if let Some(n) = self.edges.get(from, *w) {
                    return n;
                }
                let n = self.node();
                self.edges.insert(from, *w, n);
                if from == 0 {
                    let i = *w as usize;
                    if self.root.len() <= i {
                        self.root.resize(i + 1, 0);
                    }
                    self.root[i] = n;
                }
                return n;
            }
            Word::Prefix(p) => &**p,
        };
        {
            let existing = if from == 0 {
                self.root_prefixes
                    .get(prefix)
                    .and_then(|v| v.first().copied())
            } else {
                self.inner_prefixes
                    .get(&from)
                    .and_then(|v| v.iter().find(|(p, _)| &**p == prefix).map(|x| x.1))
            };
            if let Some(n) = existing {
                return n;
            }
            let n = self.node();
            if from == 0 {
                let b = prefix.as_bytes();
                if let [a, b, c, ..] = b {
                    let h = head(*a, *b, *c);
                    if self.prefix_heads.is_empty() {
                        self.prefix_heads = vec![0; HEADS / 64];
                    }
                    if let Some(w) = self.prefix_heads.get_mut(h / 64) {
                        *w |= 1 << (h % 64);
                    }
                }
                self.root_prefixes.entry(prefix.into()).or_default().push(n);
                if !self.prefix_lengths.contains(&prefix.len()) {
                    self.prefix_lengths.push(prefix.len());
                    self.prefix_lengths.sort_unstable();
                }
            } else {
                self.inner_prefixes
                    .entry(from)
                    .or_default()
                    .push((prefix.into(), n));
            }
            n
        }
    }

    /// Inserts every path through `elements` (each a list of alternatives: words separated
    /// by spaces, `""` for "nothing") as phrases of `part`. Returns how many paths there
    /// were, or an error past `limit`.
    pub(crate) fn insert(
        &mut self,
        elements: &[Vec<String>],
        part: u32,
        limit: usize,
    ) -> Result<usize, String> {
        if self.ends.is_empty() {
            // The tables grow as needed: reserving room for the shipped rules up front made
            // the (nearly empty) case-kept trie as large as the folded one in the cache file.
            self.node();
        }
        let mut nodes: Vec<u32> = vec![0];
        let mut paths = 1usize;
        for alternatives in elements {
            paths = paths.saturating_mul(alternatives.len().max(1));
            if paths > limit {
                return Err(format!("expands to more than {limit} phrases"));
            }
            // Each alternative's words, looked up once for all the nodes.
            let alternatives: Vec<Vec<Word>> = alternatives
                .iter()
                .map(|alt| {
                    alt.split(' ')
                        .filter(|w| !w.is_empty())
                        .map(|w| match w.strip_suffix('*') {
                            Some(p) => Word::Prefix(p.into()),
                            None => Word::Id(self.word(w)),
                        })
                        .collect()
                })
                .collect();
            let mut next = Vec::with_capacity(nodes.len() * alternatives.len());
            for &n in &nodes {
                for alt in &alternatives {
                    let mut m = n;
                    for w in alt {
                        m = self.step(m, w);
                    }
                    next.push(m);
                }
            }
            next.sort_unstable();
            next.dedup();
            nodes = next;
        }
        for n in nodes {
            if n == 0 {
                continue;
            }
            // The parts of a node's list are added part by part: the head is the latest.
            if let Some(head) = self.ends.get_mut(n as usize) {
                let latest = self.end_parts.get(*head as usize).map(|e| e.0);
                if latest != Some(part) {
                    self.end_parts.push((part, *head));
                    *head = (self.end_parts.len() - 1) as u32;
                }
            }
        }
        Ok(paths)
    }

    /// Calls `f` with each part whose phrase ends at `node`.
    fn parts_ending(&self, node: u32, mut f: impl FnMut(u32)) {
        let mut at = self.ends.get(node as usize).copied().unwrap_or(NONE);
        while let Some(&(part, next)) = self.end_parts.get(at as usize) {
            f(part);
            at = next;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ends.len() <= 1
    }

    /// `(part, start, end)` of every phrase in `text` (folded: ` w w | w `). A phrase spans
    /// from the space before its first word to the space after its last one.
    pub(crate) fn scan(&self, text: &str, out: &mut Vec<(u32, u32, u32)>) {
        if self.is_empty() {
            return;
        }
        // (start, end) of each word; breaks are kept as words that match nothing.
        let mut tokens: Vec<(u32, u32, Option<u32>)> = Vec::with_capacity(text.len() / 5);
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b' ' {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && bytes[i] != b' ' {
                i += 1;
            }
            let w = text.get(start..i).unwrap_or("");
            let id = if self.upper && !w.bytes().any(|b| b.is_ascii_uppercase()) {
                None
            } else {
                self.words.get(w)
            };
            tokens.push((start as u32, i as u32, id));
        }
        for (k, &(start, end, _)) in tokens.iter().enumerate() {
            if self.upper {
                let word = bytes.get(start as usize..end as usize).unwrap_or(&[]);
                if !word.iter().any(u8::is_ascii_uppercase) {
                    continue;
                }
            }
            let first = start.saturating_sub(1);
            let mut node = 0u32;
            for &(s, e, id) in &tokens[k..] {
                let word = text.get(s as usize..e as usize).unwrap_or("");
                self.prefix_hits(node, word, first, e, out);
                let next = match id {
                    Some(w) if node == 0 => self.root.get(w as usize).copied().filter(|&n| n != 0),
                    Some(w) => self.edges.get(node, w),
                    None => None,
                };
                match next {
                    Some(next) => {
                        node = next;
                        self.parts_ending(next, |part| out.push((part, first, e + 1)));
                    }
                    None => break,
                }
            }
        }
    }

    fn prefix_hits(
        &self,
        node: u32,
        word: &str,
        first: u32,
        end: u32,
        out: &mut Vec<(u32, u32, u32)>,
    ) {
        let mut emit = |n: u32| self.parts_ending(n, |part| out.push((part, first, end + 1)));
        if node == 0 {
            let h = match word.as_bytes() {
                [a, b, c, ..] => head(*a, *b, *c),
                _ => return,
            };
            if self
                .prefix_heads
                .get(h / 64)
                .is_none_or(|w| w & (1 << (h % 64)) == 0)
            {
                return;
            }
            for &len in &self.prefix_lengths {
                if len > word.len() {
                    break;
                }
                if let Some(ends) = word.get(..len).and_then(|p| self.root_prefixes.get(p)) {
                    ends.iter().for_each(|&n| emit(n));
                }
            }
        } else if let Some(list) = self.inner_prefixes.get(&node) {
            for (p, n) in list {
                if word.starts_with(&**p) {
                    emit(*n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alts(list: &[&[&str]]) -> Vec<Vec<String>> {
        list.iter()
            .map(|a| a.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn paths_words_and_prefixes() -> Result<(), String> {
        let mut t = Trie::default();
        assert_eq!(
            t.insert(
                &alts(&[&["cant", "unable to"], &["log", "sign"], &["in"]]),
                7,
                100
            )?,
            4
        );
        t.insert(&alts(&[&["deactivat*"]]), 8, 100)?;
        t.insert(&alts(&[&["the", ""], &["on call"]]), 9, 100)?;
        let mut out = Vec::new();
        let text = " i cant sign in | deactivated on call ";
        t.scan(text, &mut out);
        out.sort_unstable();
        let spans: Vec<(u32, &str)> = out
            .iter()
            .map(|&(p, s, e)| (p, text.get(s as usize..e as usize).unwrap_or("?")))
            .collect();
        assert_eq!(
            spans,
            vec![
                (7, " cant sign in "),
                (8, " deactivated "),
                (9, " on call ")
            ]
        );
        assert!(t
            .insert(&alts(&[&["a", "b", "c"], &["a", "b", "c"]]), 1, 8)
            .is_err());
        Ok(())
    }
}
