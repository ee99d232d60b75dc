-- Mirror of migrations/postgres/0020_ticket_number_sequence.sql, which gives PostgreSQL a
-- sequence for ticket numbers. SQLite needs none: one writer at a time (BEGIN IMMEDIATE),
-- and the next number is MAX(number) + 1 read under that write lock, without gaps.
SELECT 1;
