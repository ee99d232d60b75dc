//! One reporter for TOML files (`supportd.toml`, the triage rules): every problem found at
//! once, each located by file, line and full key, ``file:line: key `mailbox[0].tls`: message``.
//! Pure: text in, values and problems out.
//!
//! Two ways in, usable together on one [`Document`]:
//! - [`Document::deserialize`] runs serde on the document. serde stops at the first error, so
//!   the offending entry is taken out of the spanned tree and serde runs again, until the rest
//!   is valid: every problem is reported, and the value built from what was valid (defaults
//!   in place of the bad entries) comes back too, so semantic checks still run on it.
//!   Domain types deserialized with `try_from`/`deserialize_with` report their own messages
//!   at their value's line (`address = "x"` → ``key `support.address`: `x` is not an email
//!   address``). One caveat: a `try_from` error inside an array is placed at the whole array
//!   (the element's deserializer has returned when it is raised); a type meant for arrays
//!   checks its value in its own `Visitor` instead (as `EmailAddress` does), and its error is
//!   placed at the element.
//! - A [`Collector`] records the problems found by hand: by key path ([`Collector::at_key`])
//!   for checks made on a deserialized value, or by byte span ([`Collector::at_span`]) for a
//!   reader that walks the spanned tree ([`Document::root`]) itself.
//!
//! ```
//! use supportd::toml_check::{Collector, Document};
//! #[derive(serde::Deserialize, Default)]
//! #[serde(deny_unknown_fields, default)]
//! struct Limits { max: u32 }
//! #[derive(serde::Deserialize, Default)]
//! #[serde(deny_unknown_fields, default)]
//! struct File { limits: Limits }
//!
//! let text = "[limits]\nmax = 0\nmin = 1\n";
//! let doc = Document::parse(text).map_err(|p| p.into_error("f.toml")).unwrap();
//! let (file, problems) = doc.deserialize::<File>();
//! let mut check = Collector::new(&doc);
//! check.extend(problems);
//! if file.is_some_and(|f| f.limits.max == 0) {
//!     check.at_key("limits.max", "must be above 0");
//! }
//! let err = check.finish("f.toml").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "f.toml: 2 configuration problems\n  \
//!      f.toml:2: key `limits.max`: must be above 0\n  \
//!      f.toml:3: key `limits.min`: unknown field `min`, expected `max`"
//! );
//! ```

use std::fmt;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::de::{DeArray, DeString, DeTable, DeValue};
use toml::Spanned;

/// One thing wrong with a TOML file, located as precisely as we can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// Full key path, e.g. `mailbox[0].port` or `support.address`; empty for the file as a
    /// whole (unreadable, a syntax error outside any key).
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    /// `LINE: key `KEY`: MESSAGE`, parts left out when unknown; [`Problems`] adds the file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "{line}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "key `{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem of one file; its `Display` is what `check-config` prints.
#[derive(Debug, Clone)]
pub struct Problems {
    /// The file, as named in every line (a path, or `built-in defaults`).
    pub origin: String,
    /// In file order; problems without a line last.
    pub problems: Vec<Problem>,
}

