//! Triage: category and urgency level of a new ticket from weighted rules.
//!
//! Everything domain-specific (the taxonomy, the urgency levels with their SLA
//! hours and phone advice, the rules and their weights) lives in
//! `config/triage.toml`; this module only implements the scoring engine:
//!
//! * every `[[rule]]` has one or more case-insensitive regexes (`patterns`),
//!   optional `unless` regexes that veto it, a `weight` scored when it matches
//!   the body and a `subject_weight` scored when it matches the subject;
//! * a rule votes for a `category`, an `urgency` level, or both;
//! * the category with the highest total wins when it reaches
//!   `scoring.category_threshold` (ties: the category listed first in the
//!   file), otherwise `scoring.default_category`;
//! * the level with the highest total wins when it reaches
//!   `scoring.urgency_threshold` (ties: the more urgent level, which needs
//!   evidence of its own to tie), otherwise `scoring.default_urgency`.
//!
//! The module is pure: no I/O, no async.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;

use regex::bytes::{RegexSet, RegexSetBuilder};
use regex::RegexBuilder;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The result of triaging one message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Classification {
    /// Category id (one of [`Rules::categories`]).
    pub category: String,
    /// Urgency level (one of [`Rules::levels`]).
    pub urgency: u8,
    /// Ids of the rules that fired, in file order, for explainability.
    pub reasons: Vec<String>,
}

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

/// One problem found in a rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub message: String,
}

/// Why a rules file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    /// The file is not valid TOML, or is valid TOML with invalid content.
    /// Every problem found is listed, each with its line when known.
    #[error("{}", render_problems(origin, problems))]
    Invalid {
        origin: String,
        problems: Vec<Problem>,
    },
}

impl TriageError {
    /// The individual problems, in file order.
    pub fn problems(&self) -> &[Problem] {
        match self {
            TriageError::Invalid { problems, .. } => problems,
        }
    }
}

fn render_problems(origin: &str, problems: &[Problem]) -> String {
    let mut out = format!(
        "invalid triage rules in {origin} ({} problem{}):",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        match p.line {
            Some(line) => out.push_str(&format!("\n  {origin}:{line}: {}", p.message)),
            None => out.push_str(&format!("\n  {origin}: {}", p.message)),
        }
    }
    out
}

#[derive(Debug)]
struct Rule {
    id: String,
    categories: Vec<usize>,
    urgency: Option<u8>,
    /// Indexes into [`Rules::set`].
    patterns: Vec<usize>,
    unless: Vec<usize>,
    body_weight: f64,
    subject_weight: f64,
    each_pattern: bool,
}

impl Rule {
    /// How many times the rule's weight counts for a text whose set matches are
    /// `m`: 0 when no pattern matches or an `unless` pattern does; otherwise 1,
    /// or the number of distinct matching patterns when `each_pattern` is set.
    fn hits(&self, m: &[bool]) -> usize {
        let matched = |i: &&usize| m.get(**i).copied().unwrap_or(false);
        if self.unless.iter().any(|i| matched(&i)) {
            return 0;
        }
        if self.each_pattern {
            self.patterns.iter().filter(matched).count()
        } else {
            usize::from(self.patterns.iter().any(|i| matched(&i)))
        }
    }
}

