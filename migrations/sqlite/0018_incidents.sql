-- Incidents (issue 14): several similar urgent tickets within a short window are one outage,
-- linked to one incident record. Migrations only add. Plain SQL (no SQLite-only syntax
-- beyond the table option every table here has), so the PostgreSQL migration can mirror it.

-- number: what agents and customers see ("incident #3"); title: for staff only (the subject
-- of the ticket that opened it); resolution: the agent's public text of `#incident resolve`.
CREATE TABLE incidents (
    id          INTEGER PRIMARY KEY,
    number      INTEGER NOT NULL UNIQUE,
    status      TEXT    NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    title       TEXT    NOT NULL DEFAULT '',
    opened_at   INTEGER NOT NULL,
    resolved_at INTEGER,
    resolved_by TEXT    NOT NULL DEFAULT '',
    resolution  TEXT    NOT NULL DEFAULT ''
) STRICT;

-- The incident a ticket is linked to (at most one).
ALTER TABLE tickets ADD COLUMN incident_id INTEGER REFERENCES incidents (id);
CREATE INDEX tickets_incident ON tickets (incident_id);
-- Grouping compares a new urgent ticket with the tickets of the last minutes.
CREATE INDEX tickets_created ON tickets (created_at);
