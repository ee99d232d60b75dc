-- Who is trusted for what (issue 9). Migrations only add.

-- The Message-IDs of mail we sent to agents only (notifications, answers to agents'
-- commands). An agent's reply naming one of them came through a channel only agents receive;
-- a reply naming a customer's message did not. (A table of its own: outbox.raw must stay the
-- last column of outbox, see 0004.)
CREATE TABLE agent_mail (
    message_id TEXT    NOT NULL PRIMARY KEY,
    ticket_id  INTEGER NOT NULL REFERENCES tickets (id)
) STRICT;
INSERT INTO agent_mail (message_id, ticket_id)
    SELECT message_id, ticket_id FROM outbox WHERE kind = 'notify-agent' AND ticket_id IS NOT NULL;

-- A "known" user may open tickets under `[policy] intake = "known"`: created by an admin
-- (`users add`, `[[agent]]`), or the requester of a ticket accepted under the policy. A Cc
-- collaborator, or the author of a reply, is not known by being one.
ALTER TABLE users ADD COLUMN known INTEGER NOT NULL DEFAULT 0;
-- Existing users: staff, flagged or organised by an admin, requesters, and users the pipeline
-- never met (neither collaborators nor message authors: only an admin can have made them).
UPDATE users SET known = 1
 WHERE role != 'customer' OR support_user = 1 OR org != ''
    OR id IN (SELECT requester_id FROM tickets)
    OR (id NOT IN (SELECT user_id FROM participants)
        AND id NOT IN (SELECT author_id FROM messages WHERE author_id IS NOT NULL));
