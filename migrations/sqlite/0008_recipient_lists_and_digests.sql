-- Issue 9, findings 5 and 6: outbox recipients as a list, rate limits keyed on the address
-- without its +detail, and agent notifications collapsed into digests. Migrations only add.

-- The envelope recipients of each outbox row, one row per address, in order. The sender reads
-- this list; it never splits a string on commas (outbox.recipients stays as the readable,
-- comma-joined form that `outbox list` shows). rate_key is the address without its +detail,
-- lower-cased: what the acknowledgement limit counts, so bob+1@ ... bob+100@ are one sender;
-- created_at repeats the row's, so that count reads one index range.
-- A child table rather than new outbox columns: outbox.raw must stay the table's last column
-- (migration 0004), and rebuilding the outbox would rewrite every stored mail.
CREATE TABLE outbox_recipients (
    outbox_id  INTEGER NOT NULL REFERENCES outbox (id),
    position   INTEGER NOT NULL,
    address    TEXT    NOT NULL,
    rate_key   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (outbox_id, position)
) STRICT;
CREATE INDEX outbox_recipients_rate ON outbox_recipients (rate_key, created_at);

-- Existing rows: their comma-joined recipients split once, here (they were written as
-- lower-cased addresses joined with ','). The string becomes a JSON array (backslashes and
-- quotes escaped; stored addresses hold no control characters), which json_each splits in
-- one pass even for the 10,000-recipient rows this migration exists for. The rate key drops
-- a +detail from the part before the first '@'; only the last hour of rows matters to it.
WITH items (outbox_id, position, item, created_at) AS (
    SELECT o.id, j.key, trim(j.value), o.created_at
      FROM outbox o,
           json_each('["' || replace(replace(replace(o.recipients, '\', '\\'), '"', '\"'),
                                     ',', '","') || '"]') j
),
parts (outbox_id, position, item, created_at, local, domain) AS (
    SELECT outbox_id, position, item, created_at,
           substr(item, 1, instr(item, '@') - 1),
           substr(item, instr(item, '@'))
      FROM items WHERE item <> ''
)
INSERT INTO outbox_recipients (outbox_id, position, address, rate_key, created_at)
SELECT outbox_id, position, item,
       lower(CASE WHEN instr(local, '+') > 1 THEN substr(local, 1, instr(local, '+') - 1)
                  ELSE local END || domain),
       created_at
  FROM parts;

-- Every notification to agents about a customer's mail, per sender (the address without its
-- +detail, lower-cased). Past `limits.notifications_per_sender_per_hour` individual ones in
-- the last hour, a mail's notification is held (held = 1) and later listed in a digest
-- (digested_at set when the digest is queued), so no ticket goes unannounced.
CREATE TABLE agent_notices (
    id          INTEGER PRIMARY KEY,
    sender_key  TEXT    NOT NULL,
    ticket_id   INTEGER NOT NULL REFERENCES tickets (id),
    event       TEXT    NOT NULL,                  -- new-ticket | customer-reply
    at          INTEGER NOT NULL,
    held        INTEGER NOT NULL DEFAULT 0,
    digested_at INTEGER
) STRICT;
-- Individual notifications of a sender in the last hour: at most the limit's worth of rows.
CREATE INDEX agent_notices_sender ON agent_notices (sender_key, held, at);
CREATE INDEX agent_notices_pending ON agent_notices (sender_key, id)
    WHERE held = 1 AND digested_at IS NULL;
