//! The Help Center's index (migration 0016): `kb_articles` and the FTS5 table `kb_fts`,
//! rebuilt whole from the `kb/` files; searched by the pages (`/help?q=`) and by the
//! suggestions of a new ticket's acknowledgement.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

use super::{exec, query_all, query_opt, ts, Store, StoreError, Tx};
use crate::kb::{Article, Candidate};

/// bm25 column weights: title, keywords, body. A keyword is what the article's author said
/// customers write; a word of the body may be incidental.
const RANK: &str = "bm25(kb_fts, 4.0, 6.0, 1.0)";
/// Suggestions rank on the title and keywords only (`kb_suggest_fts`).
const SUGGEST_RANK: &str = "bm25(kb_suggest_fts, 1.0, 1.0)";

/// One article as the pages show it.
#[derive(Debug, Clone)]
pub struct KbArticle {
    pub slug: String,
    pub title: String,
    pub category: String,
    pub keywords: Vec<String>,
    pub body_html: String,
}

/// One search result.
#[derive(Debug, Clone)]
pub struct KbHit {
    pub slug: String,
    pub title: String,
    pub category: String,
    /// A plain-text excerpt around the matched words (FTS5 `snippet`, no markup).
    pub snippet: String,
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl Store {
    /// Replaces the whole index with `articles`, in one transaction (a search sees the old
    /// set or the new one, never half).
    pub fn kb_replace(&self, articles: &[Article], now: DateTime<Utc>) -> Result<(), StoreError> {
        super::blocking(|| {
            let tx = self.begin()?;
            let c = tx.conn();
            exec(c, "DELETE FROM kb_fts", [])?;
            exec(c, "DELETE FROM kb_suggest_fts", [])?;
            exec(c, "DELETE FROM kb_articles", [])?;
            for a in articles {
                exec(
                    c,
                    "INSERT INTO kb_articles (slug, title, category, keywords, languages,
                         body_text, body_html, path, indexed_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        a.slug,
                        a.title,
                        a.category,
                        a.keywords.join(", "),
                        a.languages.join(","),
                        a.text,
                        a.html,
                        a.path,
                        ts(now)
                    ],
                )?;
                let rowid = c.last_insert_rowid();
                exec(
                    c,
                    "INSERT INTO kb_fts (rowid, title, keywords, body) VALUES (?1, ?2, ?3, ?4)",
                    params![rowid, a.title, a.keywords.join(" \u{2022} "), a.text],
                )?;
                exec(
                    c,
                    "INSERT INTO kb_suggest_fts (rowid, title, keywords) VALUES (?1, ?2, ?3)",
                    params![rowid, a.title, a.keywords.join(" \u{2022} ")],
                )?;
            }
            tx.commit()
        })
    }

    /// The article `slug`, if indexed.
    pub fn kb_article(&self, slug: &str) -> Result<Option<KbArticle>, StoreError> {
        self.with_conn(|c| {
            query_opt(
                c,
                "SELECT slug, title, category, keywords, body_html FROM kb_articles WHERE slug = ?1",
                params![slug],
                |r| {
                    Ok(KbArticle {
                        slug: r.get("slug")?,
                        title: r.get("title")?,
                        category: r.get("category")?,
                        keywords: list(&r.get::<_, String>("keywords")?),
                        body_html: r.get("body_html")?,
                    })
                },
            )
        })
    }

    /// Every indexed article, by title (the Help Center's front page).
    pub fn kb_all(&self) -> Result<Vec<KbHit>, StoreError> {
        self.with_conn(|c| {
            query_all(
                c,
                "SELECT slug, title, category, substr(body_text, 1, 160) AS snippet
                 FROM kb_articles ORDER BY category, title",
                [],
                |r| {
                    Ok(KbHit {
                        slug: r.get("slug")?,
                        title: r.get("title")?,
                        category: r.get("category")?,
                        snippet: r.get("snippet")?,
                    })
                },
            )
        })
    }

    /// The articles matching `fts_query` (an FTS5 MATCH expression, see
    /// `kb::suggest::fts_query`), best first, at most `limit`.
    pub fn kb_search(&self, fts_query: &str, limit: u32) -> Result<Vec<KbHit>, StoreError> {
        self.with_conn(|c| {
            query_all(
                c,
                &format!(
                    "SELECT a.slug, a.title, a.category,
                            snippet(kb_fts, 2, '', '', ' … ', 24) AS snippet
                     FROM kb_fts JOIN kb_articles a ON a.rowid = kb_fts.rowid
                     WHERE kb_fts MATCH ?1 ORDER BY {RANK} LIMIT ?2"
                ),
                params![fts_query, limit],
                |r| {
                    Ok(KbHit {
                        slug: r.get("slug")?,
                        title: r.get("title")?,
                        category: r.get("category")?,
                        snippet: r.get("snippet")?,
                    })
                },
            )
        })
    }

    /// [`Tx::kb_candidates`] outside a transaction (`supportd suggest`).
    pub fn kb_candidates(&self, fts_query: &str, limit: u32) -> Result<Vec<Candidate>, StoreError> {
        self.with_conn(|c| candidates(c, fts_query, limit))
    }
}

impl Tx {
    /// The articles ranked for a mail's words, best first, at most `limit`.
    pub fn kb_candidates(&self, fts_query: &str, limit: u32) -> Result<Vec<Candidate>, StoreError> {
        candidates(self.conn(), fts_query, limit)
    }
}

fn candidates(c: &Connection, fts_query: &str, limit: u32) -> Result<Vec<Candidate>, StoreError> {
    query_all(
        c,
        &format!(
            "SELECT a.slug, a.title, a.languages, -{SUGGEST_RANK} AS score,
                    highlight(kb_suggest_fts, 0, char(1), char(2)) AS t,
                    highlight(kb_suggest_fts, 1, char(1), char(2)) AS k
             FROM kb_suggest_fts JOIN kb_articles a ON a.rowid = kb_suggest_fts.rowid
             WHERE kb_suggest_fts MATCH ?1 ORDER BY {SUGGEST_RANK} LIMIT ?2"
        ),
        params![fts_query, limit],
        |r| {
            Ok(Candidate {
                slug: r.get("slug")?,
                title: r.get("title")?,
                score: r.get("score")?,
                languages: list(&r.get::<_, String>("languages")?),
                matched: marked(&[r.get::<_, String>("t")?, r.get::<_, String>("k")?]),
            })
        },
    )
}

/// The words `highlight()` marked (between \x01 and \x02), lower-cased, distinct.
fn marked(columns: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in columns {
        for part in c.split('\u{1}').skip(1) {
            let word = part.split('\u{2}').next().unwrap_or("").to_lowercase();
            if !word.is_empty() && !out.contains(&word) {
                out.push(word);
            }
        }
    }
    out
}
