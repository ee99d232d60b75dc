-- supportd schema, version 1 (SQLite). Migrations only add; a shipped file is never edited.
-- Timestamps are INTEGER Unix seconds (UTC); booleans are INTEGER 0/1.

CREATE TABLE users (
    id           INTEGER PRIMARY KEY,
    email        TEXT    NOT NULL,                 -- as written (domain lower-cased)
    email_key    TEXT    NOT NULL UNIQUE,          -- lower-cased: compares case-insensitively
    name         TEXT    NOT NULL DEFAULT '',
    role         TEXT    NOT NULL DEFAULT 'customer' CHECK (role IN ('customer', 'agent', 'admin')),
    status       TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    org          TEXT    NOT NULL DEFAULT '',
    support_user INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE tickets (
    id                 INTEGER PRIMARY KEY,
    number             INTEGER NOT NULL UNIQUE,
    access_key         TEXT    NOT NULL UNIQUE,
    subject            TEXT    NOT NULL,
    status             TEXT    NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'pending', 'closed')),
    category           TEXT    NOT NULL,
    urgency            INTEGER NOT NULL CHECK (urgency BETWEEN 1 AND 4),
    triage_reasons     TEXT    NOT NULL DEFAULT '',
    requester_id       INTEGER NOT NULL REFERENCES users (id),
    assignee_id        INTEGER REFERENCES users (id),
    follows_ticket_id  INTEGER REFERENCES tickets (id),
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    first_response_due INTEGER NOT NULL,
    resolution_due     INTEGER NOT NULL,
    first_response_at  INTEGER,
    closed_at          INTEGER
) STRICT;

-- Cc collaborators of a ticket (the requester is on the ticket itself).
CREATE TABLE participants (
    ticket_id INTEGER NOT NULL REFERENCES tickets (id),
    user_id   INTEGER NOT NULL REFERENCES users (id),
    PRIMARY KEY (ticket_id, user_id)
) STRICT;

-- Every message we received or sent on a ticket; message_id makes re-ingest harmless.
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,
    ticket_id   INTEGER NOT NULL REFERENCES tickets (id),
    message_id  TEXT    NOT NULL UNIQUE,
    direction   TEXT    NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    kind        TEXT    NOT NULL,                  -- customer | ack | bounce | auto-reply | ...
    author      TEXT    NOT NULL,                  -- email address
    author_id   INTEGER REFERENCES users (id),
    internal    INTEGER NOT NULL DEFAULT 0,
    subject     TEXT    NOT NULL DEFAULT '',
    body        TEXT    NOT NULL DEFAULT '',
    raw         BLOB,                              -- inbound: the original bytes, verbatim
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX messages_ticket ON messages (ticket_id, id);

CREATE TABLE attachments (
    id           INTEGER PRIMARY KEY,
    message_row  INTEGER NOT NULL REFERENCES messages (id),
    filename     TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    content_id   TEXT,
    data         BLOB    NOT NULL
) STRICT;
CREATE INDEX attachments_message ON attachments (message_row);

-- Every outbound mail is a row here first, written in the transaction that caused it.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    ticket_id       INTEGER REFERENCES tickets (id),
    kind            TEXT    NOT NULL,              -- ack | ...
    message_id      TEXT    NOT NULL UNIQUE,
    recipients      TEXT    NOT NULL,              -- envelope recipients, comma-separated, lower-cased
    subject         TEXT    NOT NULL,
    raw             BLOB    NOT NULL,              -- the exact RFC 5322 bytes to send
    status          TEXT    NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
) STRICT;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_rate ON outbox (kind, recipients, created_at);

-- Mail that made no ticket change (our own mail, stray auto-replies and bounces), kept for audit
-- and so that a re-fetch is recognised as a duplicate.
CREATE TABLE ignored_mail (
    id          INTEGER PRIMARY KEY,
    message_id  TEXT    NOT NULL UNIQUE,
    sender      TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    raw         BLOB    NOT NULL,
    received_at INTEGER NOT NULL
) STRICT;

-- Mail that could not be parsed or was too large: verbatim, with the reason.
CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY,
    digest      TEXT    NOT NULL UNIQUE,           -- sha256 of raw
    reason      TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    raw         BLOB    NOT NULL,
    received_at INTEGER NOT NULL
) STRICT;

-- What happened to a ticket, in order.
CREATE TABLE events (
    id        INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets (id),
    at        INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    detail    TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX events_ticket ON events (ticket_id, id);