impl Problems {
    /// A problem with the file as a whole (it cannot be read, ...).
    pub fn file(origin: &str, message: impl Into<String>) -> Problems {
        Problems {
            origin: origin.to_string(),
            problems: vec![Problem {
                line: None,
                key: String::new(),
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {n} configuration problem{}",
            self.origin,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}", self.origin)?;
            if p.line.is_some() {
                write!(f, ":{p}")?;
            } else {
                write!(f, ": {p}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Syntax problems of [`Document::parse`], ready to become the file's [`Problems`].
#[derive(Debug, Clone)]
pub struct SyntaxProblems(pub Vec<Problem>);

impl SyntaxProblems {
    pub fn into_error(self, origin: &str) -> Problems {
        Problems {
            origin: origin.to_string(),
            problems: self.0,
        }
    }
}

/// At most this many problems are listed for one file; the rest are counted in one last
/// problem. A file of nothing but stray characters would otherwise make one problem per
/// character (16,297 for a 16 KB file, found by fuzzing), and the work per problem with them.
pub const MAX_LISTED: usize = 100;

/// A parsed TOML document with the spans of every key and value.
pub struct Document<'i> {
    text: &'i str,
    root: Spanned<DeTable<'i>>,
    /// The byte offset of each line's first character, for [`Document::line`].
    line_starts: Vec<usize>,
}

/// One step of a key path.
#[derive(Debug, Clone)]
enum Step<'i> {
    Key(Spanned<DeString<'i>>),
    Index(usize),
}

impl<'i> Document<'i> {
    /// Parses `text`; on TOML syntax errors, every one of them (the parser recovers and
    /// goes on), each at its line.
    pub fn parse(text: &'i str) -> Result<Document<'i>, SyntaxProblems> {
        let (root, errors) = DeTable::parse_recoverable(text);
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let doc = Document {
            text,
            root,
            line_starts,
        };
        if errors.is_empty() {
            return Ok(doc);
        }
        let mut problems: Vec<Problem> = errors
            .iter()
            .take(MAX_LISTED)
            .map(|e| {
                let span = e.span();
                Problem {
                    line: span.as_ref().map(|s| doc.line(s.start)),
                    key: span.map(|s| doc.key_at(&s)).unwrap_or_default(),
                    message: format!("TOML syntax error: {}", e.message().trim()),
                }
            })
            .collect();
        sort(&mut problems);
        if errors.len() > MAX_LISTED {
            problems.push(not_listed(format!(
                "{} more TOML syntax errors, not listed",
                errors.len() - MAX_LISTED
            )));
        }
        Err(SyntaxProblems(problems))
    }

    /// The document's top-level table, for readers that walk it themselves.
    pub fn root(&self) -> &DeTable<'i> {
        self.root.get_ref()
    }

    /// The 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        // The number of lines starting at or before `end`: at least the first, at 0.
        self.line_starts.partition_point(|start| *start <= end)
    }

    /// The full key path of the deepest key or value whose span holds all of `span`
    /// (`mailbox[0].tls`); empty when that is the whole document.
    pub fn key_at(&self, span: &Range<usize>) -> String {
        path_string(&find(self.root(), span).unwrap_or_default())
    }

    /// The line of a full key path (`agent[1].categories[0]`): of the key, or of the array
    /// element. A key that is absent is placed at its nearest present parent (the header of
    /// its table), and None when not even its table is in the file.
    pub fn line_of_key(&self, path: &str) -> Option<usize> {
        let mut table = Some(self.root());
        let mut array: Option<&DeArray<'i>> = None;
        let mut line = None;
        for step in parse_path(path) {
            let found = match step {
                PathStep::Key(k) => table
                    .and_then(|t| t.get_key_value(k.as_str()))
                    .map(|(key, value)| (key.span().start, value)),
                PathStep::Index(i) => array.and_then(|a| a.get(i)).map(|value| {
                    let start = match value.get_ref() {
                        // An [[array]] element starts at its first key.
                        DeValue::Table(t) => t.iter().map(|(k, _)| k.span().start).min(),
                        _ => None,
                    };
                    (start.unwrap_or(value.span().start), value)
                }),
            };
            let Some((start, value)) = found else {
                // Absent: at its nearest present parent, if any.
                return line;
            };
            line = Some(self.line(start));
            (table, array) = match value.get_ref() {
                DeValue::Table(t) => (Some(t), None),
                DeValue::Array(a) => (None, Some(a)),
                _ => (None, None),
            };
        }
        line
    }

    /// Deserializes the document into `T`, collecting every problem. The value comes back
    /// unless a problem left nothing to build it from (a required key missing at the top).
    pub fn deserialize<T: DeserializeOwned>(&self) -> (Option<T>, Vec<Problem>) {
        let mut work = self.root.clone();
        let mut problems: Vec<Problem> = Vec::new();
        loop {
            match T::deserialize(toml::de::Deserializer::from(work.clone())) {
                Ok(value) => {
                    sort(&mut problems);
                    return (Some(value), problems);
                }
                Err(e) => {
                    // The root's span is empty (0..0): an error there is the whole document's.
                    let span = e.span().filter(|s| *s != self.root.span());
                    let problem = Problem {
                        line: span.as_ref().map(|s| self.line(s.start)),
                        key: span.as_ref().map(|s| self.key_at(s)).unwrap_or_default(),
                        message: e.message().trim().to_string(),
                    };
                    // A required key taken out in an earlier round is now missing: that was
                    // reported already, as what was wrong with its value.
                    if !problems.iter().any(|p| p.key == missing_key(&problem)) {
                        problems.push(problem);
                    }
                    // Each round removes one entry, so this ends; an error that names no
                    // removable entry (the whole document) ends it at once. Past
                    // MAX_LISTED problems the rest is not looked for: each round
                    // deserializes the whole document again.
                    if problems.len() >= MAX_LISTED {
                        sort(&mut problems);
                        problems.push(not_listed(
                            "more problems may follow, not looked for".to_string(),
                        ));
                        return (None, problems);
                    }
                    let removed = span.is_some_and(|s| remove(work.get_mut(), &s));
                    if !removed {
                        sort(&mut problems);
                        return (None, problems);
                    }
                }
            }
        }
    }
}

/// The last problem of a list cut at [`MAX_LISTED`].
fn not_listed(what: String) -> Problem {
    Problem {
        line: None,
        key: String::new(),
        message: format!("{what} (fix the ones above first)"),
    }
}

/// For serde's "missing field `x`" in table `a.b`: `a.b.x`; empty otherwise.
fn missing_key(p: &Problem) -> String {
    let field = p
        .message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'));
    match field {
        Some(f) if p.key.is_empty() => f.to_string(),
        Some(f) => format!("{}.{f}", p.key),
        None => String::new(),
    }
}

fn sort(problems: &mut [Problem]) {
    problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
}

/// Whether `span` holds all of `inner`.
fn contains(span: &Range<usize>, inner: &Range<usize>) -> bool {
    span.start <= inner.start && inner.end <= span.end
}

/// The path to the deepest key or array element whose key or value span holds `at`.
/// Tables are searched whatever their own span: a `[table]`'s value span covers its header
/// only, while its keys follow.
fn find<'i>(table: &DeTable<'i>, at: &Range<usize>) -> Option<Vec<Step<'i>>> {
    for (key, value) in table.iter() {
        if let Some(mut deeper) = find_in_value(value, at) {
            deeper.insert(0, Step::Key(key.clone()));
            return Some(deeper);
        }
        if contains(&key.span(), at) || contains(&value.span(), at) {
            return Some(vec![Step::Key(key.clone())]);
        }
    }
    None
}

/// Like [`find`], strictly inside `value` (not `value` itself).
fn find_in_value<'i>(value: &Spanned<DeValue<'i>>, at: &Range<usize>) -> Option<Vec<Step<'i>>> {
    match value.get_ref() {
        DeValue::Table(t) => find(t, at),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            if let Some(mut deeper) = find_in_value(item, at) {
                deeper.insert(0, Step::Index(i));
                Some(deeper)
            } else {
                contains(&item.span(), at).then(|| vec![Step::Index(i)])
            }
        }),
        _ => None,
    }
}

