-- Mirror of migrations/sqlite/0016_kb.sql: the Help Center's articles as last indexed, and
-- their full-text index. Rebuilt whole by `supportd kb reindex`, at start-up and on SIGHUP:
-- the files are the source of truth, this table a cache of them.
--
-- SQLite's two FTS5 tables (kb_fts, kb_suggest_fts) are, here, two generated tsvector
-- columns of kb_articles with GIN indexes, under the 'english' configuration (Snowball
-- stemming, like FTS5's Porter tokenizer; no accent folding):
--   search:  keywords (weight A), title (B), body (C): the pages' search;
--   suggest: title (A) and keywords (B) alone, ranked with equal weights: the suggestions
--            (a word of some article's body must not make it a suggestion).
CREATE TABLE kb_articles (
    slug       TEXT    NOT NULL PRIMARY KEY,
    title      TEXT    NOT NULL,
    category   TEXT    NOT NULL,
    keywords   TEXT    NOT NULL DEFAULT '',
    languages  TEXT    NOT NULL DEFAULT '',
    body_text  TEXT    NOT NULL,
    body_html  TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    indexed_at BIGINT  NOT NULL,
    search     tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, keywords), 'A')
        || setweight(to_tsvector('english'::regconfig, title), 'B')
        || setweight(to_tsvector('english'::regconfig, body_text), 'C')
    ) STORED,
    suggest    tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, title), 'A')
        || setweight(to_tsvector('english'::regconfig, keywords), 'B')
    ) STORED
);

CREATE INDEX kb_articles_search ON kb_articles USING GIN (search);
CREATE INDEX kb_articles_suggest ON kb_articles USING GIN (suggest);
