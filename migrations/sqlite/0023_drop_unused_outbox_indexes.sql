-- Two indexes nothing reads (issue 13, write cost). `outbox_rate (kind, recipients,
-- created_at)` and `outbox_recipient_rate (recipients, created_at)` served the rate limit
-- before migration 0008 moved it to `outbox_recipients (rate_key, created_at)`; no statement
-- has filtered `outbox` by `recipients` since. Each still cost an entry on every queued mail
-- and, on PostgreSQL, on every claim and every sent mark (updates of an indexed column).
DROP INDEX IF EXISTS outbox_rate;
DROP INDEX IF EXISTS outbox_recipient_rate;
