//! Reading `config/triage.toml`: TOML → a validated [`Rules`], every problem reported at
//! once with its line. What the keys mean is documented in the file itself.

use std::collections::HashSet;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::engine::{CategoryRule, Feature, Model};
use super::lang::Languages;
use super::phrases::PhraseSet;
use super::signals::Signal;
use super::{Category, Level, Problem, Rules, TriageError};

type Table<'i> = DeTable<'i>;

impl Rules {
    /// Parses and validates a rules file. `origin` is the file path used in error messages.
    /// Cheap: ~30 M instructions (~3 ms) for the shipped rules (the phrases go into a trie of
    /// words, nothing is compiled).
    pub fn from_toml(text: &str, origin: &str) -> Result<Rules, TriageError> {
        let mut p = Parser {
            text,
            newlines: text.match_indices('\n').map(|(i, _)| i).collect(),
            problems: Vec::new(),
        };
        let rules = p.parse();
        match rules {
            Some(rules) if p.problems.is_empty() => Ok(rules),
            _ => {
                // In file order; problems with the file as a whole last (as toml_check orders them).
                p.problems.sort_by_key(|pr| pr.line.unwrap_or(usize::MAX));
                Err(TriageError::Invalid(crate::toml_check::Problems {
                    origin: origin.to_string(),
                    problems: p.problems,
                }))
            }
        }
    }
}

struct Parser<'t> {
    text: &'t str,
    /// Byte offsets of the newlines, to turn spans into lines quickly.
    newlines: Vec<usize>,
    problems: Vec<Problem>,
}

const TOP_KEYS: &str = "scoring, urgency, language, level, category, rule, feature";

