-- The web pages (issue 11): sign-in by email, sessions, the site-admin flag. Migrations only add.

-- Site admins of an organisation see every ticket of it on /my ("Team tickets"):
-- `supportd users add EMAIL --site-admin`.
ALTER TABLE users ADD COLUMN site_admin INTEGER NOT NULL DEFAULT 0;

-- One row per sign-in request (POST /signin), known address or not, so the per-address
-- rate limit and the work done are the same either way. Only hashes are stored: the token of
-- the mailed link (sha256, hex) and the address asked for (sha256 of its lower-cased form).
-- user_id is NULL for an address that is no active user (no mail was sent).
CREATE TABLE web_signins (
    id           INTEGER PRIMARY KEY,
    token_hash   TEXT    NOT NULL UNIQUE,
    address_hash TEXT    NOT NULL,
    user_id      INTEGER REFERENCES users (id),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_at      INTEGER
) STRICT;
CREATE INDEX web_signins_rate ON web_signins (address_hash, created_at);

-- Signed-in browsers: the session cookie's sha256 (hex), never the cookie itself.
CREATE TABLE web_sessions (
    id         INTEGER PRIMARY KEY,
    token_hash TEXT    NOT NULL UNIQUE,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
