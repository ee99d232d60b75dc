-- Mirror of migrations/sqlite/0014_ticket_language.sql: language and triage's first labels.
ALTER TABLE tickets ADD COLUMN language TEXT NOT NULL DEFAULT '';
ALTER TABLE tickets ADD COLUMN triage_category TEXT NOT NULL DEFAULT '';
ALTER TABLE tickets ADD COLUMN triage_urgency BIGINT NOT NULL DEFAULT 0;
UPDATE tickets SET triage_category = category, triage_urgency = urgency;
