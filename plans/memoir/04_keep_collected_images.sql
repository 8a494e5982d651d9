-- Stage 4, after memoir.collect_images and in its transaction, under its EXCLUSIVE locks
-- on chapters, chapter_sections and memoir_images: what each image was when the stage
-- left it, for the way back. From here on the application may write either side (the
-- JSON or the memoir_images row); 04_revert_carry_images_back.sql compares both with
-- these digests (pg_temp.memoir_row_digest and pg_temp.memoir_json_digest, session.sql)
-- to know which one it changed, and refuses, naming them, the images it changed on both
-- sides differently. One set-based INSERT per source. Replaced at every run of the
-- stage; dropped by its revert.
CREATE SCHEMA IF NOT EXISTS planrun;
CREATE TABLE IF NOT EXISTS planrun.memoir_collected_images (
    chapter_id  bigint NOT NULL,
    section_id  bigint,            -- NULL: the chapter's cover
    json_digest uuid NOT NULL,
    row_digest  uuid NOT NULL
);
DELETE FROM planrun.memoir_collected_images;

INSERT INTO planrun.memoir_collected_images (chapter_id, section_id, json_digest, row_digest)
SELECT c.id, NULL, pg_temp.memoir_json_digest(c.cover_image),
       pg_temp.memoir_row_digest(m.url, m.caption, m.meta)
FROM public.memoir_images m
JOIN public.chapters c ON c.id = m.chapter_id AND c.cover_image IS NOT NULL
WHERE m.section_id IS NULL;

-- chapter_sections.image is gone once stage 5 ran (a stage 4 run again after it
-- collects covers only): PL/pgSQL analyses the INSERT only when it runs.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
               WHERE attrelid = 'public.chapter_sections'::regclass
                 AND attname = 'image' AND NOT attisdropped) THEN
        INSERT INTO planrun.memoir_collected_images (chapter_id, section_id, json_digest, row_digest)
        SELECT s.chapter_id, s.id, pg_temp.memoir_json_digest(s.image),
               pg_temp.memoir_row_digest(m.url, m.caption, m.meta)
        FROM public.memoir_images m
        JOIN public.chapter_sections s ON s.id = m.section_id AND s.image IS NOT NULL;
    END IF;
END
$$;
