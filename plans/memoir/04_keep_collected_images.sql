-- Stage 4, after memoir.collect_images and in its transaction, under its EXCLUSIVE locks
-- on chapters, chapter_sections and memoir_images: what each image was when the stage
-- left it, for the way back. From here on the application may write either side (the
-- JSON or the memoir_images row); 04_revert_carry_images_back.sql compares both with
-- these digests (pg_temp.memoir_row_digest and pg_temp.memoir_json_digest, session.sql)
-- to know which one it changed, and refuses, naming them, the images it changed on
-- both sides differently. One set-based INSERT: the stage's verifications then check
-- that every row matches its JSON. Replaced at every run of the stage; dropped by its
-- revert.
CREATE SCHEMA IF NOT EXISTS planrun;
CREATE TABLE IF NOT EXISTS planrun.memoir_collected_images (
    chapter_id  bigint NOT NULL,
    section_id  bigint,            -- NULL: the chapter's cover
    json_digest uuid NOT NULL,
    row_digest  uuid NOT NULL
);
DELETE FROM planrun.memoir_collected_images;

INSERT INTO planrun.memoir_collected_images (chapter_id, section_id, json_digest, row_digest)
WITH source AS MATERIALIZED (SELECT * FROM pg_temp.memoir_image_sources())
SELECT m.chapter_id, m.section_id, pg_temp.memoir_json_digest(src.image),
       pg_temp.memoir_row_digest(m.url, m.caption, m.meta)
FROM source src JOIN public.memoir_images m
  ON src.section_id IS NULL AND m.section_id IS NULL AND m.chapter_id = src.chapter_id
UNION ALL
SELECT m.chapter_id, m.section_id, pg_temp.memoir_json_digest(src.image),
       pg_temp.memoir_row_digest(m.url, m.caption, m.meta)
FROM source src JOIN public.memoir_images m ON m.section_id = src.section_id;
