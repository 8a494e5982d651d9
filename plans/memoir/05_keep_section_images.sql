-- Stage 5, before chapter_sections.image goes: every section image kept as it is, for
-- the way back. memoir_images keeps an image's url, caption and other keys, but not
-- whether a NULL caption was written `"caption": null` or left out; the revert
-- (05_revert_section_image_fk.sql) gives each section this object back when its
-- memoir_images row still says the same. Replaced at every run of the stage; kept
-- beside planrun.memoir_legacy until the plan closes the way back.
CREATE SCHEMA IF NOT EXISTS planrun;
CREATE TABLE IF NOT EXISTS planrun.memoir_section_images (
    section_id bigint PRIMARY KEY,
    image      jsonb NOT NULL
);
DELETE FROM planrun.memoir_section_images;
INSERT INTO planrun.memoir_section_images (section_id, image)
SELECT id, image FROM chapter_sections WHERE image IS NOT NULL;
