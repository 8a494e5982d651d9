-- Session helpers for the memoir plan's captures and verification. planrun runs this
-- file on every connection it opens for the plan ([plan] setup_sql_file), before any
-- stage. The functions live in pg_temp: they vanish with the session and never touch
-- the application's schema.
--
-- The helpers name pg_catalog for every function and operator they call, or run with
-- `SET search_path = pg_catalog, pg_temp`: planrun often runs as a superuser, and a
-- function or operator that another role created in `public` and that fits an
-- expression here better than pg_catalog's would otherwise run with its privileges
-- (CVE-2018-1058). The SQL helpers qualify their bodies rather than SET, because a
-- SET clause would stop PostgreSQL from inlining them into the capture's scan.
--
-- The helpers that cannot fail are PARALLEL SAFE, so that PostgreSQL may spread the
-- capture's scan of every chapter over parallel workers. The ones that catch invalid
-- JSON (an EXCEPTION block is a subtransaction, which a parallel worker of
-- PostgreSQL 15 cannot start) keep the default, PARALLEL UNSAFE: a query using them
-- runs in one process.

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
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT raw $$;

-- Number of image elements in a legacy images value (0 for NULL, null, [] and
-- anything that is not an array), for each column type.
CREATE OR REPLACE FUNCTION pg_temp.memoir_image_count(j jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN pg_catalog.jsonb_typeof(j) OPERATOR(pg_catalog.=) 'array'
                THEN pg_catalog.jsonb_array_length(j) ELSE 0 END
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
-- PL/pgSQL rather than SQL so that it is not inlined and its COST counts: the planner
-- then knows the regular expression over every chapter is worth parallel workers
-- (an inlined expression is costed as cheap, and the scan stays in one process).
CREATE OR REPLACE FUNCTION pg_temp.memoir_paragraphs(content text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE COST 1000 SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN btrim(
        regexp_replace(
            E'\n' || replace(replace(coalesce(content, ''), E'\r\n', E'\n'), E'\r', E'\n') || E'\n',
            '\n([\t\v\f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*\n)+',
            E'\n\n',
            'g'),
        E'\n');
END
$$;

-- One image as memoir_images keeps it (url, caption, the other keys as meta), in one
-- comparable text: a section's image object and the memoir_images row made from it
-- give the same key, so stage 5 can show that repointing lost or changed no image.
CREATE OR REPLACE FUNCTION pg_temp.memoir_image_key(url text, caption text, meta jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.md5(coalesce(url, ''))
           OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) coalesce(pg_catalog.md5(caption), '-')
           OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) pg_catalog.md5(coalesce(meta, '{}')::pg_catalog.text)
$$;

-- A digest of what a legacy images value becomes by the spec's rules 2 to 4: the
-- cover (the first element as an object) and the multiset of section images (each
-- element as an object, a string `s` as {"url": s}), sorted, since placement decides
-- only where each goes. The split stage compares it, chapter by chapter, with the
-- same digest of the sections' images and the cover it wrote: a replaced image that
-- keeps every count still differs (issue 21). The text and json overloads digest
-- what `memoir_try_jsonb` makes of the value, as the split's check does for a
-- quarantined chapter's raw images.
CREATE OR REPLACE FUNCTION pg_temp.memoir_images_digest(j jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF jsonb_typeof(j) IS DISTINCT FROM 'array' OR jsonb_array_length(j) = 0 THEN
        RETURN pg_temp.memoir_split_images_digest(NULL, NULL);
    END IF;
    RETURN (
        SELECT pg_temp.memoir_split_images_digest(
                   (array_agg(image ORDER BY n))[1],
                   string_agg(image::text, ',' ORDER BY image::text COLLATE "C"))
        FROM (SELECT n, CASE WHEN jsonb_typeof(element) = 'string'
                             THEN jsonb_build_object('url', element #>> '{}')
                             ELSE element END AS image
              FROM jsonb_array_elements(j) WITH ORDINALITY e(element, n)) images);
END
$$;

CREATE OR REPLACE FUNCTION pg_temp.memoir_images_digest(raw text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT pg_temp.memoir_images_digest(pg_temp.memoir_try_jsonb(raw)) $$;

CREATE OR REPLACE FUNCTION pg_temp.memoir_images_digest(raw json) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT pg_temp.memoir_images_digest(pg_temp.memoir_try_jsonb(raw)) $$;

-- The digest of a split chapter: its cover, and its sections' images joined in the
-- order `memoir_images_digest` sorts them (`string_agg(image::text, ',' ORDER BY
-- image::text COLLATE "C")`).
CREATE OR REPLACE FUNCTION pg_temp.memoir_split_images_digest(cover jsonb, images text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.md5(coalesce(cover::pg_catalog.text, '-')
                          OPERATOR(pg_catalog.||) '|' OPERATOR(pg_catalog.||) coalesce(images, ''))
$$;
