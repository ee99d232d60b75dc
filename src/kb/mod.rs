//! The Help Center (issue 14): articles in `kb/*.md` ([`article`]), their full-text index
//! (the store's `kb_articles` and FTS5 `kb_fts`, rebuilt whole from the files by
//! `supportd kb reindex`, at start-up and on SIGHUP), the suggestions a new ticket's
//! acknowledgement lists ([`suggest`]), and the drafts agents make with `#kb` ([`draft`]).
//!
//! Only [`load_dir`] reads files; everything else here is pure.

use std::path::Path;

use crate::toml_check::Problems;

pub mod article;
pub mod draft;
pub mod suggest;

pub use article::Article;
pub use suggest::{Candidate, Suggestion};

/// What a `kb/` directory holds: the articles that parsed, and every file's problems.
#[derive(Debug, Default)]
pub struct Loaded {
    pub articles: Vec<Article>,
    pub problems: Vec<Problems>,
}

impl Loaded {
    /// The problems as `check-config` prints them, one file after another.
    pub fn report(&self) -> String {
        self.problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Reads every `*.md` directly in `dir` (not `drafts/`: a draft is never published by
/// itself), in name order. A file that cannot be read or parsed is reported with its line and
/// left out; the others load. A missing directory holds no article.
pub fn load_dir(dir: &Path) -> Loaded {
    let mut loaded = Loaded::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return loaded,
        Err(e) => {
            loaded.problems.push(Problems::file(
                &dir.display().to_string(),
                format!("cannot read the Help Center directory: {e}"),
            ));
            return loaded;
        }
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "md"))
        .collect();
    paths.sort();
    for path in paths {
        let name = path.display().to_string();
        let slug = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(_) => {
                    loaded
                        .problems
                        .push(Problems::file(&name, "the file is not UTF-8 text"));
                    continue;
                }
            },
            Err(e) => {
                loaded
                    .problems
                    .push(Problems::file(&name, format!("cannot read the file: {e}")));
                continue;
            }
        };
        match article::parse(&name, &slug, &text) {
            Ok(a) => loaded.articles.push(a),
            Err(p) => loaded.problems.push(p),
        }
    }
    loaded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_file_does_not_stop_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let good = "+++\ntitle = \"A\"\ncategory = \"general\"\nkeywords = [\"a\"]\n+++\nText\n";
        std::fs::write(dir.path().join("a.md"), good).unwrap();
        std::fs::write(dir.path().join("b.md"), "+++\ntitle = 3\n+++\nx\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        std::fs::create_dir(dir.path().join("drafts")).unwrap();
        std::fs::write(dir.path().join("drafts/c.md"), good).unwrap();
        let l = load_dir(dir.path());
        assert_eq!(l.articles.len(), 1);
        assert_eq!(l.articles[0].slug, "a");
        assert_eq!(l.problems.len(), 1);
        assert!(l.report().contains("b.md:2: key `title`"), "{}", l.report());
        assert!(load_dir(&dir.path().join("missing")).articles.is_empty());
    }
}
