-- Mirror of migrations/sqlite/0019_sla_alerts_near_duplicates.sql: SLA alerts sent, and the
-- indexes of the clocks and of the near-duplicate lookup.
CREATE TABLE sla_alerts (
    ticket_id BIGINT  NOT NULL REFERENCES tickets (id),
    clock     TEXT    NOT NULL CHECK (clock IN ('first-response', 'resolution')),
    stage     TEXT    NOT NULL CHECK (stage IN ('reminder', 'escalation')),
    due_at    BIGINT  NOT NULL,
    sent_at   BIGINT  NOT NULL,
    PRIMARY KEY (ticket_id, clock, stage, due_at)
);

CREATE INDEX tickets_open_due ON tickets (status, resolution_due);
CREATE INDEX messages_author ON messages (author_id, created_at);
