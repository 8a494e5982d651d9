-- Session helpers for the memoir plan's captures and verification. planrun runs this
-- file on every connection it opens for the plan ([plan] setup_sql_file), before any
-- stage. The functions live in pg_temp: they vanish with the session and never touch
-- the application's schema.

-- The legacy images value as jsonb, or NULL when it is not valid JSON. Counting must
-- not fail on the very rows the transform rejects. One overload per column type, so
-- that a jsonb column (nothing to catch) pays no subtransaction per row.
CREATE OR REPLACE FUNCTION pg_temp.memoir_try_jsonb(raw text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN raw::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION pg_temp.memoir_try_jsonb(raw json) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN raw::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION pg_temp.memoir_try_jsonb(raw jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT raw $$;

-- Number of image elements in a legacy images value (0 for NULL, null, [] and
-- anything that is not an array), for each column type.
CREATE OR REPLACE FUNCTION pg_temp.memoir_image_count(j jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(j) = 'array' THEN jsonb_array_length(j) ELSE 0 END
$$;

CREATE OR REPLACE FUNCTION pg_temp.memoir_image_count(raw text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT pg_temp.memoir_image_count(pg_temp.memoir_try_jsonb(raw)) $$;

CREATE OR REPLACE FUNCTION pg_temp.memoir_image_count(raw json) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT pg_temp.memoir_image_count(pg_temp.memoir_try_jsonb(raw)) $$;

-- The legacy content's paragraphs joined with a blank line, computed by the spec's
-- rule 1 independently of the Rust splitter: CRLF then lone CR become LF; a line is
-- blank when every character is Unicode White_Space; a paragraph is a maximal run of
-- non-blank lines joined with LF, untrimmed. With the text framed by newlines, every
-- run of blank lines between two newlines becomes one empty line, and the frame goes.
CREATE OR REPLACE FUNCTION pg_temp.memoir_paragraphs(content text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT btrim(
        regexp_replace(
            E'\n' || replace(replace(coalesce(content, ''), E'\r\n', E'\n'), E'\r', E'\n') || E'\n',
            '\n([\t\v\f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*\n)+',
            E'\n\n',
            'g'),
        E'\n')
$$;