/// Takes the deepest entry holding `at` out of `table`; false if there is none.
fn remove(table: &mut DeTable<'_>, at: &Range<usize>) -> bool {
    match find(table, at) {
        Some(path) => remove_path(table, &path),
        None => false,
    }
}

fn remove_path(table: &mut DeTable<'_>, path: &[Step<'_>]) -> bool {
    match path {
        [Step::Key(k)] => table.remove(k.get_ref().as_ref()).is_some(),
        [Step::Key(k), rest @ ..] => match table.get_mut(k.get_ref().as_ref()) {
            Some(v) => remove_in_value(v.get_mut(), rest),
            None => false,
        },
        _ => false,
    }
}

fn remove_in_value(value: &mut DeValue<'_>, path: &[Step<'_>]) -> bool {
    match (value, path) {
        (DeValue::Table(t), _) => remove_path(t, path),
        (DeValue::Array(items), [Step::Index(i), rest @ ..]) => {
            if rest.is_empty() {
                // DeArray has no `remove`: rebuild it without the element.
                let mut kept = DeArray::new();
                for (j, item) in items.iter().enumerate() {
                    if j != *i {
                        kept.push(item.clone());
                    }
                }
                let removed = kept.len() < items.len();
                *items = kept;
                removed
            } else {
                match items.get_mut(*i) {
                    Some(item) => remove_in_value(item.get_mut(), rest),
                    None => false,
                }
            }
        }
        _ => false,
    }
}

