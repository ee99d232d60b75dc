-- Mirror of migrations/sqlite/0002_agents.sql: the agents' per-ticket key.
ALTER TABLE tickets ADD COLUMN agent_key TEXT;
CREATE UNIQUE INDEX tickets_agent_key ON tickets (agent_key) WHERE agent_key IS NOT NULL;

CREATE INDEX outbox_recipient_rate ON outbox (recipients, created_at);
