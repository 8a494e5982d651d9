-- A pg_temp helper for the checks, as plans/memoir/session.sql defines its own.
CREATE OR REPLACE FUNCTION pg_temp.image_count(image jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN image IS NULL THEN 0 ELSE 1 END
$$;
