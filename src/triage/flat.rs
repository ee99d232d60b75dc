//! The phrase trie's two large maps as open-addressing tables over plain arrays. Built once
//! per rules file and read for every word of every mail; kept this way so that the
//! built-rules cache ([`crate::rules_cache`]) stores them as byte strings and a `supportd
//! ingest -` process reads them back by copying, where a `HashMap` was rebuilt entry by
//! entry (~20,000 edges and ~5,000 words: ~6 M instructions in every piped process).

use std::hash::BuildHasher;

use serde::{Deserialize, Serialize};

/// The hash of a word: foldhash with its fixed seed (the same in every process of one build,
/// which is all the cache needs: it is keyed by the build).
fn hash_str(s: &str) -> u64 {
    foldhash::fast::FixedState::default().hash_one(s)
}

/// Spreads an integer key over the table (Fibonacci hashing).
fn hash_u64(k: u64) -> u64 {
    k.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A slot index from a hash, for a table of `mask + 1` slots (a power of two): the hash's
/// top bits, where a multiplicative hash mixes best.
fn slot(h: u64, mask: usize) -> usize {
    let bits = mask.count_ones();
    if bits == 0 {
        return 0;
    }
    (h >> (64 - bits)) as usize & mask
}

/// Linear probing over a table of `slots` slots (a power of two) from `h`'s slot: the first
/// slot where `stop` holds (a match, or a free slot). At most one lap: a table read back
/// from a damaged file may have no free slot.
fn probe(h: u64, slots: usize, mut stop: impl FnMut(usize) -> bool) -> Option<usize> {
    let mask = slots.checked_sub(1)?;
    let mut i = slot(h, mask);
    for _ in 0..slots {
        if stop(i) {
            return Some(i);
        }
        i = (i + 1) & mask;
    }
    None
}

/// The smallest power of two holding `n` entries at most half full: most lookups of a
/// text's words miss (a word that starts or continues no phrase), and a miss in a linear
/// probe costs ~2.5 probes at half load, ~8.5 at three quarters.
fn capacity_for(n: usize) -> usize {
    (n.max(4) * 2).next_power_of_two()
}

/// Whether `n` entries fit in `slots` at most half full.
fn fits(n: usize, slots: usize) -> bool {
    n * 2 <= slots
}

/// `(node, word)` → node: the trie's edges. Built in an open-addressing table
/// ([`OpenEdges`]); stored (the built-rules cache) and read back as each node's edges sorted
/// by word ([`SortedEdges`]), a third of the table's bytes: a piped `supportd ingest -`
/// reads them in every process. Both answer lookups.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(into = "SortedEdges", try_from = "SortedEdges")]
pub(crate) enum EdgeTable {
    Open(OpenEdges),
    Sorted(SortedEdges),
}

impl Default for EdgeTable {
    fn default() -> Self {
        EdgeTable::Open(OpenEdges::default())
    }
}

impl EdgeTable {
    pub(crate) fn get(&self, node: u32, word: u32) -> Option<u32> {
        match self {
            EdgeTable::Open(t) => t.get(node, word),
            EdgeTable::Sorted(t) => t.get(node, word),
        }
    }

    /// Adds an edge that is not there yet.
    pub(crate) fn insert(&mut self, node: u32, word: u32, to: u32) {
        if let EdgeTable::Sorted(t) = self {
            // Rules read back from the cache are not built further; this only keeps it correct.
            let mut open = OpenEdges::default();
            for (n, w, to) in t.iter() {
                open.insert(n, w, to);
            }
            *self = EdgeTable::Open(open);
        }
        if let EdgeTable::Open(t) = self {
            t.insert(node, word, to);
        }
    }
}

/// Each node's edges, sorted by word: node `n`'s are at `first[n] .. first[n + 1]` of
/// `words` and `to`. Most nodes have one or two; a lookup is a binary search among them.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct SortedEdges {
    #[serde(with = "packed::u32s")]
    first: Vec<u32>,
    #[serde(with = "packed::u32s")]
    words: Vec<u32>,
    #[serde(with = "packed::u32s")]
    to: Vec<u32>,
}

impl SortedEdges {
    fn get(&self, node: u32, word: u32) -> Option<u32> {
        let start = *self.first.get(node as usize)? as usize;
        let end = *self.first.get(node as usize + 1)? as usize;
        let i = self.words.get(start..end)?.binary_search(&word).ok()?;
        self.to.get(start + i).copied()
    }

