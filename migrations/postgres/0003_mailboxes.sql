-- Mirror of migrations/sqlite/0003_mailboxes.sql: IMAP intake checkpoints.
CREATE TABLE mailbox_cursors (
    mailbox     TEXT    NOT NULL,
    folder      TEXT    NOT NULL,
    uidvalidity BIGINT  NOT NULL,
    last_uid    BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (mailbox, folder)
);
