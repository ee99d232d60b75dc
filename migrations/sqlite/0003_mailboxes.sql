-- IMAP intake checkpoint: per mailbox folder, the UIDVALIDITY seen and the highest UID whose
-- message was committed (and then flagged or moved). A UIDVALIDITY change restarts at 0;
-- Message-ID dedupe makes the rescan harmless.
CREATE TABLE mailbox_cursors (
    mailbox     TEXT    NOT NULL,
    folder      TEXT    NOT NULL,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (mailbox, folder)
) STRICT;
