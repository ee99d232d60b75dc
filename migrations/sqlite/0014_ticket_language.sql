-- Triage that learns from agents (issue 12). Migrations only add.

-- The customer's language as triage detected it (ISO 639-1: en, fr, es, ...; '' = not
-- detected), for acknowledgements in that language, and what triage first said of the
-- ticket (its category and urgency before any agent changed them), which an agent's
-- `#category` / `#urgency` correction is compared with (`corrections`, `triage report`).
ALTER TABLE tickets ADD COLUMN language TEXT NOT NULL DEFAULT '';
ALTER TABLE tickets ADD COLUMN triage_category TEXT NOT NULL DEFAULT '';
ALTER TABLE tickets ADD COLUMN triage_urgency INTEGER NOT NULL DEFAULT 0;
-- Tickets from before: their labels as they stand are the best guess of triage's.
UPDATE tickets SET triage_category = category, triage_urgency = urgency;
