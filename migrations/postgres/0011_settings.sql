-- Mirror of migrations/sqlite/0011_settings.sql: small facts supportd keeps about itself.
CREATE TABLE settings (
    key        TEXT    NOT NULL PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL
);
