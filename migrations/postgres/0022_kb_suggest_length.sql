-- Each Help Center article's indexed length for the suggestions' ranking (issue 13,
-- throughput; PostgreSQL only: SQLite's FTS5 keeps its own). The ranking (bm25, see
-- src/store/kb.rs) needs every article's number of indexed words (dl) and their mean; it
-- counted them from each article's `suggest` tsvector at every query, for every new ticket:
-- work growing with the whole Help Center. Now counted once, when the index is written
-- (`kb reindex`, every start). The same count as before: the positions of every lexeme.
ALTER TABLE kb_articles ADD COLUMN suggest_len DOUBLE PRECISION NOT NULL DEFAULT 0;
UPDATE kb_articles
   SET suggest_len = (SELECT COUNT(*) FROM unnest(suggest) AS u, unnest(u.positions) AS p);