/// `\b`/`\B` as ASCII word boundaries: Unicode ones keep the regex crate off its fast
/// DFA engines (a 15x slowdown measured on the triage corpus), and rule words are ASCII.
fn ascii_word_boundaries(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push_str("(?-u:\\b)"),
            Some('B') => out.push_str("(?-u:\\B)"),
            Some(n) => {
                out.push('\\');
                out.push(n);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// A compiled, validated rules file.
#[derive(Debug)]
pub struct Rules {
    /// Every rule's `patterns` and `unless` but the windowed ones, in one set: one scan of a
    /// text answers them all. `set_index[k]` is the pattern index of set member `k`.
    set: RegexSet,
    set_index: Vec<usize>,
    /// Patterns with bounded repetition (`a.{0,40}b`), each on its own: inside one set their
    /// counting states multiply and the lazy DFA thrashes (measured 5x slower).
    windowed: RegexSet,
    windowed_index: Vec<usize>,
    pattern_count: usize,
    levels: Vec<Level>,
    categories: Vec<Category>,
    rules: Vec<Rule>,
    default_category: String,
    default_urgency: u8,
    category_threshold: f64,
    urgency_threshold: f64,
}

impl Rules {
    /// Parses and validates a rules file. `origin` is the file path used in
    /// error messages. All problems are collected and reported together.
    pub fn from_toml(text: &str, origin: &str) -> Result<Rules, TriageError> {
        let mut p = Parser {
            text,
            problems: Vec::new(),
            build: true,
        };
        let rules = p.parse();
        match rules {
            Some(rules) if p.problems.is_empty() => Ok(rules),
            _ => {
                p.problems.sort_by_key(|pr| pr.line.unwrap_or(0));
                Err(TriageError::Invalid {
                    origin: origin.to_string(),
                    problems: p.problems,
                })
            }
        }
    }

    /// Reads and validates a rules file like [`Rules::from_toml`], every problem with its
    /// line, but builds no automaton: each pattern's syntax is checked by the regex crate's
    /// own parser, which is all compiling it would check short of its size limit. Hundreds
    /// of times faster than `from_toml` (whose ~350 ms are the automata: each pattern on its
    /// own, then the sets), so the loader's reading and validation can be fuzzed at a useful
    /// rate (`fuzz/`, target `rules`).
    pub fn check(text: &str, origin: &str) -> Result<(), TriageError> {
        let mut p = Parser {
            text,
            problems: Vec::new(),
            build: false,
        };
        let _ = p.parse();
        if p.problems.is_empty() {
            return Ok(());
        }
        p.problems.sort_by_key(|pr| pr.line.unwrap_or(0));
        Err(TriageError::Invalid {
            origin: origin.to_string(),
            problems: p.problems,
        })
    }

    /// Classifies a message. `body` must already be stripped of quoted text
    /// and signatures by the caller.
    pub fn classify(&self, subject: &str, body: &str) -> Classification {
        let subject = self.matches(normalize(subject).as_bytes());
        let body = self.matches(normalize(body).as_bytes());
        let mut cat_scores = vec![0.0_f64; self.categories.len()];
        let mut level_scores: BTreeMap<u8, f64> = BTreeMap::new();
        let mut reasons = Vec::new();
        for rule in &self.rules {
            let mut score = 0.0;
            let mut fired = false;
            if rule.subject_weight != 0.0 {
                let n = rule.hits(&subject);
                if n > 0 {
                    score += rule.subject_weight * n as f64;
                    fired = true;
                }
            }
            if rule.body_weight != 0.0 {
                let n = rule.hits(&body);
                if n > 0 {
                    score += rule.body_weight * n as f64;
                    fired = true;
                }
            }
            if !fired {
                continue;
            }
            reasons.push(rule.id.clone());
            for &c in &rule.categories {
                if let Some(s) = cat_scores.get_mut(c) {
                    *s += score;
                }
            }
            if let Some(u) = rule.urgency {
                *level_scores.entry(u).or_insert(0.0) += score;
            }
        }

        // Highest score wins; ties go to the category listed first.
        let mut best: Option<(usize, f64)> = None;
        for (i, &s) in cat_scores.iter().enumerate() {
            if s >= self.category_threshold && best.is_none_or(|(_, b)| s > b) {
                best = Some((i, s));
            }
        }
        let category = best
            .and_then(|(i, _)| self.categories.get(i))
            .map(|c| c.id.clone())
            .unwrap_or_else(|| self.default_category.clone());

        // Highest score wins; ties go to the more urgent (lower) level. The
        // map iterates from the most urgent level, so a strict `>` keeps it.
        let mut best_level: Option<(u8, f64)> = None;
        for (&lvl, &s) in &level_scores {
            if s >= self.urgency_threshold && s > 0.0 && best_level.is_none_or(|(_, b)| s > b) {
                best_level = Some((lvl, s));
            }
        }
        let urgency = best_level.map_or(self.default_urgency, |(l, _)| l);

        Classification {
            category,
            urgency,
            reasons,
        }
    }

    /// Which patterns match `text`, by pattern index.
    fn matches(&self, text: &[u8]) -> Vec<bool> {
        let mut m = vec![false; self.pattern_count];
        for k in self.set.matches(text).iter() {
            if let Some(slot) = self.set_index.get(k).and_then(|&i| m.get_mut(i)) {
                *slot = true;
            }
        }
        for k in self.windowed.matches(text).iter() {
            if let Some(slot) = self.windowed_index.get(k).and_then(|&i| m.get_mut(i)) {
                *slot = true;
            }
        }
        m
    }

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

    /// The level used when no urgency rule scores enough.
    pub fn default_urgency(&self) -> u8 {
        self.default_urgency
    }
}

/// Typographic quotes and dashes to ASCII, so rules can be written plainly.
fn normalize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' | '\u{02BC}' => '\'',
            '\u{201C}' | '\u{201D}' => '"',
            '\u{2013}' | '\u{2014}' => '-',
            '\u{00A0}' => ' ',
            c => c,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Parsing and validation, collecting every problem with its line.

type Table<'i> = DeTable<'i>;

struct Parser<'t> {
    text: &'t str,
    problems: Vec<Problem>,
    /// Compile the automata (each pattern, then the sets); false only checks the file.
    build: bool,
}

struct RawRule {
    id: String,
    line: usize,
    categories: Vec<(String, usize)>,
    urgency: Option<(i64, usize)>,
    /// Checked patterns, `\b` made ASCII.
    patterns: Vec<String>,
    unless: Vec<String>,
    body_weight: f64,
    subject_weight: Option<f64>,
    each_pattern: bool,
}

impl<'t> Parser<'t> {
    fn line(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text
            .get(..end)
            .map_or(1, |s| s.bytes().filter(|&b| b == b'\n').count() + 1)
    }

    fn problem(&mut self, span: Range<usize>, message: impl Into<String>) {
        let line = self.line(span);
        self.problems.push(Problem {
            line: Some(line),
            message: message.into(),
        });
    }

    fn parse(&mut self) -> Option<Rules> {
        let root = match DeTable::parse(self.text) {
            Ok(t) => t,
            Err(e) => {
                let line = e.span().map(|s| self.line(s));
                self.problems.push(Problem {
                    line,
                    message: format!("TOML syntax error: {}", e.message().trim()),
                });
                return None;
            }
        };
        let root = root.get_ref();

        let mut scoring: Option<(&Table, Range<usize>)> = None;
        let mut level_items: Vec<&Spanned<DeValue>> = Vec::new();
        let mut category_items: Vec<&Spanned<DeValue>> = Vec::new();
        let mut rule_items: Vec<&Spanned<DeValue>> = Vec::new();
        let mut seen_level_key = false;
        let mut seen_category_key = false;
        for (key, value) in root.iter() {
            let name: &str = key.get_ref();
            match name {
                "scoring" => match value.get_ref() {
                    DeValue::Table(t) => scoring = Some((t, key.span())),
                    _ => self.problem(key.span(), "`scoring` must be a table ([scoring])"),
                },
                "level" | "category" | "rule" => {
                    let list = match value.get_ref() {
                        DeValue::Array(a) => a.iter().collect::<Vec<_>>(),
                        _ => {
                            self.problem(
                                key.span(),
                                format!("`{name}` must be an array of tables ([[{name}]])"),
                            );
                            continue;
                        }
                    };
                    match name {
                        "level" => {
                            seen_level_key = true;
                            level_items = list;
                        }
                        "category" => {
                            seen_category_key = true;
                            category_items = list;
                        }
                        _ => rule_items = list,
                    }
                }
                other => self.problem(
                    key.span(),
                    format!("unknown key `{other}` (expected scoring, level, category, rule)"),
                ),
            }
        }

        // [scoring]
        let mut default_category = "general".to_string();
        let mut default_category_line = 1;
        let mut default_urgency: (i64, usize) = (4, 1);
        let mut category_threshold = 1.0;
        let mut urgency_threshold = 1.0;
        let mut subject_multiplier = 1.0;
        if let Some((t, _)) = scoring {
            let mut f = Fields::new(self, t, "[scoring]");
            if let Some((s, l)) = f.string("default_category") {
                default_category = s;
                default_category_line = l;
            }
            if let Some(v) = f.int("default_urgency") {
                default_urgency = v;
            }
            if let Some((v, _)) = f.number("category_threshold") {
                category_threshold = v;
            }
            if let Some((v, _)) = f.number("urgency_threshold") {
                urgency_threshold = v;
            }
            if let Some((v, _)) = f.number("subject_multiplier") {
                subject_multiplier = v;
            }
            f.finish();
        }

        // [[level]]
        let mut levels: Vec<Level> = Vec::new();
        if !seen_level_key || level_items.is_empty() {
            self.problems.push(Problem {
                line: None,
                message: "no [[level]] defined".into(),
            });
        }
        for item in level_items {
            let Some(t) = self.table_item(item, "level") else {
                continue;
            };
            let mut f = Fields::new(self, t, "[[level]]");
            let level = f.int("level");
            let name = f.string("name");
            let first = f.int("first_response_hours");
            let resolution = f.int("resolution_hours");
            let phone = f.bool("advise_phone").unwrap_or(false);
            f.require(&[
                ("level", level.is_some()),
                ("name", name.is_some()),
                ("first_response_hours", first.is_some()),
                ("resolution_hours", resolution.is_some()),
            ]);
            f.finish();
            let (Some((lv, lv_line)), Some((name, _)), Some((first, fl)), Some((res, rl))) =
                (level, name, first, resolution)
            else {
                continue;
            };
            if !(1..=4).contains(&lv) {
                self.problem_at(lv_line, format!("level {lv} out of range 1..=4"));
                continue;
            }
            let Ok(first) = u32::try_from(first) else {
                self.problem_at(fl, format!("level {lv}: first_response_hours must be >= 0"));
                continue;
            };
            let Ok(res) = u32::try_from(res) else {
                self.problem_at(rl, format!("level {lv}: resolution_hours must be >= 0"));
                continue;
            };
            let lv = lv as u8;
            if levels.iter().any(|l| l.level == lv) {
                self.problem_at(lv_line, format!("duplicate level {lv}"));
                continue;
            }
            levels.push(Level {
                level: lv,
                name,
                first_response_hours: first,
                resolution_hours: res,
                advise_phone: phone,
            });
        }
        levels.sort_by_key(|l| l.level);

        // [[category]]
        let mut categories: Vec<Category> = Vec::new();
        if !seen_category_key || category_items.is_empty() {
            self.problems.push(Problem {
                line: None,
                message: "no [[category]] defined".into(),
            });
        }
        for item in category_items {
            let Some(t) = self.table_item(item, "category") else {
                continue;
            };
            let mut f = Fields::new(self, t, "[[category]]");
            let id = f.string("id");
            let name = f.string("name");
            f.require(&[("id", id.is_some()), ("name", name.is_some())]);
            f.finish();
            let (Some((id, id_line)), Some((name, _))) = (id, name) else {
                continue;
            };
            if id.trim().is_empty() {
                self.problem_at(id_line, "category id must not be empty");
                continue;
            }
            if categories.iter().any(|c| c.id == id) {
                self.problem_at(id_line, format!("duplicate category id `{id}`"));
                continue;
            }
            categories.push(Category { id, name });
        }
        if !categories.is_empty() && !categories.iter().any(|c| c.id == default_category) {
            self.problem_at(
                default_category_line,
                format!("default_category `{default_category}` is not a defined category"),
            );
        }
        let level_ok = |u: i64| levels.iter().any(|l| i64::from(l.level) == u);
        if !levels.is_empty() && !level_ok(default_urgency.0) {
            let (u, line) = default_urgency;
            self.problem_at(line, format!("default_urgency {u} is not a defined level"));
        }

        // [[rule]]
        let mut raw_rules: Vec<RawRule> = Vec::new();
        let mut seen_ids: HashSet<String> = HashSet::new();
        for item in rule_items {
            let Some(t) = self.table_item(item, "rule") else {
                continue;
            };
            let line = self.line(item.span());
            let mut f = Fields::new(self, t, "[[rule]]");
            let id = f.string("id");
            let label = id.as_ref().map_or_else(
                || format!("rule at line {line}"),
                |(s, _)| format!("rule `{s}`"),
            );
            f.context = label.clone();
            let category = f.strings("category");
            let urgency = f.int("urgency");
            let patterns = f.regexes("patterns");
            let unless = f.regexes("unless").map(|(r, _)| r).unwrap_or_default();
            let weight = f.number("weight");
            let subject_weight = f.number("subject_weight");
            let each_pattern = f.bool("each_pattern").unwrap_or(false);
            f.require(&[("id", id.is_some()), ("patterns", patterns.is_some())]);
            f.finish();
            if category.as_ref().is_none_or(|c| c.is_empty()) && urgency.is_none() {
                self.problem_at(
                    line,
                    format!("{label}: needs `category`, `urgency` or both"),
                );
            }
            for (c, l) in category.iter().flatten() {
                if !categories.is_empty() && !categories.iter().any(|k| &k.id == c) {
                    self.problem_at(*l, format!("{label}: unknown category `{c}`"));
                }
            }
            if let Some((u, l)) = urgency {
                if !(1..=4).contains(&u) {
                    self.problem_at(l, format!("{label}: urgency {u} out of range 1..=4"));
                } else if !levels.is_empty() && !level_ok(u) {
                    self.problem_at(l, format!("{label}: urgency {u} is not a defined level"));
                }
            }
            if let Some((p, l)) = &patterns {
                if p.is_empty() {
                    self.problem_at(*l, format!("{label}: `patterns` is empty"));
                }
            }
            let Some((id, id_line)) = id else { continue };
            if !seen_ids.insert(id.clone()) {
                self.problem_at(id_line, format!("duplicate rule id `{id}`"));
            }
            raw_rules.push(RawRule {
                id,
                line,
                categories: category.unwrap_or_default(),
                urgency,
                patterns: patterns.map(|(p, _)| p).unwrap_or_default(),
                unless,
                body_weight: weight.map_or(1.0, |(w, _)| w),
                subject_weight: subject_weight.map(|(w, _)| w),
                each_pattern,
            });
        }

        if !self.problems.is_empty() || !self.build {
            return None;
        }
        let mut sources: Vec<String> = Vec::new();
        let mut index = |list: Vec<String>| -> Vec<usize> {
            list.into_iter()
                .map(|r| {
                    sources.push(r);
                    sources.len() - 1
                })
                .collect()
        };
        let rules: Vec<Rule> = raw_rules
            .into_iter()
            .map(|r| {
                let _ = r.line;
                let patterns = index(r.patterns);
                let unless = index(r.unless);
                Rule {
                    categories: r
                        .categories
                        .iter()
                        .filter_map(|(c, _)| categories.iter().position(|k| &k.id == c))
                        .collect(),
                    urgency: r.urgency.and_then(|(u, _)| u8::try_from(u).ok()),
                    body_weight: r.body_weight,
                    subject_weight: r
                        .subject_weight
                        .unwrap_or(r.body_weight * subject_multiplier),
                    each_pattern: r.each_pattern,
                    id: r.id,
                    patterns,
                    unless,
                }
            })
            .collect();
        // ASCII semantics (case folding, \w, \s) keep matching on the fast DFA engines;
        // rules needing Unicode classes fall back to full Unicode.
        let pattern_count = sources.len();
        type Indexed<'s> = Vec<(usize, &'s String)>;
        let (windowed_src, set_src): (Indexed, Indexed) = sources
            .iter()
            .enumerate()
            .partition(|(_, p)| p.contains('{'));
        let set_index: Vec<usize> = set_src.iter().map(|(i, _)| *i).collect();
        let windowed_index: Vec<usize> = windowed_src.iter().map(|(i, _)| *i).collect();
        let build_set = |patterns: Vec<&String>, unicode: bool| {
            RegexSetBuilder::new(patterns)
                .case_insensitive(true)
                .unicode(unicode)
                .size_limit(64 << 20)
                .dfa_size_limit(64 << 20)
                .build()
        };
        let plain: Vec<&String> = set_src.iter().map(|(_, p)| *p).collect();
        let windows: Vec<&String> = windowed_src.iter().map(|(_, p)| *p).collect();
        let built = build_set(plain.clone(), false)
            .or_else(|_| build_set(plain, true))
            .and_then(|set| {
                build_set(windows.clone(), false)
                    .or_else(|_| build_set(windows, true))
                    .map(|w| (set, w))
            });
        let (set, windowed) = match built {
            Ok(b) => b,
            Err(e) => {
                self.problems.push(Problem {
                    line: None,
                    message: format!("the rules' patterns together are too large: {e}"),
                });
                return None;
            }
        };
        Some(Rules {
            set,
            set_index,
            windowed,
            windowed_index,
            pattern_count,
            levels,
            categories,
            rules,
            default_category,
            default_urgency: u8::try_from(default_urgency.0).unwrap_or(4),
            category_threshold,
            urgency_threshold,
        })
    }

    fn problem_at(&mut self, line: usize, message: impl Into<String>) {
        self.problems.push(Problem {
            line: Some(line),
            message: message.into(),
        });
    }

    fn table_item<'a, 'i>(
        &mut self,
        item: &'a Spanned<DeValue<'i>>,
        what: &str,
    ) -> Option<&'a Table<'i>> {
        match item.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.problem(
                    item.span(),
                    format!("each `{what}` entry must be a table ([[{what}]])"),
                );
                None
            }
        }
    }
}

