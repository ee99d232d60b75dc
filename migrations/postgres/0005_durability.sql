-- Mirror of migrations/sqlite/0005_durability.sql. PostgreSQL's commits are durable already;
-- the table exists so both schemas have the same tables (and `db copy` copies it).
CREATE TABLE durability_marks (
    id        BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    synced_at BIGINT NOT NULL
);
