-- Small facts supportd keeps about itself, one row per key (issue 10). First use:
-- `config_agents`, a digest of the [[agent]] entries last written to the users table, so an
-- MTA's `supportd ingest` writes them only when the config's list changed.
CREATE TABLE settings (
    key        TEXT    NOT NULL PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
