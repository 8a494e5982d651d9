-- The reference plan's setup_sql_file: run on every connection planrun opens for the
-- plan, before any stage. Session-local helpers live in pg_temp and vanish with it.
CREATE OR REPLACE FUNCTION pg_temp.closed_accounts() RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT count(*) FROM accounts WHERE closed $$;
