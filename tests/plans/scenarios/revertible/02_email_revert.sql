ALTER TABLE customers DROP COLUMN email;
SELECT pg_sleep(:revert_pause);