    /// Every edge as `(node, word, to)`.
    fn iter(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        self.first.windows(2).enumerate().flat_map(move |(n, w)| {
            // `windows(2)` yields two-element slices: both indexes exist.
            let range = w[0] as usize..w[1] as usize;
            let words = self.words.get(range.clone()).unwrap_or(&[]);
            let to = self.to.get(range).unwrap_or(&[]);
            words.iter().zip(to).map(move |(w, t)| (n as u32, *w, *t))
        })
    }
}

impl From<EdgeTable> for SortedEdges {
    fn from(t: EdgeTable) -> SortedEdges {
        let open = match t {
            EdgeTable::Sorted(s) => return s,
            EdgeTable::Open(o) => o,
        };
        let mut edges: Vec<(u64, u32)> = open
            .keys
            .iter()
            .zip(&open.values)
            .filter(|(k, _)| **k != EMPTY)
            .map(|(k, v)| (*k, *v))
            .collect();
        // By node, then word: the key's high and low halves.
        edges.sort_unstable_by_key(|(k, _)| *k);
        let nodes = edges.last().map_or(0, |(k, _)| (k >> 32) as usize + 1);
        let mut first = Vec::with_capacity(nodes + 1);
        let mut words = Vec::with_capacity(edges.len());
        let mut to = Vec::with_capacity(edges.len());
        for (k, v) in edges {
            let node = (k >> 32) as usize;
            while first.len() <= node {
                first.push(words.len() as u32);
            }
            words.push(k as u32);
            to.push(v);
        }
        first.push(words.len() as u32);
        SortedEdges { first, words, to }
    }
}

impl TryFrom<SortedEdges> for EdgeTable {
    type Error = String;

    /// Edges read back must hang together (offsets in order, ending at the number of
    /// edges, each node's words sorted), or the cache file is rebuilt.
    fn try_from(s: SortedEdges) -> Result<EdgeTable, String> {
        let ordered = s.first.windows(2).all(|p| p[0] <= p[1]);
        let ends = s.first.last().map_or(0, |&l| l as usize);
        let sized =
            ends == s.words.len() && ends == s.to.len() && s.first.first().is_none_or(|&f| f == 0);
        let sorted = s.first.windows(2).all(|p| {
            s.words
                .get(p[0] as usize..p[1] as usize)
                .is_some_and(|ws| ws.windows(2).all(|w| w[0] < w[1]))
        });
        if ordered && sized && sorted {
            Ok(EdgeTable::Sorted(s))
        } else {
            Err("trie edges of a wrong shape".into())
        }
    }
}

/// `(node, word)` → node while the trie is built: open addressing, keys `node << 32 |
/// word`, `EMPTY` marking a free slot.
#[derive(Debug, Default, Clone)]
pub(crate) struct OpenEdges {
    keys: Vec<u64>,
    values: Vec<u32>,
    len: usize,
}

const EMPTY: u64 = u64::MAX;

impl OpenEdges {
    fn key(node: u32, word: u32) -> u64 {
        (u64::from(node) << 32) | u64::from(word)
    }

    pub(crate) fn get(&self, node: u32, word: u32) -> Option<u32> {
        let key = OpenEdges::key(node, word);
        let i = probe(hash_u64(key), self.keys.len(), |i| {
            self.keys.get(i).is_none_or(|&k| k == key || k == EMPTY)
        })?;
        if self.keys.get(i) != Some(&key) {
            return None;
        }
        self.values.get(i).copied()
    }

    /// Adds an edge that is not there yet.
    pub(crate) fn insert(&mut self, node: u32, word: u32, to: u32) {
        if !fits(self.len + 1, self.keys.len()) {
            self.grow(capacity_for(self.len + 1));
        }
        self.put(OpenEdges::key(node, word), to);
        self.len += 1;
    }

    /// Called with room to spare (`insert` grows first), so a free slot exists.
    fn put(&mut self, key: u64, value: u32) {
        let free = probe(hash_u64(key), self.keys.len(), |i| {
            self.keys.get(i) == Some(&EMPTY)
        });
        if let Some(i) = free {
            if let (Some(k), Some(v)) = (self.keys.get_mut(i), self.values.get_mut(i)) {
                *k = key;
                *v = value;
            }
        }
    }

    fn grow(&mut self, capacity: usize) {
        let old_keys = std::mem::replace(&mut self.keys, vec![EMPTY; capacity]);
        let old_values = std::mem::replace(&mut self.values, vec![0; capacity]);
        for (k, v) in old_keys.into_iter().zip(old_values) {
            if k != EMPTY {
                self.put(k, v);
            }
        }
    }
}