impl Parser<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        self.newlines.partition_point(|&n| n < span.start) + 1
    }

    fn problem_at(&mut self, line: usize, message: impl Into<String>) {
        self.problems.push(Problem {
            line: Some(line),
            key: String::new(),
            message: message.into(),
        });
    }

    fn problem(&mut self, message: impl Into<String>) {
        self.problems.push(Problem {
            line: None,
            key: String::new(),
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
                    key: String::new(),
                    message: format!("TOML syntax error: {}", e.message().trim()),
                });
                return None;
            }
        };
        let root = root.get_ref();
        let mut tables: Vec<(&str, &Table, usize)> = Vec::new();
        let mut lists: Vec<(&str, Vec<&Spanned<DeValue>>)> = Vec::new();
        for (key, value) in root.iter() {
            let name: &str = key.get_ref();
            let line = self.line(key.span());
            match (name, value.get_ref()) {
                ("scoring" | "urgency" | "language", DeValue::Table(t)) => {
                    tables.push((name, t, line))
                }
                ("scoring" | "urgency" | "language", _) => {
                    self.problem_at(line, format!("`{name}` must be a table ([{name}])"))
                }
                ("level" | "category" | "rule" | "feature", DeValue::Array(a)) => {
                    lists.push((name, a.iter().collect()))
                }
                ("level" | "category" | "rule" | "feature", _) => self.problem_at(
                    line,
                    format!("`{name}` must be an array of tables ([[{name}]])"),
                ),
                (other, _) => self.problem_at(
                    line,
                    format!("unknown key `{other}` (expected one of: {TOP_KEYS})"),
                ),
            }
        }
        let table = |n: &str| tables.iter().find(|t| t.0 == n).map(|t| (t.1, t.2));
        let list = |n: &str| {
            lists
                .iter()
                .find(|l| l.0 == n)
                .map(|l| l.1.clone())
                .unwrap_or_default()
        };

        let levels = self.levels(list("level"));
        let categories = self.categories(list("category"));
        let mut phrases = PhraseSet::default();

        // [scoring]
        let mut default_category = ("general".to_string(), 1);
        let (mut category_threshold, mut subject_multiplier) = (1.0, 1.0);
        let mut weights_file = None;
        if let Some((t, at)) = table("scoring") {
            let mut f = Fields::new(self, t, "[scoring]", at);
            if let Some(v) = f.string("default_category") {
                default_category = v;
            }
            if let Some((v, _)) = f.number("category_threshold") {
                category_threshold = v;
            }
            if let Some((v, _)) = f.number("subject_multiplier") {
                subject_multiplier = v;
            }
            weights_file = f.string("weights_file").map(|(s, _)| s);
            for old in ["default_urgency", "urgency_threshold"] {
                if let Some((_, line)) = f.get(old) {
                    f.parser.problem_at(line, format!("[scoring]: `{old}` is gone: urgency comes from [[feature]] entries and the [urgency] decisions"));
                }
            }
            f.finish();
        }
        if !categories.is_empty() && !categories.iter().any(|c| c.id == default_category.0) {
            let (c, line) = &default_category;
            self.problem_at(
                *line,
                format!("default_category `{c}` is not a defined category"),
            );
        }

        // [urgency]
        let mut model = Model::default();
        if let Some((t, at)) = table("urgency") {
            let mut f = Fields::new(self, t, "[urgency]", at);
            for (slot, key) in
                model
                    .bias
                    .iter_mut()
                    .zip(["impact_bias", "stopped_bias", "prompt_bias"])
            {
                if let Some((v, _)) = f.number(key) {
                    *slot = v;
                }
            }
            if let Some((v, line)) = f.number("margin") {
                if v < 0.0 {
                    f.parser
                        .problem_at(line, "[urgency]: `margin` must be >= 0");
                }
                model.margin = v;
            }
            if let Some((v, line)) = f.number("capitals_ratio") {
                if !(0.0..=1.0).contains(&v) {
                    f.parser
                        .problem_at(line, "[urgency]: `capitals_ratio` must be between 0 and 1");
                }
                model.capitals_ratio = v;
            }
            f.finish();
        } else {
            self.problem("no [urgency] table (impact_bias, stopped_bias, prompt_bias, margin)");
        }

        // [language]
        let mut languages = Languages::default();
        if let Some((t, at)) = table("language") {
            let mut f = Fields::new(self, t, "[language]", at);
            let detect = f.strings("detect");
            let default = f.string("default");
            f.finish();
            let detect = detect.unwrap_or_default();
            let default = default.unwrap_or_else(|| ("en".into(), 1));
            match Languages::new(&detect, &default) {
                Ok(l) => languages = l,
                Err((line, msg)) => self.problem_at(line, format!("[language]: {msg}")),
            }
        }

        let rules = self.rules(list("rule"), &categories, &mut phrases, subject_multiplier);
        let features = self.features(list("feature"), &categories, &mut phrases);

        if !self.problems.is_empty() {
            return None;
        }
        Some(Rules {
            phrases,
            levels,
            categories,
            rules,
            features,
            default_category: default_category.0,
            category_threshold,
            model,
            languages,
            weights_file,
            weights: None,
            category_matrix: Vec::new(),
            ngram_table: Default::default(),
        })
    }

    fn table_item<'a, 'i>(
        &mut self,
        item: &'a Spanned<DeValue<'i>>,
        what: &str,
    ) -> Option<&'a Table<'i>> {
        match item.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                let line = self.line(item.span());
                self.problem_at(
                    line,
                    format!("each `{what}` entry must be a table ([[{what}]])"),
                );
                None
            }
        }
    }

    fn levels(&mut self, items: Vec<&Spanned<DeValue>>) -> Vec<Level> {
        let mut levels: Vec<Level> = Vec::new();
        for item in items {
            let Some(mut f) = self.entry(item, "level") else {
                continue;
            };
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
            let Some(lv) = u8::try_from(lv).ok().filter(|l| (1..=4).contains(l)) else {
                self.problem_at(lv_line, format!("level {lv} out of range 1..=4"));
                continue;
            };
            let Ok(first) = u32::try_from(first) else {
                self.problem_at(fl, format!("level {lv}: first_response_hours must be >= 0"));
                continue;
            };
            let Ok(res) = u32::try_from(res) else {
                self.problem_at(rl, format!("level {lv}: resolution_hours must be >= 0"));
                continue;
            };
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
        for lv in 1..=4u8 {
            if !levels.iter().any(|l| l.level == lv) {
                self.problem(format!(
                    "no [[level]] {lv}: the urgency decisions give levels 1 to 4, define each"
                ));
            }
        }
        levels
    }

    fn categories(&mut self, items: Vec<&Spanned<DeValue>>) -> Vec<Category> {
        let mut categories: Vec<Category> = Vec::new();
        if items.is_empty() {
            self.problem("no [[category]] defined");
        }
        for item in items {
            let Some(mut f) = self.entry(item, "category") else {
                continue;
            };
            let id = f.string("id");
            let name = f.string("name");
            f.require(&[("id", id.is_some()), ("name", name.is_some())]);
            f.finish();
            let (Some((id, id_line)), Some((name, _))) = (id, name) else {
                continue;
            };
            if id.trim().is_empty() {
                self.problem_at(id_line, "category id must not be empty");
            } else if categories.iter().any(|c| c.id == id) {
                self.problem_at(id_line, format!("duplicate category id `{id}`"));
            } else {
                categories.push(Category { id, name });
            }
        }
        categories
    }

    /// Category ids → indexes, reporting unknown ones.
    fn category_indexes(
        &mut self,
        list: Option<Vec<(String, usize)>>,
        categories: &[Category],
        label: &str,
    ) -> Vec<usize> {
        let mut out = Vec::new();
        for (c, line) in list.unwrap_or_default() {
            match categories.iter().position(|k| k.id == c) {
                Some(i) => out.push(i),
                None if categories.is_empty() => {}
                None => self.problem_at(line, format!("{label}: unknown category `{c}`")),
            }
        }
        out
    }

    fn rules(
        &mut self,
        items: Vec<&Spanned<DeValue>>,
        categories: &[Category],
        phrases: &mut PhraseSet,
        subject_multiplier: f64,
    ) -> Vec<CategoryRule> {
        let mut out = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for item in items {
            let Some(mut f) = self.entry(item, "rule") else {
                continue;
            };
            let (id, label) = f.id_and_label("rule");
            let category = f.strings("category");
            let patterns = f.patterns("patterns", phrases);
            let except = f.patterns("except", phrases).unwrap_or_default();
            let unless = f.patterns("unless", phrases).unwrap_or_default();
            let weight = f.number("weight").map_or(1.0, |(w, _)| w);
            let subject_weight = f.number("subject_weight").map(|(w, _)| w);
            let each_pattern = f.bool("each_pattern").unwrap_or(false);
            if let Some((_, l)) = f.get("urgency") {
                f.parser.problem_at(l, format!("{label}: `urgency` on a [[rule]] is gone: urgency comes from [[feature]] entries"));
            }
            f.require(&[
                ("id", id.is_some()),
                ("category", category.is_some()),
                ("patterns", patterns.is_some()),
            ]);
            f.finish();
            let categories = self.category_indexes(category, categories, &label);
            let Some((id, id_line)) = id else { continue };
            if !seen.insert(id.clone()) {
                self.problem_at(id_line, format!("duplicate rule id `{id}`"));
            }
            out.push(CategoryRule {
                id,
                categories,
                patterns: patterns.unwrap_or_default(),
                except,
                unless,
                body_weight: weight,
                subject_weight: subject_weight.unwrap_or(weight * subject_multiplier),
                each_pattern,
            });
        }
        out
    }

    fn features(
        &mut self,
        items: Vec<&Spanned<DeValue>>,
        categories: &[Category],
        phrases: &mut PhraseSet,
    ) -> Vec<Feature> {
        let mut out: Vec<Feature> = Vec::new();
        for item in items {
            let Some(mut f) = self.entry(item, "feature") else {
                continue;
            };
            let (id, label) = f.id_and_label("feature");
            let patterns = f.patterns("patterns", phrases);
            let except = f.patterns("except", phrases).unwrap_or_default();
            let unless = f.patterns("unless", phrases).unwrap_or_default();
            let signal = f.string("signal");
            let cats = f.strings("categories");
            let refs: Vec<_> = ["all_of", "any_of", "none_of"]
                .iter()
                .map(|k| f.strings(k))
                .collect();
            let mut weights = [0.0; 3];
            for (i, key) in ["impact", "stopped", "prompt"].iter().enumerate() {
                if let Some((w, _)) = f.number(key) {
                    weights[i] = w;
                }
            }
            f.require(&[("id", id.is_some())]);
            f.finish();
            let Some((id, id_line)) = id else { continue };
            if out.iter().any(|o| o.id == id) {
                self.problem_at(id_line, format!("duplicate feature id `{id}`"));
            }
            let signal = signal.and_then(|(s, l)| match Signal::parse(&s) {
                Some(sig) => Some(sig),
                None => {
                    self.problem_at(
                        l,
                        format!(
                            "{label}: unknown signal `{s}` (expected one of: {})",
                            Signal::NAMES
                        ),
                    );
                    None
                }
            });
            let has_cats = cats.is_some();
            let categories = self.category_indexes(cats, categories, &label);
            let mut resolved: [Vec<usize>; 3] = Default::default();
            for (slot, list) in resolved.iter_mut().zip(refs) {
                for (r, l) in list.unwrap_or_default() {
                    match out.iter().position(|o| o.id == r) {
                        Some(i) => slot.push(i),
                        None => self.problem_at(
                            l,
                            format!("{label}: `{r}` is not a feature defined above this one"),
                        ),
                    }
                }
            }
            let [all_of, any_of, none_of] = resolved;
            if patterns.is_none()
                && signal.is_none()
                && !has_cats
                && all_of.is_empty()
                && any_of.is_empty()
            {
                self.problem_at(
                    id_line,
                    format!(
                        "{label}: needs `patterns`, `signal`, `categories`, `all_of` or `any_of`"
                    ),
                );
            }
            out.push(Feature {
                id,
                patterns: patterns.unwrap_or_default(),
                except,
                unless,
                signal,
                categories,
                all_of,
                any_of,
                none_of,
                weights,
            });
        }
        out
    }
}

