-- The Help Center (issue 14): the articles of kb/*.md as last indexed, and their full-text
-- index. Both are rebuilt whole by `supportd kb reindex`, at start-up and on SIGHUP: the
-- files are the source of truth, these tables a cache of them. Kept plain so that a
-- PostgreSQL mirror is one table with a generated tsvector column and a GIN index.
CREATE TABLE kb_articles (
    slug       TEXT    NOT NULL PRIMARY KEY,   -- the file name without .md: /help/{slug}
    title      TEXT    NOT NULL,
    category   TEXT    NOT NULL,
    keywords   TEXT    NOT NULL DEFAULT '',    -- the front matter's keywords, comma-separated
    languages  TEXT    NOT NULL DEFAULT '',    -- ISO 639-1 codes, comma-separated; '' = any
    body_text  TEXT    NOT NULL,               -- the Markdown as plain text (what is indexed)
    body_html  TEXT    NOT NULL,               -- the Markdown rendered, raw HTML escaped
    path       TEXT    NOT NULL,               -- the file it came from, for admins
    indexed_at INTEGER NOT NULL
) STRICT;

-- FTS5 over the same text, Porter-stemmed, case- and accent-folded. rowid = kb_articles'
-- rowid; bm25() ranks with the column weights given at query time (title, keywords, body).
CREATE VIRTUAL TABLE kb_fts USING fts5(
    title, keywords, body,
    tokenize = 'porter unicode61 remove_diacritics 2'
);

-- What suggestions rank on: the title and the keywords alone. A word of some article's
-- body (an incidental "reactivated" in the deactivation article) must neither match nor,
-- through bm25's document frequency, lower the weight of the article it names.
CREATE VIRTUAL TABLE kb_suggest_fts USING fts5(
    title, keywords,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
