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

/// `(node, word)` → node. Keys are `node << 32 | word`; `EMPTY` marks a free slot.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct EdgeTable {
    #[serde(with = "packed::u64s")]
    keys: Vec<u64>,
    #[serde(with = "packed::u32s")]
    values: Vec<u32>,
    len: usize,
}

const EMPTY: u64 = u64::MAX;

impl EdgeTable {
    fn key(node: u32, word: u32) -> u64 {
        (u64::from(node) << 32) | u64::from(word)
    }

    pub(crate) fn get(&self, node: u32, word: u32) -> Option<u32> {
        let mask = self.keys.len().checked_sub(1)?;
        let key = EdgeTable::key(node, word);
        let mut i = slot(hash_u64(key), mask);
        // At most one lap: a table read back from a damaged file may have no free slot.
        for _ in 0..self.keys.len() {
            match self.keys.get(i) {
                Some(&k) if k == key => return self.values.get(i).copied(),
                Some(&EMPTY) | None => return None,
                Some(_) => i = (i + 1) & mask,
            }
        }
        None
    }

    /// Adds an edge that is not there yet.
    pub(crate) fn insert(&mut self, node: u32, word: u32, to: u32) {
        if !fits(self.len + 1, self.keys.len()) {
            self.grow(capacity_for(self.len + 1));
        }
        self.put(EdgeTable::key(node, word), to);
        self.len += 1;
    }

    /// Called with room to spare (`insert` grows first), so a free slot exists.
    fn put(&mut self, key: u64, value: u32) {
        let mask = self.keys.len().saturating_sub(1);
        let mut i = slot(hash_u64(key), mask);
        while self.keys.get(i).is_some_and(|&k| k != EMPTY) {
            i = (i + 1) & mask;
        }
        if let (Some(k), Some(v)) = (self.keys.get_mut(i), self.values.get_mut(i)) {
            *k = key;
            *v = value;
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
        let mask = self.slots.len().checked_sub(1)?;
        let h = hash_str(w);
        let tag = h & 0xffff_ffff;
        let mut i = slot(h, mask);
        // At most one lap, as in `EdgeTable::get`.
        for _ in 0..self.slots.len() {
            match self.slots.get(i).copied() {
                Some(0) | None => return None,
                Some(s) if s >> 32 == tag => {
                    let id = (s & 0xffff_ffff) as u32;
                    if let Some(id) = id.checked_sub(1) {
                        if self.word(id as usize) == w {
                            return Some(id);
                        }
                    }
                    i = (i + 1) & mask;
                }
                Some(_) => i = (i + 1) & mask,
            }
        }
        None
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
        let count = self.len() as u32;
        // The slot holds the id + 1: the new word's id is count - 1.
        self.put(w, count);
        count - 1
    }

    /// Puts `w` with `id_plus_one` in a free slot. Called with room to spare (`intern`
    /// grows first), so a free slot exists.
    fn put(&mut self, w: &str, id_plus_one: u32) {
        let mask = self.slots.len().saturating_sub(1);
        let h = hash_str(w);
        let mut i = slot(h, mask);
        while self.slots.get(i).is_some_and(|&s| s != 0) {
            i = (i + 1) & mask;
        }
        if let Some(s) = self.slots.get_mut(i) {
            *s = ((h & 0xffff_ffff) << 32) | u64::from(id_plus_one);
        }
    }

    fn grow(&mut self, capacity: usize) {
        self.slots = vec![0; capacity];
        for id in 0..self.len() {
            let w = self.word(id).to_owned();
            self.put(&w, id as u32 + 1);
        }
    }
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
