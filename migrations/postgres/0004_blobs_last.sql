-- Mirror of migrations/sqlite/0004_blobs_last.sql. The original bytes of inbound messages
-- move to a side table. (SQLite also rebuilt quarantine, ignored_mail and outbox to put
-- their blob last, which only matters to SQLite's zeroblob placeholders: nothing to do here.)
CREATE TABLE message_raw (
    message_row BIGINT  PRIMARY KEY REFERENCES messages (id),
    raw         BYTEA   NOT NULL
);
INSERT INTO message_raw (message_row, raw) SELECT id, raw FROM messages WHERE raw IS NOT NULL;
ALTER TABLE messages DROP COLUMN raw;