/// Typed access to the keys of one table; remembers which keys were read so that the rest
/// can be reported as unknown.
struct Fields<'p, 't, 'a, 'i> {
    parser: &'p mut Parser<'t>,
    table: &'a Table<'i>,
    used: Vec<&'static str>,
    context: String,
    line: usize,
}

impl<'t> Parser<'t> {
    /// The keys of one `[[what]]` entry; None (reported) for an entry that is no table.
    fn entry<'p, 'a, 'i>(
        &'p mut self,
        item: &'a Spanned<DeValue<'i>>,
        what: &str,
    ) -> Option<Fields<'p, 't, 'a, 'i>> {
        let t = self.table_item(item, what)?;
        let at = self.line(item.span());
        Some(Fields::new(self, t, &format!("[[{what}]]"), at))
    }
}

impl<'p, 't, 'a, 'i> Fields<'p, 't, 'a, 'i> {
    /// The entry's `id`, and how problems name the entry from now on (`what `ID``, or
    /// `[[what]] (no id)`).
    fn id_and_label(&mut self, what: &str) -> (Option<(String, usize)>, String) {
        let id = self.string("id");
        let label = id.as_ref().map_or_else(
            || format!("[[{what}]] (no id)"),
            |(s, _)| format!("{what} `{s}`"),
        );
        self.context = label.clone();
        (id, label)
    }