/// Typed access to the keys of one table; remembers which keys were read so
/// that the rest can be reported as unknown.
struct Fields<'p, 't, 'a, 'i> {
    parser: &'p mut Parser<'t>,
    table: &'a Table<'i>,
    used: Vec<&'static str>,
    context: String,
    line: usize,
}

impl<'p, 't, 'a, 'i> Fields<'p, 't, 'a, 'i> {
    fn new(parser: &'p mut Parser<'t>, table: &'a Table<'i>, context: &str) -> Self {
        let line = table
            .iter()
            .map(|(k, _)| parser.line(k.span()))
            .min()
            .unwrap_or(1);
        Fields {
            parser,
            table,
            used: Vec::new(),
            context: context.to_string(),
            line,
        }
    }

    fn get(&mut self, key: &'static str) -> Option<(&'a Spanned<DeValue<'i>>, usize)> {
        self.used.push(key);
        let table: &'a Table<'i> = self.table;
        table.iter().find_map(|(k, v)| {
            let name: &str = k.get_ref();
            (name == key).then(|| (v, self.parser.line(k.span())))
        })
    }

    fn wrong_type(&mut self, key: &str, line: usize, expected: &str) {
        let ctx = self.context.clone();
        self.parser
            .problem_at(line, format!("{ctx}: `{key}` must be {expected}"));
    }

