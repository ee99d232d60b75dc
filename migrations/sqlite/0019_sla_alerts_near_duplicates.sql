-- SLA reminders and escalations, and the near-duplicate lookup (issue 14). Migrations only add.

-- One row per alert sent: which clock ('first-response' | 'resolution'), which stage
-- ('reminder' | 'escalation'), for which due time (a changed urgency moves the due time,
-- and the new one gets its own alerts). The daemon's check reads this, so an alert is sent
-- once across restarts.
CREATE TABLE sla_alerts (
    ticket_id INTEGER NOT NULL REFERENCES tickets (id),
    clock     TEXT    NOT NULL CHECK (clock IN ('first-response', 'resolution')),
    stage     TEXT    NOT NULL CHECK (stage IN ('reminder', 'escalation')),
    due_at    INTEGER NOT NULL,
    sent_at   INTEGER NOT NULL,
    PRIMARY KEY (ticket_id, clock, stage, due_at)
) STRICT;

-- The clocks still running: tickets not closed, by due time.
CREATE INDEX tickets_open_due ON tickets (status, resolution_due);

-- A sender's recent messages (near-duplicate merge: same sender, same text, minutes apart).
CREATE INDEX messages_author ON messages (author_id, created_at);
