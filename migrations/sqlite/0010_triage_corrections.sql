-- Agents' corrections of triage (issue 12): one row per corrected ticket, with what the
-- triage rules saw and said when the ticket arrived and what the agents finally decided
-- (`#category`, `#urgency`). `supportd triage report` and `supportd triage tune` read it.
CREATE TABLE corrections (
    id             INTEGER PRIMARY KEY,
    ticket_id      INTEGER NOT NULL UNIQUE REFERENCES tickets (id),
    -- JSON: {"rules": [category rule ids], "features": [urgency feature ids],
    --        "ngrams": [hashed word n-grams]} (supportd::triage::Evidence)
    features       TEXT    NOT NULL DEFAULT '{}',
    -- ISO 639-1 code of the language triage detected
    language       TEXT    NOT NULL DEFAULT '',
    rules_category TEXT    NOT NULL,
    rules_urgency  INTEGER NOT NULL CHECK (rules_urgency BETWEEN 1 AND 4),
    final_category TEXT    NOT NULL,
    final_urgency  INTEGER NOT NULL CHECK (final_urgency BETWEEN 1 AND 4),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX corrections_created ON corrections (created_at);
