//! The Help Center's index (migration 0016): `kb_articles`, rebuilt whole from the `kb/`
//! files, searched by the pages (`/help?q=`) and by the suggestions of a new ticket's
//! acknowledgement. On SQLite the full-text index is the FTS5 tables `kb_fts` and
//! `kb_suggest_fts`, ranked with bm25; on PostgreSQL it is two generated `tsvector` columns
//! of `kb_articles` (`search`, `suggest`) with GIN indexes, ranked with `ts_rank_cd`.
//!
//! Callers give the mail's or the visitor's words ([`crate::kb::suggest::terms`]), never a
//! query expression: each backend quotes them (words are searched as words, never as
//! operators).

use chrono::{DateTime, Utc};

use super::sql::{Db, Row};
use super::{args, exec, query_all, query_one, ts, Store, StoreError, Tx};
use crate::kb::suggest::{fts_query, pg_terms, websearch_query};
use crate::kb::{Article, Candidate};

/// bm25 column weights: title, keywords, body. A keyword is what the article's author said
/// customers write; a word of the body may be incidental.
const RANK: &str = "bm25(kb_fts, 4.0, 6.0, 1.0)";
/// Suggestions rank on the title and keywords only (`kb_suggest_fts`).
const SUGGEST_RANK: &str = "bm25(kb_suggest_fts, 1.0, 1.0)";
/// PostgreSQL's weights for `search` (`{D, C, B, A}`: body C, title B, keywords A): bm25's
/// 1 : 4 : 6, scaled to `ts_rank_cd`'s 0..1.
const PG_RANK_WEIGHTS: &str = "'{0.0, 0.1667, 0.6667, 1.0}'";
/// PostgreSQL's text search configuration: Snowball's English stemmer, like FTS5's Porter
/// tokenizer (no accent folding: the `unaccent` extension is not assumed).
const PG_CONFIG: &str = "'english'";

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
    /// A plain-text excerpt around the matched words (FTS5 `snippet`, PostgreSQL
    /// `ts_headline`; no markup).
    pub snippet: String,
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The PostgreSQL advisory lock key that serialises `kb_replace` across replicas
/// ("supportd" + 16): two replicas reindexing at start-up at once would otherwise insert the
/// same slugs side by side.
const KB_REPLACE_LOCK: i64 = 0x7375_7070_6f72_0016;

fn hit(r: &Row<'_>) -> Result<KbHit, StoreError> {
    Ok(KbHit {
        slug: r.get("slug")?,
        title: r.get("title")?,
        category: r.get("category")?,
        snippet: r.get("snippet")?,
    })
}

impl Store {
    /// Replaces the whole index with `articles`, in one transaction (a search sees the old
    /// set or the new one, never half).
    pub fn kb_replace(&self, articles: &[Article], now: DateTime<Utc>) -> Result<(), StoreError> {
        super::blocking(|| {
            let tx = self.begin()?;
            let c = tx.conn();
            let pg = c.is_pg();
            if pg {
                query_one(
                    c,
                    "SELECT pg_advisory_xact_lock(?1) IS NULL AS locked",
                    args![KB_REPLACE_LOCK],
                    |row| row.get::<i64>("locked"),
                )?;
            } else {
                exec(c, "DELETE FROM kb_fts", args![])?;
                exec(c, "DELETE FROM kb_suggest_fts", args![])?;
            }
            exec(c, "DELETE FROM kb_articles", args![])?;
            for a in articles {
                let keywords = a.keywords.join(", ");
                let languages = a.languages.join(",");
                // PostgreSQL computes the tsvector columns itself (generated columns).
                let rowid: Option<i64> = query_one(
                    c,
                    if pg {
                        "INSERT INTO kb_articles (slug, title, category, keywords, languages,
                             body_text, body_html, path, indexed_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING NULL AS rowid"
                    } else {
                        "INSERT INTO kb_articles (slug, title, category, keywords, languages,
                             body_text, body_html, path, indexed_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING rowid"
                    },
                    args![
                        a.slug,
                        a.title,
                        a.category,
                        keywords,
                        languages,
                        a.text,
                        a.html,
                        a.path,
                        ts(now)
                    ],
                    |row| row.get("rowid"),
                )?;
                let Some(rowid) = rowid else { continue };
                let joined = a.keywords.join(" \u{2022} ");
                exec(
                    c,
                    "INSERT INTO kb_fts (rowid, title, keywords, body) VALUES (?1, ?2, ?3, ?4)",
                    args![rowid, a.title, joined, a.text],
                )?;
                exec(
                    c,
                    "INSERT INTO kb_suggest_fts (rowid, title, keywords) VALUES (?1, ?2, ?3)",
                    args![rowid, a.title, joined],
                )?;
            }
            if pg {
                // Each article's indexed length, counted once here rather than by every
                // ranking query (migration 0022): the positions of every lexeme.
                exec(
                    c,
                    "UPDATE kb_articles SET suggest_len =
                         (SELECT COUNT(*) FROM unnest(suggest) AS u, unnest(u.positions) AS p)",
                    args![],
                )?;
            }
            tx.commit()
        })
    }