/// Word → id (ids are 0, 1, 2… in insertion order). The words live in one string.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct WordTable {
    /// Per slot: the low 32 bits of the word's hash, and its id + 1 (0: free), as
    /// `tag << 32 | id + 1`. Most lookups miss; the tag rejects them without comparing text.
    #[serde(with = "packed::u64s")]
    slots: Vec<u64>,
    /// Per id: where its word ends in `text` (it starts where the previous one ends).
    #[serde(with = "packed::u32s")]
    ends: Vec<u32>,
    text: String,
}

impl WordTable {
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    fn word(&self, id: usize) -> &str {
        let start = match id.checked_sub(1) {
            Some(prev) => self.ends.get(prev).copied().unwrap_or(0) as usize,
            None => 0,
        };
        let end = self.ends.get(id).copied().unwrap_or(0) as usize;
        self.text.get(start..end).unwrap_or("")
    }

    pub(crate) fn get(&self, w: &str) -> Option<u32> {
        let h = hash_str(w);
        let found = |slot: u64| {
            slot >> 32 == tag(h) && id_of(slot).is_some_and(|id| self.word(id as usize) == w)
        };
        let i = probe(h, self.slots.len(), |i| {
            self.slots.get(i).is_none_or(|&s| s == 0 || found(s))
        })?;
        self.slots.get(i).copied().and_then(id_of)
    }

    /// The id of `w`, added if new.
    pub(crate) fn intern(&mut self, w: &str) -> u32 {
        if let Some(id) = self.get(w) {
            return id;
        }
        if !fits(self.len() + 1, self.slots.len()) {
            self.grow(capacity_for(self.len() + 1));
        }
        self.text.push_str(w);
        self.ends.push(self.text.len() as u32);
        let id = self.len() as u32 - 1;
        self.put(hash_str(w), id);
        id
    }

    /// Puts the word with hash `h` and id `id` in a free slot. Called with room to spare
    /// (`intern` grows first), so a free slot exists.
    fn put(&mut self, h: u64, id: u32) {
        let free = probe(h, self.slots.len(), |i| self.slots.get(i) == Some(&0));
        if let Some(s) = free.and_then(|i| self.slots.get_mut(i)) {
            *s = (tag(h) << 32) | (u64::from(id) + 1);
        }
    }

    fn grow(&mut self, capacity: usize) {
        self.slots = vec![0; capacity];
        for id in 0..self.len() {
            self.put(hash_str(self.word(id)), id as u32);
        }
    }
}

/// The part of a word's hash kept in its slot.
fn tag(h: u64) -> u64 {
    h & 0xffff_ffff
}

/// The word id in a slot (which holds it + 1; `None` for a free slot).
fn id_of(slot: u64) -> Option<u32> {
    ((slot & 0xffff_ffff) as u32).checked_sub(1)
}

/// Arrays of numbers as one little-endian byte string each: postcard writes it as it is and
/// lends it back when reading (no copy), where a sequence is decoded number by number.
pub(crate) mod packed {
    use serde::{Deserialize, Deserializer, Serializer};