/// `a.b[0].c`; keys that are not bare TOML keys are quoted.
fn path_string(path: &[Step<'_>]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let k: &str = k.get_ref();
                let bare = !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if bare {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

enum PathStep {
    Key(String),
    Index(usize),
}

/// The inverse of [`path_string`].
fn parse_path(path: &str) -> Vec<PathStep> {
    let mut steps = Vec::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {}
            '[' => {
                let digits: String = chars.by_ref().take_while(|c| *c != ']').collect();
                steps.push(PathStep::Index(digits.trim().parse().unwrap_or(usize::MAX)));
            }
            '"' => {
                let mut key = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => key.extend(chars.next()),
                        '"' => break,
                        c => key.push(c),
                    }
                }
                steps.push(PathStep::Key(key));
            }
            c => {
                let mut key = String::from(c);
                while let Some(c) = chars.next_if(|c| *c != '.' && *c != '[') {
                    key.push(c);
                }
                steps.push(PathStep::Key(key));
            }
        }
    }
    steps
}

/// Problems of one file, gathered from serde ([`Collector::extend`]) and from checks made by
/// hand, then reported together ([`Collector::finish`]).
pub struct Collector<'d, 'i> {
    doc: &'d Document<'i>,
    problems: Vec<Problem>,
}

impl<'d, 'i> Collector<'d, 'i> {
    pub fn new(doc: &'d Document<'i>) -> Collector<'d, 'i> {
        Collector {
            doc,
            problems: Vec::new(),
        }
    }

    /// Problems found elsewhere ([`Document::deserialize`]).
    pub fn extend(&mut self, problems: impl IntoIterator<Item = Problem>) {
        self.problems.extend(problems);
    }

    /// A problem with the value at a full key path, located by [`Document::line_of_key`].
    pub fn at_key(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        self.problems.push(Problem {
            line: self.doc.line_of_key(&key),
            key,
            message: message.into(),
        });
    }

    /// A problem at a byte span of the document (a key's or a value's `span()`): its line,
    /// and the full key path there.
    pub fn at_span(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.problems.push(Problem {
            line: Some(self.doc.line(span.start)),
            key: self.doc.key_at(&span),
            message: message.into(),
        });
    }

    /// A problem with the file as a whole.
    pub fn whole_file(&mut self, message: impl Into<String>) {
        self.problems.push(Problem {
            line: None,
            key: String::new(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// Every problem in file order, or Ok when there is none.
    pub fn finish(mut self, origin: &str) -> Result<(), Problems> {
        if self.problems.is_empty() {
            return Ok(());
        }
        sort(&mut self.problems);
        if self.problems.len() > MAX_LISTED + 1 {
            let more = self.problems.len() - MAX_LISTED;
            self.problems.truncate(MAX_LISTED);
            self.problems
                .push(not_listed(format!("{more} more problems, not listed")));
        }
        Err(Problems {
            origin: origin.to_string(),
            problems: self.problems,
        })
    }
}

#[cfg(test)]
mod tests;
