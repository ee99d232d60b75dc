//! The phrase language of `config/triage.toml`, and finding phrases in a folded text.
//!
//! A pattern is written in plain words and matched on whole words of the folded text (see
//! [`super::fold`]), so it is written once for every case, accent and punctuation:
//!
//! | syntax | meaning | example |
//! | --- | --- | --- |
//! | `word word` | these words in this order | `can't log in` |
//! | `(a\|b c\|)` | one of the alternatives (an empty one makes it optional) | `(can't\|unable to) (log\|sign) in` |
//! | `(a\|b)?` | the same, optional | `(the)? on call` |
//! | `word?` | the word with or without its last letter | `needs?` (need, needs) |
//! | `word*` | a word starting so (only at the end of a phrase) | `deactivat*` |
//! | `#`, `##` | any number; a number of 10 or more | `since # (am\|pm)`, `## nurses` |
//! | `a .. b`, `a ..3 b` | `b` after `a` within 6 (or 3) words, in the same sentence | `none of .. can't` |
//! | `=WORD` (first character) | case-sensitive (accents still folded) | `=ED` |
//!
//! Every pattern part goes into one trie of words ([`super::trie`]), walked from each word
//! of the text: building it for the shipped rules takes ~30 M instructions (~3 ms), where
//! compiling the same rules as regular expressions cost ~350 ms.

use super::fold::{fold, Folded, BREAK};
use super::trie::Trie;

/// Phrases one pattern part may stand for (paths through its alternatives).
const MAX_EXPANSIONS: usize = 4096;
/// Words between two parts of `a .. b` unless written `..N`.
const DEFAULT_GAP: u8 = 6;
/// The largest `..N`.
const MAX_GAP: u8 = 40;

/// A compiled pattern: one or more parts, each a set of literal phrases.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Pattern {
    /// Index into [`PhraseSet::parts`] of each part, in order.
    parts: Vec<u32>,
    /// Words allowed between part `i` and part `i + 1`.
    gaps: Vec<u8>,
    exact: bool,
}

/// Many patterns, matched together in one pass over a text.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct PhraseSet {
    patterns: Vec<Pattern>,
    /// The parts' phrases, for the case-folded and the exact texts.
    folded: Trie,
    exact: Trie,
    part_count: u32,
    /// Part → the patterns that start with it.
    starts: Vec<Vec<u32>>,
}

/// Where a pattern matched, in byte offsets of the folded text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn overlaps(&self, other: &Span) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// The matches of every pattern of a [`PhraseSet`] in one text.
#[derive(Debug, Default)]
pub struct Hits {
    /// `(pattern, span)`, sorted by pattern.
    spans: Vec<(u32, Span)>,
    /// A bit per pattern: set when it has a span. Most patterns have none, and most
    /// lookups stop here; the others search `spans` (a few dozen entries in a mail).
    present: Vec<u64>,
}

impl Hits {
    /// The spans where pattern `id` matched.
    pub fn of(&self, id: usize) -> impl Iterator<Item = Span> + '_ {
        let present = self
            .present
            .get(id / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0);
        let found = if present {
            let from = self.spans.partition_point(|(p, _)| (*p as usize) < id);
            let rest = self.spans.get(from..).unwrap_or(&[]);
            &rest[..rest.partition_point(|(p, _)| *p as usize == id)]
        } else {
            &[]
        };
        found.iter().map(|(_, s)| *s)
    }
}

impl PhraseSet {
    /// Compiles `source` and adds it; returns its id, or why it is not a valid pattern.
    pub fn add(&mut self, source: &str) -> Result<usize, String> {
        let (exact, body) = match source.strip_prefix('=') {
            Some(rest) => (true, rest),
            None => (false, source),
        };
        let (parts, gaps) = split_parts(body)?;
        let mut ids = Vec::new();
        for part in &parts {
            let elements = elements(part, exact)?;
            let id = self.part_count;
            let trie = if exact {
                &mut self.exact
            } else {
                &mut self.folded
            };
            trie.insert(&elements, id, MAX_EXPANSIONS)?;
            self.part_count += 1;
            self.starts.push(if ids.is_empty() {
                vec![self.patterns.len() as u32]
            } else {
                Vec::new()
            });
            ids.push(id);
        }
        self.patterns.push(Pattern {
            parts: ids,
            gaps,
            exact,
        });
        Ok(self.patterns.len() - 1)
    }

