-- The way back of stage 5: chapter_sections.image again, filled from the memoir_images
-- row each section points at (or, when image_id was never set, the row that names the
-- section), then image_id goes. An image whose row still says what the section held
-- at stage 5 gets that object back exactly (planrun.memoir_section_images, kept by
-- 05_keep_section_images.sql); any other is rebuilt from the row, as
-- 04_revert_carry_images_back.sql rebuilds one.
--
-- Dropping image_id drops its foreign key, and with it the key's triggers on
-- memoir_images, which takes ACCESS EXCLUSIVE on memoir_images too. Named here, it is
-- taken with the stage's other locks before anything runs (planrun reads the locks of
-- a revert's SQL and takes them first), where a lock not had in lock_timeout releases
-- them all and is tried again later. Left to the DROP at the end, it was asked for
-- while this transaction held ACCESS EXCLUSIVE on chapter_sections: an application
-- statement holding ROW EXCLUSIVE on memoir_images and waiting to read chapter_sections
-- then waited on the revert, and the revert on it, until the retries ran out (exit 13
-- after 70 s, the application's writers stopped all along; tests/revert_traffic.rs).
LOCK TABLE public.memoir_images IN ACCESS EXCLUSIVE MODE;

CREATE TABLE IF NOT EXISTS planrun.memoir_section_images (
    section_id bigint PRIMARY KEY,
    image      jsonb NOT NULL
);

ALTER TABLE chapter_sections ADD COLUMN image jsonb;

UPDATE chapter_sections AS s
SET image = CASE WHEN k.image IS NOT NULL
                      AND (CASE WHEN k.image->'caption' = 'null'::jsonb THEN k.image - 'caption' ELSE k.image END)
                          = r.rebuilt
                 THEN k.image ELSE r.rebuilt END
FROM (SELECT m.id, m.section_id,
             m.meta || jsonb_build_object('url', m.url)
             || CASE WHEN m.caption IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('caption', m.caption) END AS rebuilt
      FROM memoir_images m WHERE m.section_id IS NOT NULL) AS r
LEFT JOIN planrun.memoir_section_images AS k ON k.section_id = r.section_id
WHERE r.id = s.image_id OR (s.image_id IS NULL AND r.section_id = s.id);

ALTER TABLE chapter_sections DROP COLUMN image_id;

DELETE FROM planrun.memoir_section_images;
