-- The outbox claim's order as an index (issue 13, throughput; PostgreSQL only). A claim asks
-- for the first queued row by (next_attempt_at, id); with (status, next_attempt_at) alone,
-- PostgreSQL sorted every row sharing the first due second (a backlog queues hundreds per
-- second) at each claim. SQLite needs nothing: its indexes end with the rowid, which is id.
CREATE INDEX outbox_due_order ON outbox (status, next_attempt_at, id);
DROP INDEX outbox_due;