    fn string(&mut self, key: &'static str) -> Option<(String, usize)> {
        let (v, line) = self.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some((s.to_string(), line)),
            _ => {
                self.wrong_type(key, line, "a string");
                None
            }
        }
    }

    /// A string or an array of strings, each with its line.
    fn strings(&mut self, key: &'static str) -> Option<Vec<(String, usize)>> {
        let (v, line) = self.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(vec![(s.to_string(), line)]),
            DeValue::Array(a) => {
                let mut out = Vec::new();
                for item in a.iter() {
                    let item_line = self.parser.line(item.span());
                    match item.get_ref() {
                        DeValue::String(s) => out.push((s.to_string(), item_line)),
                        _ => self.wrong_type(key, item_line, "a string or an array of strings"),
                    }
                }
                Some(out)
            }
            _ => {
                self.wrong_type(key, line, "a string or an array of strings");
                None
            }
        }
    }

    fn bool(&mut self, key: &'static str) -> Option<bool> {
        let (v, line) = self.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(key, line, "true or false");
                None
            }
        }
    }

    fn int(&mut self, key: &'static str) -> Option<(i64, usize)> {
        let (v, line) = self.get(key)?;
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => {
                i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok()
            }
            _ => None,
        };
        if parsed.is_none() {
            self.wrong_type(key, line, "an integer");
        }
        parsed.map(|n| (n, line))
    }

    fn number(&mut self, key: &'static str) -> Option<(f64, usize)> {
        let (v, line) = self.get(key)?;
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            _ => None,
        };
        match parsed {
            Some(n) if n.is_finite() => Some((n, line)),
            _ => {
                self.wrong_type(key, line, "a finite number");
                None
            }
        }
    }

    fn regexes(&mut self, key: &'static str) -> Option<(Vec<String>, usize)> {
        let (v, line) = self.get(key)?;
        let items: Vec<&Spanned<DeValue>> = match v.get_ref() {
            DeValue::String(_) => vec![v],
            DeValue::Array(a) => a.iter().collect(),
            _ => {
                self.wrong_type(key, line, "a string or an array of strings");
                return None;
            }
        };
        let mut out = Vec::new();
        for item in items {
            let item_line = self.parser.line(item.span());
            let DeValue::String(s) = item.get_ref() else {
                self.wrong_type(key, item_line, "a string or an array of strings");
                continue;
            };
            let pattern = ascii_word_boundaries(s);
            // Checking only: regex's own parser, whose errors are the ones compiling reports.
            let checked = if self.parser.build {
                RegexBuilder::new(&pattern)
                    .case_insensitive(true)
                    .build()
                    .map(drop)
                    .map_err(|e| e.to_string())
            } else {
                regex_syntax::ParserBuilder::new()
                    .case_insensitive(true)
                    .build()
                    .parse(&pattern)
                    .map(drop)
                    .map_err(|e| e.to_string())
            };
            match checked {
                Ok(()) => out.push(pattern),
                Err(e) => {
                    let ctx = self.context.clone();
                    let detail = e.to_string().replace('\n', "\n    ");
                    self.parser.problem_at(
                        item_line,
                        format!("{ctx}: invalid regex in `{key}`: {s:?}:\n    {detail}"),
                    );
                }
            }
        }
        Some((out, line))
    }

    fn require(&mut self, keys: &[(&str, bool)]) {
        let missing: Vec<&str> = keys.iter().filter(|(_, ok)| !ok).map(|(k, _)| *k).collect();
        // A key that is present but of the wrong type was already reported.
        for key in missing {
            let present = self.table.iter().any(|(k, _)| {
                let name: &str = k.get_ref();
                name == key
            });
            if !present {
                let ctx = self.context.clone();
                self.parser
                    .problem_at(self.line, format!("{ctx}: missing required key `{key}`"));
            }
        }
    }

    fn finish(self) {
        let table: &'a Table<'i> = self.table;
        for (k, _) in table.iter() {
            let name: &str = k.get_ref();
            if !self.used.contains(&name) {
                let line = self.parser.line(k.span());
                self.parser.problem_at(
                    line,
                    format!(
                        "{}: unknown key `{name}` (expected one of: {})",
                        self.context,
                        self.used.join(", ")
                    ),
                );
            }
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn word_boundaries_become_ascii() {
        assert_eq!(
            super::ascii_word_boundaries(r"\bdown\b \Bx \\b \d"),
            r"(?-u:\b)down(?-u:\b) (?-u:\B)x \\b \d"
        );
    }

    use super::*;

    const BASE: &str = r#"
[scoring]
default_category = "general"
default_urgency = 4
category_threshold = 2
urgency_threshold = 1
subject_multiplier = 2

[[level]]
level = 1
name = "Critical"
first_response_hours = 1
resolution_hours = 24
advise_phone = true

[[level]]
level = 4
name = "Low"
first_response_hours = 48
resolution_hours = 240
advise_phone = false

[[category]]
id = "billing"
name = "Billing"

[[category]]
id = "schedule"
name = "Schedule"

[[category]]
id = "general"
name = "General"
"#;

    fn rules(extra: &str) -> Result<Rules, TriageError> {
        Rules::from_toml(&format!("{BASE}{extra}"), "test.toml")
    }

    #[test]
    fn defaults_when_nothing_matches() -> Result<(), TriageError> {
        let r = rules("")?;
        let c = r.classify("hello", "just saying hi");
        assert_eq!(c.category, "general");
        assert_eq!(c.urgency, 4);
        assert!(c.reasons.is_empty());
        assert_eq!(r.default_category(), "general");
        assert_eq!(r.default_urgency(), 4);
        assert_eq!(r.levels().len(), 2);
        assert_eq!(r.level(1).map(|l| l.first_response_hours), Some(1));
        assert!(r.level(2).is_none());
        assert_eq!(
            r.category("billing").map(|c| c.name.as_str()),
            Some("Billing")
        );
        assert_eq!(r.categories().len(), 3);
        Ok(())
    }

    #[test]
    fn weights_add_up_and_subject_counts_more() -> Result<(), TriageError> {
        let r = rules(
            r#"
[[rule]]
id = "invoice"
category = "billing"
patterns = ['\binvoice']
weight = 1.5

[[rule]]
id = "shift"
category = "schedule"
patterns = ['\bshifts?\b']
weight = 2
subject_weight = 2
"#,
        )?;
        // Body only: invoice 1.5 < threshold 2, shift 2 >= 2.
        let c = r.classify("question", "the invoice for the shift");
        assert_eq!(c.category, "schedule");
        // Subject hit doubles invoice (1.5 * 2 = 3) plus body 1.5 => 4.5 > 2.
        let c = r.classify("Invoice", "the invoice for the shift");
        assert_eq!(c.category, "billing");
        assert_eq!(c.reasons, vec!["invoice".to_string(), "shift".to_string()]);
        // Below the threshold: default.
        let c = r.classify("hi", "an invoice");
        assert_eq!(c.category, "general");
        Ok(())
    }

    #[test]
    fn category_tie_goes_to_first_listed() -> Result<(), TriageError> {
        let r = rules(
            r#"
[[rule]]
id = "s"
category = "schedule"
patterns = ['foo']
weight = 3

[[rule]]
id = "b"
category = "billing"
patterns = ['foo']
weight = 3
"#,
        )?;
        assert_eq!(r.classify("", "foo").category, "billing");
        Ok(())
    }

    #[test]
    fn urgency_tie_goes_to_more_urgent_only_with_evidence() -> Result<(), TriageError> {
        let r = rules(
            r#"
[[rule]]
id = "down"
urgency = 1
patterns = ['\bdown\b']
weight = 2

[[rule]]
id = "no-rush"
urgency = 4
patterns = ['no rush']
weight = 2

[[rule]]
id = "whenever"
urgency = 4
patterns = ['whenever']
weight = 1
"#,
        )?;
        assert_eq!(r.classify("", "it is down, no rush").urgency, 1);
        assert_eq!(r.classify("", "it is down, no rush, whenever").urgency, 4);
        assert_eq!(r.classify("", "nothing to see").urgency, 4);
        assert_eq!(r.classify("", "down").urgency, 1);
        Ok(())
    }

    #[test]
    fn unless_vetoes_and_negative_weights_subtract() -> Result<(), TriageError> {
        let r = rules(
            r#"
[[rule]]
id = "urgent"
urgency = 1
patterns = ['urgent']
unless = ['not urgent']
weight = 2

[[rule]]
id = "bill"
category = "billing"
patterns = ['bill']
weight = 3

[[rule]]
id = "not-bill"
category = "billing"
patterns = ['billy']
weight = -2
"#,
        )?;
        assert_eq!(r.classify("", "this is urgent").urgency, 1);
        assert_eq!(r.classify("", "this is not urgent").urgency, 4);
        assert_eq!(r.classify("", "bill").category, "billing");
        assert_eq!(r.classify("", "billy").category, "general");
        Ok(())
    }

    #[test]
    fn each_pattern_counts_distinct_patterns() -> Result<(), TriageError> {
        let r = rules(
            r#"
[[rule]]
id = "sched-each"
category = "schedule"
patterns = ['swap', 'rota', 'shift']
weight = 1
each_pattern = true

[[rule]]
id = "bill-once"
category = "billing"
patterns = ['invoice', 'payment', 'refund']
weight = 2.5
"#,
        )?;
        // billing: 2.5 once; schedule: 1 + 1 + 1 = 3.
        let c = r.classify("", "invoice payment refund swap rota shift");
        assert_eq!(c.category, "schedule");
        // schedule: 2 < 2.5.
        let c = r.classify("", "invoice payment refund swap rota");
        assert_eq!(c.category, "billing");
        Ok(())
    }

    #[test]
    fn case_insensitive_and_typographic_quotes() -> Result<(), TriageError> {
        let r = rules(
            r#"
[[rule]]
id = "cant"
urgency = 1
patterns = ["can't log in"]
weight = 1
"#,
        )?;
        assert_eq!(r.classify("", "We CAN\u{2019}T LOG IN").urgency, 1);
        Ok(())
    }

    #[test]
    fn every_problem_is_reported_with_lines() {
        let text = format!(
            "{BASE}{}",
            r#"
[[rule]]
id = "bad-regex"
category = "billing"
patterns = ['(unclosed']

[[rule]]
id = "bad-cat"
category = "nope"
patterns = ['x']

[[rule]]
id = "bad-cat"
urgency = 9
patterns = ['x']
colour = "red"

[[level]]
level = 7
name = "Seven"
first_response_hours = 1
resolution_hours = 1

[[category]]
id = "billing"
name = "Again"
"#
        );
        let err = match Rules::from_toml(&text, "conf/triage.toml") {
            Ok(_) => panic!("should fail"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(msg.contains("conf/triage.toml"), "{msg}");
        assert!(msg.contains("rule `bad-regex`: invalid regex"), "{msg}");
        assert!(msg.contains("unknown category `nope`"), "{msg}");
        assert!(msg.contains("duplicate rule id `bad-cat`"), "{msg}");
        assert!(msg.contains("urgency 9 out of range"), "{msg}");
        assert!(msg.contains("unknown key `colour`"), "{msg}");
        assert!(msg.contains("level 7 out of range"), "{msg}");
        assert!(msg.contains("duplicate category id `billing`"), "{msg}");
        assert!(err.problems().len() >= 7, "{msg}");
        assert!(err.problems().iter().all(|p| p.line.is_some()), "{msg}");
        // The regex problem is reported at the line of the pattern.
        let line_of_pattern = text
            .lines()
            .position(|l| l.contains("(unclosed"))
            .map(|i| i + 1);
        assert!(err
            .problems()
            .iter()
            .any(|p| p.line == line_of_pattern && p.message.contains("invalid regex")));
    }

    #[test]
    fn syntax_error_names_origin_and_line() {
        let err = match Rules::from_toml("[scoring]\ndefault_urgency = = 4\n", "x.toml") {
            Ok(_) => panic!("should fail"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(msg.contains("x.toml:2:"), "{msg}");
    }

    #[test]
    fn unknown_top_level_and_missing_keys() {
        let text = format!("{BASE}\n[extra]\na = 1\n\n[[rule]]\ncategory = \"billing\"\n");
        let err = match Rules::from_toml(&text, "t.toml") {
            Ok(_) => panic!("should fail"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(msg.contains("unknown key `extra`"), "{msg}");
        assert!(msg.contains("missing required key `id`"), "{msg}");
        assert!(msg.contains("missing required key `patterns`"), "{msg}");
    }

    #[test]
    fn default_category_and_urgency_must_exist() {
        let text = BASE
            .replace(
                "default_category = \"general\"",
                "default_category = \"misc\"",
            )
            .replace("default_urgency = 4", "default_urgency = 3");
        let err = match Rules::from_toml(&text, "t.toml") {
            Ok(_) => panic!("should fail"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(msg.contains("default_category `misc`"), "{msg}");
        assert!(msg.contains("default_urgency 3"), "{msg}");
    }

    #[test]
    fn check_finds_what_loading_finds() {
        let bad = format!(
            "{BASE}{}",
            r#"
[[rule]]
id = "bad-regex"
category = "nope"
patterns = ['(unclosed', '\bok\b']
"#
        );
        let (Err(checked), Err(loaded)) = (
            Rules::check(&bad, "t.toml"),
            Rules::from_toml(&bad, "t.toml"),
        ) else {
            panic!("both must fail");
        };
        assert_eq!(checked.to_string(), loaded.to_string());
        assert!(checked.to_string().contains("unclosed group"), "{checked}");
        let shipped = include_str!("../../config/triage.toml");
        assert!(Rules::check(shipped, "config/triage.toml").is_ok());
        assert!(
            Rules::check(
                &format!(
                    "{BASE}{}",
                    "[[rule]]\nid = \"x\"\ncategory = \"billing\"\npatterns = ['(?-u:\\xFF)']\n"
                ),
                "t"
            )
            .is_err(),
            "a pattern that can match invalid UTF-8 is refused, as compiling would"
        );
    }

    #[test]
    fn shipped_rules_load() -> Result<(), TriageError> {
        let text = include_str!("../../config/triage.toml");
        let r = Rules::from_toml(text, "config/triage.toml")?;
        assert_eq!(r.levels().len(), 4);
        assert_eq!(r.default_category(), "general");
        for id in [
            "billing",
            "routing",
            "care-team-user",
            "practitioner-user",
            "user-access",
            "user-info",
            "schedule",
            "after-hours",
            "reporting",
            "legal",
            "general",
        ] {
            assert!(r.category(id).is_some(), "missing category {id}");
        }
        Ok(())
    }
}
