-- Mirror of migrations/sqlite/0015_outbox_claims.sql: who claimed each outbox row.
CREATE TABLE outbox_claims (
    outbox_id  BIGINT  NOT NULL PRIMARY KEY REFERENCES outbox (id),
    replica    TEXT    NOT NULL,
    instance   TEXT    NOT NULL,
    claimed_at BIGINT  NOT NULL
);
CREATE INDEX outbox_claims_replica ON outbox_claims (replica, instance);