    /// The article `slug`, if indexed.
    pub fn kb_article(&self, slug: &str) -> Result<Option<KbArticle>, StoreError> {
        self.with_conn(|c| {
            super::query_opt(
                c,
                "SELECT slug, title, category, keywords, body_html FROM kb_articles WHERE slug = ?1",
                args![slug],
                |r| {
                    Ok(KbArticle {
                        slug: r.get("slug")?,
                        title: r.get("title")?,
                        category: r.get("category")?,
                        keywords: list(&r.get::<String>("keywords")?),
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
                args![],
                hit,
            )
        })
    }

    /// The articles matching any of `terms` (see [`crate::kb::suggest::terms`]), best
    /// first, at most `limit`.
    pub fn kb_search(&self, terms: &[String], limit: u32) -> Result<Vec<KbHit>, StoreError> {
        self.with_conn(|c| {
            if c.is_pg() {
                let Some(q) = websearch_query(terms) else {
                    return Ok(Vec::new());
                };
                return query_all(
                    c,
                    &format!(
                        "SELECT a.slug, a.title, a.category,
                                ts_headline({PG_CONFIG}, a.body_text, q.q,
                                    'StartSel=\"\", StopSel=\"\", MinWords=12, MaxWords=24')
                                    AS snippet
                           FROM kb_articles a,
                                (SELECT websearch_to_tsquery({PG_CONFIG}, ?1) AS q) q
                          WHERE a.search @@ q.q
                          ORDER BY ts_rank_cd({PG_RANK_WEIGHTS}, a.search, q.q) DESC, a.slug
                          LIMIT ?2"
                    ),
                    args![q, i64::from(limit)],
                    hit,
                );
            }
            let Some(q) = fts_query(terms) else {
                return Ok(Vec::new());
            };
            query_all(
                c,
                &format!(
                    "SELECT a.slug, a.title, a.category,
                            snippet(kb_fts, 2, '', '', ' … ', 24) AS snippet
                     FROM kb_fts JOIN kb_articles a ON a.rowid = kb_fts.rowid
                     WHERE kb_fts MATCH ?1 ORDER BY {RANK} LIMIT ?2"
                ),
                args![q, i64::from(limit)],
                hit,
            )
        })
    }

    /// [`Tx::kb_candidates`] outside a transaction (`supportd suggest`).
    pub fn kb_candidates(
        &self,
        terms: &[String],
        limit: u32,
    ) -> Result<Vec<Candidate>, StoreError> {
        self.with_conn(|c| candidates(c, terms, limit))
    }
}

/// Rankings made ahead ([`Tx::kb_prefetch`]): each mail's candidates by its words, at most
/// `limit` each.
#[derive(Debug)]
pub(crate) struct Ranked {
    limit: u32,
    by_words: std::collections::HashMap<Vec<String>, Vec<Candidate>>,
}

impl Tx {
    /// The articles ranked for a mail's words ([`crate::kb::suggest::mail_terms`]), best
    /// first, at most `limit`: from [`Tx::kb_prefetch`]'s answers when it ranked these words
    /// for this limit, else asked now.
    ///
    /// Whether there are articles at all is asked once per transaction (a batch's own writes
    /// never add any: `kb reindex` is a transaction of its own). A desk without a Help
    /// Center then pays no ranking query per new ticket: on PostgreSQL that query's
    /// executor alone took ~0.25 ms with no article to rank.
    pub fn kb_candidates(
        &mut self,
        terms: &[String],
        limit: u32,
    ) -> Result<Vec<Candidate>, StoreError> {
        if !self.kb_any()? {
            return Ok(Vec::new());
        }
        let ranked = self.kb_ranked.as_ref().filter(|r| r.limit == limit);
        if let Some(found) = ranked.and_then(|r| r.by_words.get(terms)) {
            return Ok(found.clone());
        }
        candidates(self.conn(), terms, limit)
    }

    /// Ranks the articles for several mails' words in one statement, for
    /// [`Tx::kb_candidates`] to answer from. On PostgreSQL, where one ranking query per new
    /// ticket cost a fifth of a backlog's ingest rate; SQLite's FTS5 runs in the process, and
    /// ranks each mail when asked.
    pub fn kb_prefetch(&mut self, terms: &[Vec<String>], limit: u32) -> Result<(), StoreError> {
        if !self.conn().is_pg() || terms.is_empty() || !self.kb_any()? {
            return Ok(());
        }
        let asked: Vec<&[String]> = terms.iter().map(Vec::as_slice).collect();
        let ranked = pg_ranked(self.conn(), &asked, limit)?;
        self.kb_ranked = Some(Ranked {
            limit,
            by_words: terms.iter().cloned().zip(ranked).collect(),
        });
        Ok(())
    }

    fn kb_any(&mut self) -> Result<bool, StoreError> {
        if let Some(any) = self.kb_any {
            return Ok(any);
        }
        let any = query_one(
            self.conn(),
            "SELECT EXISTS (SELECT 1 FROM kb_articles) AS any",
            args![],
            |r| r.get::<i64>("any"),
        )? != 0;
        self.kb_any = Some(any);
        Ok(any)
    }
}

fn candidates(c: Db<'_>, terms: &[String], limit: u32) -> Result<Vec<Candidate>, StoreError> {
    if c.is_pg() {
        return pg_candidates(c, terms, limit);
    }
    let Some(q) = fts_query(terms) else {
        return Ok(Vec::new());
    };
    query_all(
        c,
        &format!(
            "SELECT a.slug, a.title, a.languages, -{SUGGEST_RANK} AS score,
                    highlight(kb_suggest_fts, 0, char(1), char(2)) AS t,
                    highlight(kb_suggest_fts, 1, char(1), char(2)) AS k
             FROM kb_suggest_fts JOIN kb_articles a ON a.rowid = kb_suggest_fts.rowid
             WHERE kb_suggest_fts MATCH ?1 ORDER BY {SUGGEST_RANK} LIMIT ?2"
        ),
        args![q, i64::from(limit)],
        |r| candidate(r, marked(&[r.get("t")?, r.get("k")?])),
    )
}

/// PostgreSQL's ranking of the suggestions: FTS5's bm25 computed in SQL, so that one
/// threshold serves both backends (see README, Help Center). Each word of the query (a
/// subject's word twice) adds `idf · tf · (k1 + 1) / (tf + k1 · (1 − b + b · dl / avgdl))`
/// with FTS5's constants (k1 = 1.2, b = 0.75) and its `idf = ln((N − n + 0.5) / (n + 0.5))`
/// (at least 1e-6; N articles, n of them matching the word): tf is the word's hits in the
/// title and keywords (`ts_rank_cd` with weight 1 on both, `suggest`), dl the article's
/// indexed words there (`suggest_len`, counted when the index is written, migration 0022),
/// avgdl their mean. The matched words are, as FTS5's `highlight()`
/// gives them, the words of the title and keywords that match. What differs from FTS5: PostgreSQL's `english`
/// configuration drops stopwords from dl, and folds no accents.
fn pg_candidates(c: Db<'_>, terms: &[String], limit: u32) -> Result<Vec<Candidate>, StoreError> {
    Ok(pg_ranked(c, &[terms], limit)?
        .into_iter()
        .next()
        .unwrap_or_default())
}

/// [`pg_candidates`] of several mails in one statement: the ranking of each mail (its
/// `idx`) is computed on its own, as alone; the answers are in the order asked. A score is
/// added up in the order of the mail's words, not in the order the plan happens to give (a
/// float sum depends on it), so that a mail scores the same to the last bit alone or in any
/// batch. What costs is per word (`plainto_tsquery`, the index probe, `ts_rank_cd`): each
/// distinct word of the batch is looked up once, however many mails (or a subject and its
/// body) share it.
fn pg_ranked(
    c: Db<'_>,
    terms: &[&[String]],
    limit: u32,
) -> Result<Vec<Vec<Candidate>>, StoreError> {
    let mut out = vec![Vec::new(); terms.len()];
    // A mail without a word to rank has no candidates, and is not asked.
    let (asked, words): (Vec<i64>, Vec<String>) = terms
        .iter()
        .enumerate()
        .filter_map(|(i, t)| Some((i64::try_from(i).ok()?, pg_terms(t)?)))
        .unzip();
    if asked.is_empty() {
        return Ok(out);
    }
    let rows = query_all(
        c,
        &format!(
            "WITH w AS (
                 SELECT m.idx, w.term, w.ord
                   FROM unnest(?1::bigint[], ?2::text[]) AS m(idx, words),
                        unnest(string_to_array(m.words, ' ')) WITH ORDINALITY AS w(term, ord)
             ),
             terms AS (
                 SELECT t.term, plainto_tsquery({PG_CONFIG}, t.term) AS q
                   FROM (SELECT DISTINCT term FROM w) AS t
             ),
             found AS (
                 SELECT t.term, t.q, a.slug,
                        ts_rank_cd('{{0, 0, 1, 1}}', a.suggest, t.q)::float8 AS tf
                   FROM terms t JOIN kb_articles a ON a.suggest @@ t.q
                  WHERE numnode(t.q) > 0
             ),
             lens AS (
                 SELECT a.slug, a.suggest_len AS dl FROM kb_articles a
             ),
             stats AS (
                 SELECT COUNT(*)::float8 AS n, GREATEST(AVG(dl), 1.0)::float8 AS avgdl FROM lens
             ),
             hits AS (
                 SELECT w.idx, w.ord, f.q, f.slug, f.tf,
                        COUNT(*) OVER (PARTITION BY w.idx, w.ord)::float8 AS df
                   FROM w JOIN found f ON f.term = w.term
             ),
             scored AS (
                 SELECT h.idx, h.slug, array_agg(h.q) AS qs,
                        SUM(GREATEST(ln((s.n - h.df + 0.5) / (h.df + 0.5)), 1e-6)
                            * h.tf * 2.2 / (h.tf + 1.2 * (0.25 + 0.75 * l.dl / s.avgdl))
                            ORDER BY h.ord)::float8 AS score
                   FROM hits h JOIN lens l ON l.slug = h.slug
                  CROSS JOIN stats s
                  GROUP BY h.idx, h.slug
             ),
             ranked AS (
                 SELECT c.*, row_number() OVER (PARTITION BY c.idx
                                                ORDER BY c.score DESC, c.slug) AS place
                   FROM scored c
             )
             SELECT r.idx, a.slug, a.title, a.languages, r.score,
                    (SELECT string_agg(DISTINCT lower(x), ',')
                       FROM regexp_split_to_table(a.title || ' ' || a.keywords, '[^[:alnum:]]+')
                            AS x
                      WHERE x <> '' AND EXISTS (
                            SELECT 1 FROM unnest(r.qs) AS m(q)
                             WHERE to_tsvector({PG_CONFIG}, x) @@ m.q))
                        AS matched
               FROM ranked r JOIN kb_articles a ON a.slug = r.slug
              WHERE r.place <= ?3
              ORDER BY r.idx, r.place"
        ),
        args![asked, words, i64::from(limit)],
        |r| {
            let matched = r.get::<Option<String>>("matched")?.unwrap_or_default();
            Ok((r.get::<i64>("idx")?, candidate(r, list(&matched))?))
        },
    )?;
    for (idx, found) in rows {
        if let Some(slot) = usize::try_from(idx).ok().and_then(|i| out.get_mut(i)) {
            slot.push(found);
        }
    }
    Ok(out)
}

/// A suggestion row of either backend, with the words it matched.
fn candidate(r: &Row<'_>, matched: Vec<String>) -> Result<Candidate, StoreError> {
    Ok(Candidate {
        slug: r.get("slug")?,
        title: r.get("title")?,
        score: r.get("score")?,
        languages: list(&r.get::<String>("languages")?),
        matched,
    })
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
