-- Agents work from their mail client (issue 4). Migrations only add.

-- The second per-ticket secret: notifications to agents carry it in their Reply-To
-- (`support+a-KEY@domain`), so an agent's answer threads even when a provider rewrites
-- headers, and is known to come through the agent channel. NULL for tickets created before
-- this migration; the pipeline assigns one on the first notification.
ALTER TABLE tickets ADD COLUMN agent_key TEXT;
CREATE UNIQUE INDEX tickets_agent_key ON tickets (agent_key) WHERE agent_key IS NOT NULL;

-- Automatic replies to a sender are rate-limited together (acks, rejections, command errors).
CREATE INDEX outbox_recipient_rate ON outbox (recipients, created_at);
