-- Ticket numbers from a sequence (issue 13, throughput). Replicas take numbers side by side
-- instead of queueing on one advisory lock held for the length of each other's batch. A
-- sequence is not transactional: a number taken by a transaction that rolls back is lost
-- (a gap), unless the same transaction gives it to its next new ticket (the store does, see
-- Tx::next_ticket_number). Numbers stay unique (tickets.number is UNIQUE) and increasing.
CREATE SEQUENCE ticket_numbers AS BIGINT START 1001;
-- Past the tickets already stored (nextval then gives MAX + 1, or 1001 for the first).
SELECT setval('ticket_numbers', GREATEST(COALESCE(MAX(number), 1000), 1000)) FROM tickets;
