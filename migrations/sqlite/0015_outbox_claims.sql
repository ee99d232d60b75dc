-- Who claimed each outbox row (issue 13): the replica (SUPPORTD_REPLICA, else the host name)
-- and the run of its process (random per start). A process that starts again takes back
-- its own replica's claims of an earlier run at once (the mail in flight at a kill -9 goes
-- out within seconds of the restart, not after the 120 s lease); other replicas' claims keep
-- their lease. A table of its own: outbox.raw must stay the last column of outbox (0004).
CREATE TABLE outbox_claims (
    outbox_id  INTEGER NOT NULL PRIMARY KEY REFERENCES outbox (id),
    replica    TEXT    NOT NULL,
    instance   TEXT    NOT NULL,
    claimed_at INTEGER NOT NULL
) STRICT;
CREATE INDEX outbox_claims_replica ON outbox_claims (replica, instance);
