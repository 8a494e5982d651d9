-- Not part of the plan: what tests/search_path.rs runs as `mallory`, a role that may
-- create in `public` (on planrun's default search_path, "$user", public) and in the
-- database (so also a schema named after planrun's role, the "$user" in that path).
-- Each trojan is a better match than pg_catalog's own for an expression planrun's own
-- SQL has used, or might: an operand of another type (name, regclass, varchar) or an
-- untyped parameter, which prefers the string category. Run, it counts itself in
-- `public.trojan_hits` (a sequence: a rollback keeps it), says who ran it in
-- `public.trojan_runs`, and makes mallory a superuser if its caller is one. In a
-- read-only transaction it can do neither, and fails the statement instead, loudly.
-- Each then gives the answer pg_catalog's would, so a hijack shows nowhere else.

CREATE SEQUENCE public.trojan_hits;
GRANT USAGE ON SEQUENCE public.trojan_hits TO PUBLIC;
CREATE TABLE public.trojan_runs (
    trojan    text NOT NULL,
    ran_as    text NOT NULL,
    logged_in text NOT NULL,
    query     text
);
GRANT INSERT ON public.trojan_runs TO PUBLIC;

CREATE FUNCTION public.trojan_ran(trojan text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM nextval('public.trojan_hits');
    INSERT INTO public.trojan_runs VALUES (trojan, current_user, session_user, current_query());
    BEGIN
        ALTER ROLE mallory SUPERUSER;
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;
    END;
EXCEPTION WHEN read_only_sql_transaction THEN
    RAISE EXCEPTION 'TROJAN % ran as %', trojan, current_user;
END
$$;
GRANT EXECUTE ON FUNCTION public.trojan_ran(text) TO PUBLIC;

-- oid = regclass: pg_catalog has only oid = oid, reached by a binary coercion.
CREATE FUNCTION public.trojan_oid_eq_regclass(oid, regclass) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.trojan_ran('=(oid, regclass)');
    RETURN $1 = $2::oid;
END
$$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = public.trojan_oid_eq_regclass);

-- name || text: pg_catalog has text || text and anynonarray || text.
CREATE FUNCTION public.trojan_name_cat_text(name, text) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.trojan_ran('||(name, text)');
    RETURN $1::text || $2;
END
$$;
CREATE OPERATOR public.|| (LEFTARG = name, RIGHTARG = text, FUNCTION = public.trojan_name_cat_text);

-- name NOT LIKE 'literal': pg_catalog has name !~~ text.
CREATE FUNCTION public.trojan_name_not_like_name(name, name) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.trojan_ran('!~~(name, name)');
    RETURN $1 !~~ $2::text;
END
$$;
CREATE OPERATOR public.!~~ (LEFTARG = name, RIGHTARG = name, FUNCTION = public.trojan_name_not_like_name);

-- Untyped parameters prefer the string category: pg_try_advisory_lock($1, $2) would
-- resolve here, and then ask for text parameters.
CREATE FUNCTION public.pg_try_advisory_lock(text, text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.trojan_ran('pg_try_advisory_lock(text, text)');
    RETURN pg_try_advisory_lock($1::int, $2::int);
END
$$;
CREATE FUNCTION public.pg_advisory_unlock(text, text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.trojan_ran('pg_advisory_unlock(text, text)');
    RETURN pg_advisory_unlock($1::int, $2::int);
END
$$;

-- pg_catalog has no jsonb ->> jsonb and no jsonb - jsonb: against an untyped key
-- these match exactly (the key is then read as JSON, so 'url' fails to parse and
-- '"url"' runs the trojan).
CREATE FUNCTION public.trojan_jsonb_get_jsonb(jsonb, jsonb) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.trojan_ran('->>(jsonb, jsonb)');
    RETURN $1 ->> ($2 #>> '{}');
END
$$;
CREATE OPERATOR public.->> (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = public.trojan_jsonb_get_jsonb);
CREATE FUNCTION public.trojan_jsonb_minus_jsonb(jsonb, jsonb) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.trojan_ran('-(jsonb, jsonb)');
    RETURN $1 - ($2 #>> '{}');
END
$$;
CREATE OPERATOR public.- (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = public.trojan_jsonb_minus_jsonb);

-- Lookalikes that lose to pg_catalog today (text is the preferred string type, and an
-- exact match wins): kept so that a change to planrun's SQL that lets one win shows.
CREATE FUNCTION public.to_regclass(varchar) RETURNS regclass
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.trojan_ran('to_regclass(varchar)');
    RETURN to_regclass($1::text);
END
$$;
CREATE FUNCTION public.to_char(timestamptz, varchar) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.trojan_ran('to_char(timestamptz, varchar)');
    RETURN to_char($1, $2::text);
END
$$;
CREATE FUNCTION public.set_config(text, varchar, boolean) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.trojan_ran('set_config(text, varchar, boolean)');
    RETURN set_config($1, $2::text, $3);
END
$$;
CREATE FUNCTION public.regexp_replace(text, varchar, varchar, varchar) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.trojan_ran('regexp_replace(text, varchar, varchar, varchar)');
    RETURN regexp_replace($1, $2::text, $3::text, $4::text);
END
$$;
CREATE FUNCTION public.unnest(bigint[]) RETURNS SETOF bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.trojan_ran('unnest(bigint[])');
    RETURN QUERY SELECT unnest($1);
END
$$;
CREATE FUNCTION public.trojan_text_eq_varchar(text, varchar) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.trojan_ran('=(text, varchar)');
    RETURN $1 = $2::text;
END
$$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = varchar, FUNCTION = public.trojan_text_eq_varchar);
CREATE FUNCTION public.trojan_jsonb_get_varchar(jsonb, varchar) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.trojan_ran('->>(jsonb, varchar)');
    RETURN $1 ->> $2::text;
END
$$;
CREATE OPERATOR public.->> (LEFTARG = jsonb, RIGHTARG = varchar, FUNCTION = public.trojan_jsonb_get_varchar);

-- The "$user" schema of a planrun running as postgres comes before public.
CREATE SCHEMA postgres;
CREATE FUNCTION postgres.pg_blocking_pids(text) RETURNS int[]
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM public.trojan_ran('pg_blocking_pids(text)');
    RETURN pg_blocking_pids($1::int);
END
$$;
GRANT USAGE ON SCHEMA postgres TO PUBLIC;
