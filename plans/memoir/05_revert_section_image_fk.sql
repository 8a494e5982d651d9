-- The way back of stage 5: chapter_sections.image again, filled from the memoir_images
-- row each section points at (or, when image_id was never set, the row that names the
-- section), then image_id goes. An image whose row still says what the section held
-- at stage 5 gets that object back exactly (planrun.memoir_section_images, kept by
-- 05_keep_section_images.sql); any other is rebuilt from the row, as
-- 04_revert_carry_images_back.sql rebuilds one.
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
