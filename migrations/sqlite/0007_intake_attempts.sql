-- Poison-message isolation (issue 9): IMAP messages whose fetch-and-process attempt began and
-- did not finish. A row is written (committed) before a message is fetched and deleted once
-- the message is committed, so a crash, a kill (kill -9, the systemd watchdog), a dropped
-- connection or a timed-out FETCH leaves it behind and is counted at the next sync.
--   attempts = 0: it was in a batch whose attempt did not finish: it is next tried alone;
--   attempts = n: n attempts on it alone did not finish; from 2 on it is quarantined
--                 without being processed (its header kept, the message moved to the
--                 quarantine folder).
-- Rows of UIDs below the folder's cursor, or of an old UIDVALIDITY, are pruned.
CREATE TABLE intake_attempts (
    mailbox     TEXT    NOT NULL,
    folder      TEXT    NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    -- The failure seen, when the process lived to see it ('' after a crash or kill).
    last_error  TEXT    NOT NULL DEFAULT '',
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (mailbox, folder, uidvalidity, uid)
) STRICT;