    /// Whether any pattern needs the case-kept text.
    pub fn needs_exact(&self) -> bool {
        !self.exact.is_empty()
    }

    /// Matches every pattern against `text` (folded) and `exact` (folded, case kept).
    pub fn matches(&self, text: &Folded, exact: Option<&Folded>) -> Hits {
        let mut occ: Vec<(u32, u32, u32)> = Vec::new();
        self.folded.scan(&text.text, &mut occ);
        if let Some(x) = exact {
            self.exact.scan(&x.text, &mut occ);
        }
        let occ = group_by_part(occ, self.part_count);
        let mut spans = Vec::new();
        let mut i = 0;
        while let Some(&(part, _, _)) = occ.get(i) {
            let n = occ[i..].partition_point(|o| o.0 == part);
            for &id in self.starts.get(part as usize).into_iter().flatten() {
                let Some(pattern) = self.patterns.get(id as usize) else {
                    continue;
                };
                let bytes = if pattern.exact {
                    exact.map_or(&[][..], |x| x.text.as_bytes())
                } else {
                    text.text.as_bytes()
                };
                for &(_, start, end) in &occ[i..i + n] {
                    if let Some(end) = chain(&occ, bytes, pattern, 1, end) {
                        spans.push((id, Span { start, end }));
                    }
                }
            }
            i += n;
        }
        // Parts were visited in order, and a pattern's first part is numbered in pattern
        // order: the spans are sorted already, unless one start chained to two ends.
        if !spans.is_sorted_by_key(|(id, s)| (*id, s.start, s.end)) {
            spans.sort_unstable_by_key(|(id, s)| (*id, s.start, s.end));
        }
        let mut present = vec![0u64; self.patterns.len().div_ceil(64)];
        for (id, _) in &spans {
            if let Some(w) = present.get_mut(*id as usize / 64) {
                *w |= 1 << (id % 64);
            }
        }
        Hits { spans, present }
    }
}

/// `occ` sorted by part, then start, then end, without duplicates. The scans emit each
/// part's occurrences in text order (start, then end), so a stable counting sort by part
/// (the profile's largest cost after the scan itself, as a comparison sort) does it.
fn group_by_part(occ: Vec<(u32, u32, u32)>, parts: u32) -> Vec<(u32, u32, u32)> {
    let in_text_order = |o: &[(u32, u32, u32)]| o.windows(2).all(|w| w[0] <= w[1]);
    if occ.len() < 64 || parts as usize > 8 * occ.len() {
        let mut occ = occ;
        occ.sort_unstable();
        occ.dedup();
        return occ;
    }
    let mut first = vec![0u32; parts as usize + 1];
    for o in &occ {
        if let Some(c) = first.get_mut(o.0 as usize + 1) {
            *c += 1;
        }
    }
    for i in 1..first.len() {
        first[i] += first[i - 1];
    }
    let mut sorted = vec![(0u32, 0u32, 0u32); occ.len()];
    for o in &occ {
        if let Some(slot) = first.get_mut(o.0 as usize) {
            if let Some(s) = sorted.get_mut(*slot as usize) {
                *s = *o;
            }
            *slot += 1;
        }
    }
    if !in_text_order(&sorted) {
        sorted.sort_unstable();
    }
    sorted.dedup();
    sorted
}

/// The end of the rest of `pattern` from part `i` on, after a part that ended at `end`.
fn chain(
    occ: &[(u32, u32, u32)],
    text: &[u8],
    pattern: &Pattern,
    i: usize,
    end: u32,
) -> Option<u32> {
    let Some(&part) = pattern.parts.get(i) else {
        return Some(end);
    };
    let gap = pattern.gaps.get(i - 1).copied().unwrap_or(DEFAULT_GAP);
    let from = occ.partition_point(|o| o.0 < part);
    let list = occ.get(from..).unwrap_or(&[]);
    let list = &list[..list.partition_point(|o| o.0 == part)];
    // Candidates start at the space that ends the previous part, or later.
    let first = list.partition_point(|o| o.1 + 1 < end);
    for &(_, start, next_end) in &list[first..] {
        match follows(text, end, start, gap) {
            Follows::Yes => {
                if let Some(e) = chain(occ, text, pattern, i + 1, next_end) {
                    return Some(e);
                }
            }
            Follows::Overlaps => {}
            // Later candidates start later still: further away.
            Follows::TooFar => return None,
        }
    }
    None
}