    /// `at`: the table's own line, for an empty table (a missing key is reported there).
    fn new(parser: &'p mut Parser<'t>, table: &'a Table<'i>, context: &str, at: usize) -> Self {
        let line = table
            .iter()
            .map(|(k, _)| parser.line(k.span()))
            .min()
            .unwrap_or(at);
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
            match item.get_ref() {
                DeValue::String(s) => out.push((s.to_string(), item_line)),
                _ => self.wrong_type(key, item_line, "a string or an array of strings"),
            }
        }
        Some(out)
    }

    /// Phrase patterns, compiled into `set`; each bad one is reported at its own line.
    fn patterns(&mut self, key: &'static str, set: &mut PhraseSet) -> Option<Vec<usize>> {
        let list = self.strings(key)?;
        if list.is_empty() {
            let line = self.line;
            let ctx = self.context.clone();
            self.parser
                .problem_at(line, format!("{ctx}: `{key}` is empty"));
        }
        let mut ids = Vec::new();
        for (source, line) in list {
            match set.add(&source) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    let ctx = self.context.clone();
                    self.parser.problem_at(
                        line,
                        format!("{ctx}: bad pattern in `{key}`: {source:?}: {e}"),
                    );
                }
            }
        }
        Some(ids)
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

    fn require(&mut self, keys: &[(&str, bool)]) {
        // A key that is present but of the wrong type was already reported.
        for (key, ok) in keys {
            let present = self.table.iter().any(|(k, _)| {
                let name: &str = k.get_ref();
                name == *key
            });
            if !ok && !present {
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
