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

-- The split's verification compares sums rather than ordered aggregates: a sum of
-- per-chapter (or per-image) terms does not depend on order, so neither side sorts,
-- the quarantined chapters' terms are added to the split's, and the split's own
-- witness (crates/planrun-memoir/src/witness.rs), which adds up the rows it writes as
-- it writes them, computes the very same numbers. A term is the first 60 bits (15 hex
-- digits) of an MD5; a lost, changed or misplaced value changes the sum except with
-- probability 2^-60.
CREATE OR REPLACE FUNCTION pg_temp.memoir_term(t text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (('x' OPERATOR(pg_catalog.||) pg_catalog.left(pg_catalog.md5(t), 15))::pg_catalog.bit(60))::pg_catalog.int8
$$;

-- A chapter's content term: `chapter_id:md5(paragraphs joined with a blank line)`, or
-- NULL when the legacy content has no paragraph. On the split's side the joined text is
-- the chapter's non-empty section contents in position order.
CREATE OR REPLACE FUNCTION pg_temp.memoir_content_term(chapter_id bigint, content text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE COST 1000 SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    joined text := pg_temp.memoir_paragraphs(content);
BEGIN
    IF joined = '' THEN
        RETURN NULL;
    END IF;
    RETURN pg_temp.memoir_term(chapter_id || ':' || md5(joined));
END
$$;

-- What a legacy images value becomes by the spec's rules 2 to 4, as a sum: one term per
-- element as an object (`chapter_id:image`, a string `s` as {"url": s}), which is one
-- section image each wherever placement puts it, and one for the cover, the first
-- element (`cover:chapter_id:image`, so a cover never stands in for a section image).
-- 0 for a chapter without images. The text and json overloads sum what
-- `memoir_try_jsonb` makes of the value, as the split's check does for a quarantined
-- chapter's raw images.
CREATE OR REPLACE FUNCTION pg_temp.memoir_images_terms(chapter_id bigint, j jsonb) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF jsonb_typeof(j) IS DISTINCT FROM 'array' OR jsonb_array_length(j) = 0 THEN
        RETURN 0;
    END IF;
    RETURN (
        SELECT sum(pg_temp.memoir_term(chapter_id || ':' || image::text))
             + pg_temp.memoir_term('cover:' || chapter_id || ':' || ((array_agg(image ORDER BY n))[1])::text)
        FROM (SELECT n, CASE WHEN jsonb_typeof(element) = 'string'
                             THEN jsonb_build_object('url', element #>> '{}')
                             ELSE element END AS image
              FROM jsonb_array_elements(j) WITH ORDINALITY e(element, n)) images);
END
$$;

CREATE OR REPLACE FUNCTION pg_temp.memoir_images_terms(chapter_id bigint, raw text) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$ SELECT pg_temp.memoir_images_terms(chapter_id, pg_temp.memoir_try_jsonb(raw)) $$;

CREATE OR REPLACE FUNCTION pg_temp.memoir_images_terms(chapter_id bigint, raw json) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$ SELECT pg_temp.memoir_images_terms(chapter_id, pg_temp.memoir_try_jsonb(raw)) $$;

-- The split's witness (crates/planrun-memoir/src/witness.rs): what an atomic split
-- wrote to chapter_sections, counted and digested as it wrote it. Empty outside the
-- transaction that wrote it (batched mode never writes it, and `planrun verify` runs
-- later), and then the checks read the table instead. Created here so that the
-- checks can name it on every connection; the transform creates the same table.
CREATE TEMP TABLE IF NOT EXISTS memoir_split_witness (
    sections_written       bigint  NOT NULL,
    sections_with_image    bigint  NOT NULL,
    chapters_with_sections bigint  NOT NULL,
    content_digest         numeric NOT NULL,
    images_digest          numeric NOT NULL,
    chapters_with_gaps     bigint  NOT NULL,
    images_not_objects     bigint  NOT NULL,
    updated_before         bigint  NOT NULL DEFAULT 0,
    deleted_before         bigint  NOT NULL DEFAULT 0
) ON COMMIT DELETE ROWS;

-- The way back (docs/memoir.md, "The way back"). `planrun revert` judges every revert
-- precondition before it changes anything, while the newer stages are still applied:
-- stage 2's must then read the sections' images and the covers as the reverts of
-- stages 5, 4 and 3 will leave them, from whichever shape holds them now. So these
-- build their queries at run time (EXECUTE) from the columns and tables that exist:
--   chapter_sections.image                  stages 2 to 4: the JSON, or (stages 3-4) what
--                                           pg_temp.memoir_images_as_reverted says;
--   chapter_sections.image_id               stage 5: what 05_revert_section_image_fk.sql
--                                           gives back (the kept object when its row
--                                           still says the same, else the rebuilt one).
-- A memoir_images row's image object, as the reverts rebuild it.
CREATE OR REPLACE FUNCTION pg_temp.memoir_image_of(url text, caption text, meta jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT meta OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('url', url)
           OPERATOR(pg_catalog.||) CASE WHEN caption IS NULL THEN '{}'::pg_catalog.jsonb
                                        ELSE pg_catalog.jsonb_build_object('caption', caption) END
$$;

-- What stage 4 keeps of each image it collected (plans/memoir/04_keep_collected_images.sql),
-- so that the way back can tell which side the application changed since: a digest
-- of the memoir_images row (its url, caption and meta) and one of the JSON it was
-- collected from, spelled as stored (a `"caption": null` is not a missing caption).
CREATE OR REPLACE FUNCTION pg_temp.memoir_row_digest(url text, caption text, meta jsonb) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CAST(pg_catalog.md5(pg_temp.memoir_image_key(url, caption, meta)) AS pg_catalog.uuid)
$$;

CREATE OR REPLACE FUNCTION pg_temp.memoir_json_digest(image jsonb) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CAST(pg_catalog.md5(CAST(image AS pg_catalog.text)) AS pg_catalog.uuid)
$$;

-- Every cover and section image JSON stage 4 collects from: (chapter, NULL, cover) and
-- (chapter, section, image); sections only while chapter_sections.image exists (a stage
-- 4 run again after stage 5 collects covers only).
CREATE OR REPLACE FUNCTION pg_temp.memoir_image_sources()
RETURNS TABLE (chapter_id bigint, section_id bigint, image jsonb)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY SELECT c.id, NULL::bigint, c.cover_image FROM public.chapters c
                 WHERE c.cover_image IS NOT NULL;
    IF EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = 'public.chapter_sections'::regclass
                 AND attname = 'image' AND NOT attisdropped) THEN
        RETURN QUERY EXECUTE 'SELECT s.chapter_id, s.id, s.image FROM public.chapter_sections s
                              WHERE s.image IS NOT NULL';
    END IF;
END
$$;

-- Every cover and section image that has a JSON or a memoir_images row, as the way
-- back of stages 4 and 3 (04_revert_carry_images_back.sql) leaves its JSON, and
-- whether it is a conflict. Against what stage 4 kept (none: the row and the JSON
-- were both written since), each side is changed or not:
--   row not changed              the JSON, as it is (NULL when the application removed it);
--   row changed, JSON not        the row's object (NULL when the application deleted the row);
--   both changed                 the JSON; a conflict when the row says otherwise (url,
--                                caption, meta), which the revert refuses (loss = true).
-- Sections only while chapter_sections.image exists: with stage 5 applied, its revert
-- first gives every section its row's object, which agrees with its row. Stage 5
-- forward (memoir.link_section_images, crates/planrun-memoir/src/link_transform.rs)
-- reads the sections alone (sections_only), those of each batch (keys, NULL for all),
-- to carry the rows the application changed into the JSON before it makes the rows
-- match the JSON, and refuses the conflicts; the images it links are then kept again
-- as they agree, so that an edit made afterwards is judged against them.
CREATE OR REPLACE FUNCTION pg_temp.memoir_images_as_reverted(sections_only boolean DEFAULT false,
                                                             keys bigint[] DEFAULT NULL)
RETURNS TABLE (chapter_id bigint, section_id bigint, image jsonb, conflict boolean)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    has_image boolean := EXISTS (SELECT 1 FROM pg_attribute
                                 WHERE attrelid = 'public.chapter_sections'::regclass
                                   AND attname = 'image' AND NOT attisdropped);
    kept text := CASE WHEN to_regclass('planrun.memoir_collected_images') IS NULL
                      THEN '(SELECT NULL::bigint AS chapter_id, NULL::bigint AS section_id,
                                    NULL::uuid AS json_digest, NULL::uuid AS row_digest WHERE false)'
                      ELSE 'planrun.memoir_collected_images' END;
    sides text;
BEGIN
    IF to_regclass('public.memoir_images') IS NULL THEN
        RETURN;
    END IF;
    sides := format(
        'SELECT c.id AS chapter_id, NULL::bigint AS section_id, c.cover_image AS source,
                m.url, m.caption, m.meta, m.id IS NOT NULL AS has_row, k.json_digest, k.row_digest
         FROM public.chapters c
         LEFT JOIN public.memoir_images m ON m.chapter_id = c.id AND m.section_id IS NULL
         LEFT JOIN %s k ON k.chapter_id = c.id AND k.section_id IS NULL
         WHERE (c.cover_image IS NOT NULL OR m.id IS NOT NULL) AND NOT %L::boolean', kept, sections_only);
    IF has_image THEN
        sides := sides || format(
            ' UNION ALL
             SELECT s.chapter_id, s.id, s.image, m.url, m.caption, m.meta, m.id IS NOT NULL,
                    k.json_digest, k.row_digest
             FROM public.chapter_sections s
             LEFT JOIN public.memoir_images m ON m.section_id = s.id
             LEFT JOIN %s k ON k.section_id = s.id
             WHERE (s.image IS NOT NULL OR m.id IS NOT NULL)
               AND ($1::bigint[] IS NULL OR s.id OPERATOR(pg_catalog.=) ANY ($1::bigint[]))', kept);
    END IF;
    RETURN QUERY EXECUTE
        'SELECT chapter_id, section_id,
                CASE WHEN row_changed AND NOT json_changed THEN row_image ELSE source END,
                row_changed AND json_changed AND row_key IS DISTINCT FROM source_key
         FROM (SELECT chapter_id, section_id, source, row_image, row_key, source_key,
                      CASE WHEN has_row THEN pg_temp.memoir_row_digest(url, caption, meta) END
                          IS DISTINCT FROM row_digest AS row_changed,
                      CASE WHEN source IS NOT NULL THEN pg_temp.memoir_json_digest(source) END
                          IS DISTINCT FROM json_digest AS json_changed
               FROM (SELECT t.*,
                            CASE WHEN has_row THEN pg_temp.memoir_image_of(url, caption, meta) END AS row_image,
                            CASE WHEN has_row THEN pg_temp.memoir_image_key(url, caption, meta) END AS row_key,
                            CASE WHEN jsonb_typeof(source) = ''object''
                                 THEN pg_temp.memoir_image_key(source->>''url'', source->>''caption'',
                                                               source - ''url'' - ''caption'')
                                 ELSE ''not an object: '' || source::text END AS source_key
                     FROM (' || sides || ') t) keyed) judged' USING keys;
END
$$;

-- Every section as the way back of stages 3 to 5 leaves it: its chapter and position,
-- whether it has content and whether that content is exactly one paragraph by the
-- split's rule, and its image.
CREATE OR REPLACE FUNCTION pg_temp.memoir_sections_as_reverted()
RETURNS TABLE (chapter_id bigint, "position" int, has_content boolean, one_paragraph boolean, image jsonb)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    has_image boolean := EXISTS (SELECT 1 FROM pg_attribute
                                 WHERE attrelid = 'public.chapter_sections'::regclass
                                   AND attname = 'image' AND NOT attisdropped);
    has_images boolean := to_regclass('public.memoir_images') IS NOT NULL;
    kept boolean := to_regclass('planrun.memoir_section_images') IS NOT NULL;
    image text;
    joins text := '';
BEGIN
    IF has_image AND NOT has_images THEN
        image := 's.image';
    ELSIF has_image THEN
        image := 'r.image';
        joins := ' LEFT JOIN (SELECT r.section_id, r.image FROM pg_temp.memoir_images_as_reverted() r
                              WHERE r.section_id IS NOT NULL) r ON r.section_id = s.id';
    ELSE
        image := 'r.rebuilt';
        joins := ' LEFT JOIN LATERAL (SELECT pg_temp.memoir_image_of(m.url, m.caption, m.meta) AS rebuilt
                                      FROM public.memoir_images m
                                      WHERE m.section_id IS NOT NULL
                                        AND (m.id = s.image_id OR (s.image_id IS NULL AND m.section_id = s.id))
                                      LIMIT 1) r ON true';
        IF kept THEN
            image := 'CASE WHEN k.image IS NOT NULL AND r.rebuilt =
                                (CASE WHEN k.image->''caption'' = ''null''::jsonb THEN k.image - ''caption'' ELSE k.image END)
                           THEN k.image ELSE r.rebuilt END';
            joins := joins || ' LEFT JOIN planrun.memoir_section_images k ON k.section_id = s.id';
        END IF;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT s.chapter_id, s.position, s.content <> '''',
                s.content <> '''' AND pg_temp.memoir_paragraphs(s.content) = s.content
                AND strpos(s.content, E''\n\n'') = 0,
                %s
         FROM public.chapter_sections s%s', image, joins);
END
$$;

-- Every chapter's cover as the way back of stages 3 and 4 leaves it
-- (pg_temp.memoir_images_as_reverted).
CREATE OR REPLACE FUNCTION pg_temp.memoir_covers_as_reverted()
RETURNS TABLE (chapter_id bigint, cover jsonb)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF to_regclass('public.memoir_images') IS NULL THEN
        RETURN QUERY SELECT c.id, c.cover_image FROM public.chapters c;
    ELSE
        RETURN QUERY EXECUTE
            'SELECT c.id, r.image FROM public.chapters c
             LEFT JOIN (SELECT r.chapter_id, r.image FROM pg_temp.memoir_images_as_reverted() r
                        WHERE r.section_id IS NULL) r ON r.chapter_id = c.id';
    END IF;
END
$$;