enum Follows {
    Yes,
    Overlaps,
    TooFar,
}

/// Whether a part starting at `start` follows one ending at `end` with at most `gap` words
/// and no sentence break between them. Literals start and end with the space they share
/// (a prefix literal ends without one).
fn follows(text: &[u8], end: u32, start: u32, gap: u8) -> Follows {
    let (end, start) = (end as usize, start as usize);
    if start + 1 == end {
        return if text.get(start) == Some(&b' ') {
            Follows::Yes
        } else {
            Follows::Overlaps
        };
    }
    if start < end {
        return Follows::Overlaps;
    }
    if gap == 0 {
        return Follows::TooFar;
    }
    let mut words = 0;
    for &b in text.get(end..=start).unwrap_or(&[]) {
        if b == BREAK {
            return Follows::TooFar;
        }
        if b == b' ' {
            words += 1;
            if words > usize::from(gap) {
                return Follows::TooFar;
            }
        }
    }
    Follows::Yes
}

/// Splits `a .. b ..3 c` into its parts and the gaps between them.
fn split_parts(source: &str) -> Result<(Vec<String>, Vec<u8>), String> {
    let mut parts = vec![String::new()];
    let mut gaps = Vec::new();
    let mut depth = 0i32;
    for word in source.split_whitespace() {
        for b in word.bytes() {
            depth += i32::from(b == b'(') - i32::from(b == b')');
        }
        if let Some(n) = word.strip_prefix("..").filter(|_| depth == 0) {
            let gap = if n.is_empty() {
                DEFAULT_GAP
            } else {
                match n.parse::<u8>() {
                    Ok(g) if (1..=MAX_GAP).contains(&g) => g,
                    _ => {
                        return Err(format!(
                            "`{word}`: write `..` or `..N` with N from 1 to {MAX_GAP}"
                        ))
                    }
                }
            };
            gaps.push(gap);
            parts.push(String::new());
            continue;
        }
        if let Some(last) = parts.last_mut() {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err("`..` needs words on both sides".into());
    }
    Ok((parts, gaps))
}

/// One word or group of a part: its alternatives (folded; `""` when optional; a final
/// `*` marks a prefix).
type Element = Vec<String>;

/// The elements of a part, in order.
fn elements(part: &str, exact: bool) -> Result<Vec<Element>, String> {
    let chars: Vec<char> = part.chars().collect();
    let mut pos = 0;
    let out = sequence(&chars, &mut pos, exact, 0)?;
    if pos < chars.len() {
        return Err(format!("unexpected `{}`", chars[pos]));
    }
    let last = out.len().saturating_sub(1);
    for (i, e) in out.iter().enumerate() {
        for a in e {
            if a.trim_end_matches('*').contains('*') || (i < last && a.ends_with('*')) {
                return Err("a `*` prefix may only end a phrase".into());
            }
            let word = if a.ends_with('*') {
                a.rsplit(' ').next().unwrap_or("")
            } else {
                ""
            };
            if word.ends_with('*') && word.len() < 4 {
                return Err(format!(
                    "`{word}`: a `*` prefix needs at least three letters"
                ));
            }
        }
    }
    if out.iter().all(|e| e.iter().any(|a| a.is_empty())) {
        return Err("has no words".into());
    }
    Ok(out)
}

/// `seq | seq | ...` up to a `)` or the end, fully expanded.
fn alternatives(
    c: &[char],
    pos: &mut usize,
    exact: bool,
    depth: u8,
) -> Result<Vec<String>, String> {
    if depth > 4 {
        return Err("parentheses nested too deep".into());
    }
    let mut all = Vec::new();
    loop {
        let mut seq = vec![String::new()];
        for mut e in sequence(c, pos, exact, depth)? {
            // Most elements are one word: appended in place (the product of a list with a
            // one-item list), without rebuilding the list.
            if e.len() == 1 {
                let word = e.pop().unwrap_or_default();
                match seq.as_mut_slice() {
                    [only] if only.is_empty() => *only = word,
                    _ if word.is_empty() => {}
                    all => all.iter_mut().for_each(|s| {
                        if !s.is_empty() {
                            s.push(' ');
                        }
                        s.push_str(&word);
                    }),
                }
                continue;
            }
            seq = product(seq, e)?;
        }
        all.extend(seq);
        if all.len() > MAX_EXPANSIONS {
            return Err(format!("expands to more than {MAX_EXPANSIONS} phrases"));
        }
        if c.get(*pos) != Some(&'|') {
            break;
        }
        *pos += 1;
    }
    all.dedup();
    Ok(all)
}

/// Words and groups up to a `|`, a `)` or the end.
fn sequence(c: &[char], pos: &mut usize, exact: bool, depth: u8) -> Result<Vec<Element>, String> {
    let mut out: Vec<Element> = Vec::new();
    let mut word = String::new();
    loop {
        let ch = c.get(*pos).copied();
        let boundary =
            matches!(ch, None | Some('|' | ')' | '(')) || ch.is_some_and(char::is_whitespace);
        if boundary && !word.is_empty() {
            out.push(fold_word(&word, exact));
            word.clear();
        }
        match ch {
            None | Some('|') | Some(')') => return Ok(out),
            Some('(') => {
                *pos += 1;
                let mut inner = alternatives(c, pos, exact, depth + 1)?;
                if c.get(*pos) != Some(&')') {
                    return Err("unbalanced parentheses".into());
                }
                *pos += 1;
                if c.get(*pos) == Some(&'?') {
                    *pos += 1;
                    inner.push(String::new());
                }
                out.push(inner);
            }
            Some('?') => {
                // `needs?`: the word with or without its last letter, as in a regular
                // expression. Folding drops punctuation, so without this the `?` would be
                // silently lost and only `needs` would match.
                let Some(last) = word.pop() else {
                    return Err("a `?` follows a group `(…)?` or a letter (`needs?`)".into());
                };
                if last == '*' || word.is_empty() {
                    return Err(format!(
                        "`{word}{last}?`: a `?` needs a word of two letters or more before it"
                    ));
                }
                let mut both = fold_word(&word, exact);
                word.push(last);
                both.extend(fold_word(&word, exact));
                word.clear();
                both.dedup();
                out.push(both);
                *pos += 1;
            }
            Some(ch) => {
                if !ch.is_whitespace() {
                    word.push(ch);
                }
                *pos += 1;
            }
        }
    }
}

fn product(acc: Vec<String>, next: Vec<String>) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(acc.len() * next.len().max(1));
    for a in &acc {
        for n in &next {
            let joined = match (a.is_empty(), n.is_empty()) {
                (true, _) => n.clone(),
                (_, true) => a.clone(),
                _ => {
                    let mut j = String::with_capacity(a.len() + 1 + n.len());
                    j.push_str(a);
                    j.push(' ');
                    j.push_str(n);
                    j
                }
            };
            out.push(joined);
        }
    }
    if out.len() > MAX_EXPANSIONS {
        return Err(format!("expands to more than {MAX_EXPANSIONS} phrases"));
    }
    out.dedup();
    Ok(out)
}

