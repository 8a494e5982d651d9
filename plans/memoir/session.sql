-- Session helpers for the memoir plan's captures and verification. planrun runs this
-- file on every connection it opens for the plan ([plan] setup_sql_file), before any
-- stage. The functions live in pg_temp: they vanish with the session and never touch
-- the application's schema. Function bodies are checked when called, not created:
-- memoir_section_text reads chapter_sections, which exists only after stage 1.
SET check_function_bodies = off;

-- The legacy images value (jsonb, json or text holding JSON) as jsonb, or NULL when it
-- is not valid JSON. Counting must not fail on the very rows the transform rejects.
CREATE OR REPLACE FUNCTION pg_temp.memoir_try_jsonb(raw text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN raw::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

-- Number of image elements in a legacy images value (0 for NULL, null, [] and
-- anything that is not an array).
CREATE OR REPLACE FUNCTION pg_temp.memoir_image_count(raw text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(j) = 'array' THEN jsonb_array_length(j) ELSE 0 END
    FROM (SELECT pg_temp.memoir_try_jsonb(raw) AS j) parsed
$$;

-- The legacy content's paragraphs joined with a blank line, computed by the spec's
-- rule 1 independently of the Rust splitter: CRLF then lone CR become LF; a line is
-- blank when every character is Unicode White_Space; a paragraph is a maximal run of
-- non-blank lines joined with LF, untrimmed.
CREATE OR REPLACE FUNCTION pg_temp.memoir_paragraphs(content text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(string_agg(paragraph, E'\n\n' ORDER BY first_line), '')
    FROM (
        SELECT min(n) AS first_line, string_agg(line, E'\n' ORDER BY n) AS paragraph
        FROM (
            SELECT line, n, blank,
                   sum(CASE WHEN blank THEN 1 ELSE 0 END) OVER (ORDER BY n) AS block
            FROM (
                SELECT line, n,
                       line ~ '^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$' AS blank
                FROM regexp_split_to_table(
                         replace(replace(coalesce(content, ''), E'\r\n', E'\n'), E'\r', E'\n'),
                         E'\n') WITH ORDINALITY AS lines(line, n)
            ) classified
        ) numbered
        WHERE NOT blank
        GROUP BY block
    ) paragraphs
$$;

-- What the sections of one chapter hold: non-empty contents joined with a blank line.
CREATE OR REPLACE FUNCTION pg_temp.memoir_section_text(chapter bigint) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(string_agg(content, E'\n\n' ORDER BY position), '')
    FROM chapter_sections
    WHERE chapter_id = chapter AND content <> ''
$$;

RESET check_function_bodies;
