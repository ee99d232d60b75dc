-- Mirror of migrations/sqlite/0006_agent_trust.sql: who is trusted for what.
CREATE TABLE agent_mail (
    message_id TEXT    NOT NULL PRIMARY KEY,
    ticket_id  BIGINT  NOT NULL REFERENCES tickets (id)
);
INSERT INTO agent_mail (message_id, ticket_id)
    SELECT message_id, ticket_id FROM outbox WHERE kind = 'notify-agent' AND ticket_id IS NOT NULL;

ALTER TABLE users ADD COLUMN known BIGINT NOT NULL DEFAULT 0;
UPDATE users SET known = 1
 WHERE role != 'customer' OR support_user = 1 OR org != ''
    OR id IN (SELECT requester_id FROM tickets)
    OR (id NOT IN (SELECT user_id FROM participants)
        AND id NOT IN (SELECT author_id FROM messages WHERE author_id IS NOT NULL));
