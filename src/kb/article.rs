//! One Help Center article: a Markdown file with TOML front matter between `+++` lines. Pure:
//! text in, an [`Article`] or the file's problems (each with its line) out.
//!
//! ```text
//! +++
//! title = "Reactivating a user"
//! category = "user-access"
//! keywords = ["reactivate", "deactivated account"]
//! languages = ["en"]            # optional: the customers' languages it is suggested to
//! +++
//! Markdown...
//! ```

use pulldown_cmark::{html, Event, Options, Parser, Tag, TagEnd};
use serde::Deserialize;

use crate::toml_check::{Collector, Document, Problem, Problems};

/// The front matter's keys; anything else is an error naming its line.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FrontMatter {
    title: String,
    category: String,
    keywords: Vec<String>,
    languages: Vec<String>,
}

/// A parsed article, ready to index and show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Article {
    /// The file name without `.md`: `/help/{slug}`.
    pub slug: String,
    pub title: String,
    /// A triage category id (or any grouping word the admin chooses).
    pub category: String,
    /// Words and phrases customers use for this problem; weighed above the body.
    pub keywords: Vec<String>,
    /// ISO 639-1 codes of the customers it may be suggested to; empty = any.
    pub languages: Vec<String>,
    /// The Markdown source of the body.
    pub markdown: String,
    /// The body as plain text (what the index holds).
    pub text: String,
    /// The body as HTML (raw HTML in the source is shown as text, never passed through).
    pub html: String,
    /// Where it came from, for admins.
    pub path: String,
}

/// Whether `slug` can name an article: lower-case ASCII letters, digits and `-`.
pub fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 100
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
}

