-- Mirror of migrations/sqlite/0007_intake_attempts.sql: poison-message isolation.
CREATE TABLE intake_attempts (
    mailbox     TEXT    NOT NULL,
    folder      TEXT    NOT NULL,
    uidvalidity BIGINT  NOT NULL,
    uid         BIGINT  NOT NULL,
    attempts    BIGINT  NOT NULL DEFAULT 0,
    last_error  TEXT    NOT NULL DEFAULT '',
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (mailbox, folder, uidvalidity, uid)
);