/// One pattern word, folded like the text: its alternatives (`#` and `##` stand for
/// number sizes; a trailing `*` is kept as the prefix mark; punctuation may split a word
/// into several, `on-call` → `on call`).
fn fold_word(word: &str, exact: bool) -> Element {
    match word {
        "#" => return ["0", "00", "000", "0000"].map(String::from).to_vec(),
        "##" => return ["00", "000", "0000"].map(String::from).to_vec(),
        _ => {}
    }
    let star = word.ends_with('*');
    let bare = word.trim_end_matches('*');
    // Most rule words are already folded: plain lower-case ASCII letters.
    if !bare.is_empty() && bare.bytes().all(|b| b.is_ascii_lowercase()) {
        return vec![word.to_string()];
    }
    let f = fold(bare, exact).text;
    let f = f.trim();
    vec![if star && !f.is_empty() {
        format!("{f}*")
    } else {
        f.to_string()
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(patterns: &[&str]) -> PhraseSet {
        let mut s = PhraseSet::default();
        for p in patterns {
            if let Err(e) = s.add(p) {
                panic!("{p}: {e}");
            }
        }
        s
    }

    fn hit(s: &PhraseSet, text: &str) -> Vec<usize> {
        let f = fold(text, false);
        let x = s.needs_exact().then(|| fold(text, true));
        let h = s.matches(&f, x.as_ref());
        (0..s.patterns.len())
            .filter(|&i| h.of(i).next().is_some())
            .collect()
    }

    #[test]
    fn words_alternatives_and_prefixes() {
        let s = set(&[
            "(can't|unable to) (log|sign) in",
            "deactivat*",
            "(the)? on call",
        ]);
        assert_eq!(hit(&s, "I CAN’T sign-in today"), vec![0]);
        assert_eq!(hit(&s, "unable to log in"), vec![0]);
        assert_eq!(hit(&s, "cannot log in"), Vec::<usize>::new());
        assert_eq!(hit(&s, "Please deactivate him"), vec![1]);
        assert_eq!(hit(&s, "inactivated"), Vec::<usize>::new());
        assert_eq!(hit(&s, "who is on-call"), vec![2]);
        assert_eq!(hit(&s, "oncall"), Vec::<usize>::new());
    }

    #[test]
    fn a_question_mark_after_a_word_makes_its_last_letter_optional() {
        let s = set(&["needs? (an|a)? accounts?", "(all the others?) fine"]);
        assert_eq!(hit(&s, "the nurse needs an account"), vec![0]);
        assert_eq!(hit(&s, "the nurses need accounts"), vec![0]);
        assert_eq!(hit(&s, "needy accounts"), Vec::<usize>::new());
        assert_eq!(hit(&s, "all the other fine"), vec![1]);
        assert_eq!(hit(&s, "all the others fine"), vec![1]);
        for bad in ["on call ?", "a? b", "deactivat*?", "(x|?y)"] {
            let mut s = PhraseSet::default();
            assert!(s.add(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn whole_words_only() {
        let s = set(&["page"]);
        assert_eq!(hit(&s, "pages, paged, homepage"), Vec::<usize>::new());
        assert_eq!(hit(&s, "a page."), vec![0]);
    }

    #[test]
    fn numbers() {
        let s = set(&["since # (am|pm)", "## nurses"]);
        assert_eq!(hit(&s, "since 7 am"), vec![0]);
        assert_eq!(hit(&s, "since 11pm"), vec![0]);
        assert_eq!(hit(&s, "22 nurses"), vec![1]);
        assert_eq!(hit(&s, "2 nurses"), Vec::<usize>::new());
    }

    #[test]
    fn gaps_stay_within_a_sentence_and_a_window() {
        let s = set(&["none of .. can't", "nobody ..2 reach"]);
        assert_eq!(hit(&s, "None of our night nurses can't"), vec![0]);
        assert_eq!(hit(&s, "none of them. They can't"), Vec::<usize>::new());
        assert_eq!(
            hit(&s, "none of a b c d e f g h can't"),
            Vec::<usize>::new()
        );
        assert_eq!(hit(&s, "nobody can reach"), vec![1]);
        assert_eq!(hit(&s, "nobody here can reach"), vec![1]);
        assert_eq!(hit(&s, "nobody at all here can reach"), Vec::<usize>::new());
    }

    #[test]
    fn exact_case() {
        let s = set(&["=ED", "ed"]);
        assert_eq!(hit(&s, "the ED is full"), vec![0, 1]);
        assert_eq!(hit(&s, "ed"), vec![1]);
    }

    #[test]
    fn bad_patterns_say_why() {
        let mut s = PhraseSet::default();
        assert!(s.add("(a|b").is_err());
        assert!(s.add("a .. ").is_err());
        assert!(s.add("a ..99 b").is_err());
        assert!(s.add("pre* fix").is_err());
        assert!(s.add("!!!").is_err());
        assert!(s.add("ab*").is_err_and(|e| e.contains("three letters")));
        assert!(s
            .add("(a|b|c|d|e|f|g|h) (a|b|c|d|e|f|g|h) (a|b|c|d|e|f|g|h) (a|b|c|d|e|f|g|h)")
            .is_ok());
        let long = "((a|b|c|d|e|f|g|h) (a|b|c|d|e|f|g|h) (a|b|c|d|e|f|g|h) (a|b|c|d|e|f|g|h|i))";
        assert!(s.add(long).unwrap_err().contains("4096"));
    }
}