/// Parses the article in `text`; `path` names the file in problems, `slug` its address.
pub fn parse(path: &str, slug: &str, text: &str) -> Result<Article, Problems> {
    let problem = |line: usize, message: String| Problems {
        origin: path.to_string(),
        problems: vec![Problem {
            line: Some(line),
            key: String::new(),
            message,
        }],
    };
    if !valid_slug(slug) {
        return Err(Problems::file(
            path,
            format!(
                "`{slug}` cannot be an article's address: name the file with lower-case letters, digits and `-` (e.g. reactivate-user.md)"
            ),
        ));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or("");
    if first.trim_end() != "+++" {
        return Err(problem(
            1,
            "no front matter: an article starts with a `+++` line, then title, category and keywords in TOML, then `+++`".into(),
        ));
    }
    let mut offset = first.len();
    let mut front_end = None;
    for (i, line) in lines.enumerate() {
        if line.trim_end() == "+++" {
            // i counts from the second line; the closing line is line i + 2.
            front_end = Some((offset, offset + line.len(), i + 2));
            break;
        }
        offset += line.len();
    }
    let Some((front_stop, body_start, closing_line)) = front_end else {
        return Err(problem(
            1,
            "the front matter opened here is never closed by a `+++` line".into(),
        ));
    };
    let front = text.get(first.len()..front_stop).unwrap_or("");
    let body = text.get(body_start..).unwrap_or("");
    // Problems of the front matter are placed in the file: its first line is line 2.
    let shift = |mut p: Problems| {
        for q in &mut p.problems {
            q.line = Some(q.line.map_or(1, |l| l + 1));
        }
        p.origin = path.to_string();
        p
    };
    let doc = Document::parse(front).map_err(|e| shift(e.into_error(path)))?;
    let (fm, found) = doc.deserialize::<FrontMatter>();
    let mut check = Collector::new(&doc);
    check.extend(found);
    if let Some(fm) = &fm {
        if fm.title.trim().is_empty() {
            check.at_key("title", "an article needs a title");
        }
        if fm.category.trim().is_empty() {
            check.at_key("category", "an article needs a category");
        }
        if fm.keywords.iter().all(|k| k.trim().is_empty()) {
            check.at_key("keywords", "an article needs at least one keyword");
        }
        for (i, l) in fm.languages.iter().enumerate() {
            if l.len() != 2 || !l.bytes().all(|b| b.is_ascii_lowercase()) {
                check.at_key(
                    format!("languages[{i}]"),
                    format!("`{l}` is no ISO 639-1 code (two lower-case letters: en, fr, es)"),
                );
            }
        }
    }
    let missing_keys = fm.is_none();
    if let Err(p) = check.finish(path) {
        return Err(shift(p));
    }
    let fm = match fm {
        Some(fm) if !missing_keys => fm,
        _ => return Err(problem(2, "the front matter could not be read".into())),
    };
    if body.trim().is_empty() {
        return Err(problem(
            closing_line,
            "the article has no text after its front matter".into(),
        ));
    }
    let (text_only, html) = render(body);
    Ok(Article {
        slug: slug.to_string(),
        title: fm.title.trim().to_string(),
        category: fm.category.trim().to_string(),
        keywords: fm
            .keywords
            .iter()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect(),
        languages: fm.languages,
        markdown: body.to_string(),
        text: text_only,
        html,
        path: path.to_string(),
    })
}

/// The Markdown as plain text and as HTML. Raw HTML is shown as text: an article is
/// written by staff, but its draft came from a ticket, and the page allows no markup
/// beyond Markdown's own.
pub fn render(markdown: &str) -> (String, String) {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let events: Vec<Event<'_>> = Parser::new_ext(markdown, options)
        .map(|e| match e {
            Event::Html(s) | Event::InlineHtml(s) => Event::Text(s),
            e => e,
        })
        .collect();
    let mut text = String::new();
    for e in &events {
        match e {
            Event::Text(s) | Event::Code(s) => text.push_str(s),
            Event::SoftBreak | Event::HardBreak => text.push(' '),
            Event::End(TagEnd::Paragraph | TagEnd::Heading(_) | TagEnd::Item)
            | Event::Start(Tag::Item) => text.push('\n'),
            _ => {}
        }
    }
    let mut out = String::new();
    html::push_html(&mut out, events.into_iter());
    (text.trim().to_string(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "+++\ntitle = \"Reactivating a user\"\ncategory = \"user-access\"\nkeywords = [\"reactivate\", \"deactivated\"]\n+++\n# Steps\n\nAsk your **site admin**.\n\n<script>alert(1)</script>\n";

    #[test]
    fn parses_front_matter_and_body() {
        let a = parse("kb/reactivate-user.md", "reactivate-user", GOOD).unwrap();
        assert_eq!(a.title, "Reactivating a user");
        assert_eq!(a.category, "user-access");
        assert_eq!(a.keywords, vec!["reactivate", "deactivated"]);
        assert!(a.languages.is_empty());
        assert!(a.html.contains("<strong>site admin</strong>"));
        assert!(a.html.contains("&lt;script&gt;"), "{}", a.html);
        assert!(!a.html.contains("<script>"));
        assert!(a.text.contains("Ask your site admin."), "{}", a.text);
    }

    #[test]
    fn problems_name_the_line() {
        let bad = "+++\ntitle = \"x\"\ncategory = \"general\"\nkeywords = [\"a\"]\ncolour = \"red\"\n+++\nText\n";
        let e = parse("kb/x.md", "x", bad).unwrap_err().to_string();
        assert!(e.contains("kb/x.md:5: key `colour`"), "{e}");

        let syntax = "+++\ntitle = \"x\ncategory = \"general\"\n+++\nText\n";
        let e = parse("kb/x.md", "x", syntax).unwrap_err().to_string();
        assert!(e.contains("kb/x.md:2:"), "{e}");

        let e = parse("kb/x.md", "x", "# no front matter\n").unwrap_err();
        assert_eq!(e.problems[0].line, Some(1));
        let e = parse("kb/x.md", "x", "+++\ntitle = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("never closed"), "{e}");

        let empty = "+++\ntitle = \"\"\ncategory = \"general\"\nkeywords = [\"a\"]\nlanguages = [\"french\"]\n+++\nText\n";
        let e = parse("kb/x.md", "x", empty).unwrap_err().to_string();
        assert!(e.contains("kb/x.md:2: key `title`"), "{e}");
        assert!(e.contains("kb/x.md:5: key `languages[0]`"), "{e}");

        let e = parse("kb/X Y.md", "X Y", GOOD).unwrap_err().to_string();
        assert!(e.contains("cannot be an article's address"), "{e}");
        let no_body = "+++\ntitle = \"x\"\ncategory = \"g\"\nkeywords = [\"a\"]\n+++\n\n";
        let e = parse("kb/x.md", "x", no_body).unwrap_err().to_string();
        assert!(e.contains("kb/x.md:5:"), "{e}");
    }
}