    macro_rules! packed {
        ($name:ident, $t:ty, $n:literal) => {
            pub(crate) mod $name {
                use super::*;

                pub(crate) fn serialize<S: Serializer>(v: &[$t], s: S) -> Result<S::Ok, S::Error> {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    s.serialize_bytes(&bytes)
                }

                pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
                    d: D,
                ) -> Result<Vec<$t>, D::Error> {
                    // Borrowed from the buffer being read (the cache file's bytes).
                    let bytes = <&[u8]>::deserialize(d)?;
                    if bytes.len() % $n != 0 {
                        return Err(serde::de::Error::custom("packed array of a wrong length"));
                    }
                    Ok(bytes
                        .chunks_exact($n)
                        .map(|c| {
                            let mut a = [0u8; $n];
                            a.copy_from_slice(c);
                            <$t>::from_le_bytes(a)
                        })
                        .collect())
                }
            }
        };
    }

    packed!(u32s, u32, 4);
    packed!(i16s, i16, 2);

    /// `(u32, u32)` pairs, each as one `u64` (first << 32 | second).
    pub(crate) mod u32_pairs {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(v: &[(u32, u32)], s: S) -> Result<S::Ok, S::Error> {
            let joined: Vec<u64> = v
                .iter()
                .map(|(a, b)| (u64::from(*a) << 32) | u64::from(*b))
                .collect();
            super::u64s::serialize(&joined, s)
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<(u32, u32)>, D::Error> {
            let joined = super::u64s::deserialize(d)?;
            Ok(joined
                .into_iter()
                .map(|x| ((x >> 32) as u32, x as u32))
                .collect())
        }
    }
    packed!(u64s, u64, 8);
    packed!(f64s, f64, 8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_and_words_survive_growth_and_a_round_trip() {
        let mut e = EdgeTable::default();
        let mut w = WordTable::default();
        for i in 0..5_000u32 {
            e.insert(i % 97, i, i + 1);
            assert_eq!(w.intern(&format!("w{i}")), i);
        }
        assert_eq!(w.intern("w42"), 42, "a known word keeps its id");
        let bytes = postcard::to_allocvec(&(&e, &w)).unwrap();
        let (e2, w2): (EdgeTable, WordTable) = postcard::from_bytes(&bytes).unwrap();
        for (e, w) in [(&e, &w), (&e2, &w2)] {
            for i in 0..5_000u32 {
                assert_eq!(e.get(i % 97, i), Some(i + 1));
                assert_eq!(w.get(&format!("w{i}")), Some(i));
            }
            assert_eq!(e.get(1, 0), None);
            assert_eq!(w.get("w5000"), None);
            assert_eq!(w.get(""), None);
        }
        assert_eq!(EdgeTable::default().get(0, 0), None);
        assert_eq!(WordTable::default().get("x"), None);
        // Read back, the edges are sorted by node and word (a third of the bytes); a node
        // past the last has none, and an edge added after still finds the others.
        assert!(matches!(e2, EdgeTable::Sorted(_)));
        assert!(bytes.len() < postcard::to_allocvec(&w).unwrap().len() + 5_000 * 12 + 200);
        assert_eq!(e2.get(500, 3), None);
        let mut e3 = e2.clone();
        e3.insert(500, 3, 7);
        assert_eq!((e3.get(500, 3), e3.get(96, 96)), (Some(7), Some(97)));
    }

    #[test]
    fn sorted_edges_skip_nodes_without_edges() {
        let mut e = EdgeTable::default();
        for (node, word, to) in [(3, 9, 30), (3, 2, 31), (10, 4, 40)] {
            e.insert(node, word, to);
        }
        let bytes = postcard::to_allocvec(&e).unwrap();
        let back: EdgeTable = postcard::from_bytes(&bytes).unwrap();
        assert!(matches!(back, EdgeTable::Sorted(_)));
        for t in [&e, &back] {
            assert_eq!(
                (t.get(3, 2), t.get(3, 9), t.get(10, 4)),
                (Some(31), Some(30), Some(40))
            );
            for (node, word) in [(0, 2), (1, 9), (2, 4), (3, 4), (9, 4), (11, 4)] {
                assert_eq!(t.get(node, word), None, "{node} {word}");
            }
        }
    }

    #[test]
    fn edges_of_a_wrong_shape_do_not_decode() {
        // Offsets out of order, past the edges, a node's words unsorted, not starting at 0.
        let bad = [
            (vec![0, 2, 1], vec![1, 2]),
            (vec![0, 3], vec![1, 2]),
            (vec![0, 2], vec![2, 1]),
            (vec![1, 2], vec![1, 2]),
        ];
        for (first, words) in bad {
            let s = SortedEdges {
                first,
                words,
                to: vec![5, 6],
            };
            let bytes = postcard::to_allocvec(&s).unwrap();
            assert!(postcard::from_bytes::<EdgeTable>(&bytes).is_err(), "{s:?}");
        }
    }

    #[test]
    fn damaged_sorted_edges_find_nothing_rather_than_panic() {
        let t = EdgeTable::Sorted(SortedEdges {
            first: vec![0, 5, 1],
            words: vec![1],
            to: vec![],
        });
        assert_eq!((t.get(0, 1), t.get(1, 1), t.get(9, 1)), (None, None, None));
    }

    #[test]
    fn a_damaged_array_is_an_error_not_a_table() {
        let mut w = WordTable::default();
        w.intern("abc");
        let mut bytes = postcard::to_allocvec(&w).unwrap();
        // The first array's length (slots, 8 × 8 bytes) off by one byte.
        bytes[0] -= 1;
        assert!(postcard::from_bytes::<WordTable>(&bytes).is_err());
    }
}
