-- Stage 5 (optional): sections point at their memoir_images row instead of holding
-- the image JSON.
ALTER TABLE chapter_sections
    ADD COLUMN image_id bigint REFERENCES memoir_images(id) ON DELETE SET NULL;

UPDATE chapter_sections AS s
SET image_id = m.id
FROM memoir_images AS m
WHERE m.section_id = s.id;

ALTER TABLE chapter_sections DROP COLUMN image;
