-- One row, rewritten with synchronous = FULL before mail leaves the IMAP inbox (and before
-- `supportd ingest` tells the MTA it has the mail): committing it syncs SQLite's WAL, and with
-- it every transaction committed before it, so a power cut cannot undo a ticket whose
-- original was already moved out of the inbox.
CREATE TABLE durability_marks (
    id        INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    synced_at INTEGER NOT NULL
) STRICT;
