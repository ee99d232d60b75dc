-- Large blobs live in the LAST column of their table. SQLite keeps a zeroblob() placeholder
-- compact only when it ends the record; anywhere else it expands it in memory (twice) on
-- INSERT, so a 25 MB scan cost 50 MB of RAM before supportd could stream it in place.

-- The original bytes of inbound messages move to a side table (one row per message).
CREATE TABLE message_raw (
    message_row INTEGER PRIMARY KEY REFERENCES messages (id),
    raw         BLOB    NOT NULL
) STRICT;
INSERT INTO message_raw (message_row, raw) SELECT id, raw FROM messages WHERE raw IS NOT NULL;
ALTER TABLE messages DROP COLUMN raw;

-- quarantine, ignored_mail and outbox: rebuilt with raw as the last column.
CREATE TABLE quarantine_v4 (
    id          INTEGER PRIMARY KEY,
    digest      TEXT    NOT NULL UNIQUE,           -- sha256 of raw
    reason      TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    raw         BLOB    NOT NULL
) STRICT;
INSERT INTO quarantine_v4 (id, digest, reason, source, size, received_at, raw)
    SELECT id, digest, reason, source, size, received_at, raw FROM quarantine;
DROP TABLE quarantine;
ALTER TABLE quarantine_v4 RENAME TO quarantine;

CREATE TABLE ignored_mail_v4 (
    id          INTEGER PRIMARY KEY,
    message_id  TEXT    NOT NULL UNIQUE,
    sender      TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    raw         BLOB    NOT NULL
) STRICT;
INSERT INTO ignored_mail_v4 (id, message_id, sender, subject, reason, received_at, raw)
    SELECT id, message_id, sender, subject, reason, received_at, raw FROM ignored_mail;
DROP TABLE ignored_mail;
ALTER TABLE ignored_mail_v4 RENAME TO ignored_mail;

-- outbox: rebuilt with raw last (agent notifications and relayed replies carry attachments).
CREATE TABLE outbox_v4 (
    id              INTEGER PRIMARY KEY,
    ticket_id       INTEGER REFERENCES tickets (id),
    kind            TEXT    NOT NULL,              -- ack | ...
    message_id      TEXT    NOT NULL UNIQUE,
    recipients      TEXT    NOT NULL,              -- envelope recipients, comma-separated, lower-cased
    subject         TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    raw             BLOB    NOT NULL               -- the exact RFC 5322 bytes to send
) STRICT;
INSERT INTO outbox_v4 (id, ticket_id, kind, message_id, recipients, subject, status, attempts,
                       next_attempt_at, last_error, created_at, sent_at, raw)
    SELECT id, ticket_id, kind, message_id, recipients, subject, status, attempts,
           next_attempt_at, last_error, created_at, sent_at, raw FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v4 RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_rate ON outbox (kind, recipients, created_at);
CREATE INDEX outbox_recipient_rate ON outbox (recipients, created_at);
