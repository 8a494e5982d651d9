-- Stage 5, first: the stage makes every section's memoir_images row match its JSON
-- (memoir.link_section_images), then drops the JSON. Since stage 4 the application may
-- have written either side, so each batch first carries into the JSON the rows of its
-- sections the application changed (or added, or deleted) while their JSON stayed as
-- stage 4 collected it, and refuses the images changed on both sides differently, by
-- the rule the way back of stage 4 uses (pg_temp.memoir_images_as_reverted,
-- session.sql). It reads what stage 4 kept by section, and keeps the images it links
-- again: an index on the section, built here on planrun's table only (the
-- application's tables are not locked). A stage 4 from before the digests kept
-- nothing: the table, created empty, then holds only what the batches link, and every
-- other image whose row and JSON differ is refused, as the way back refuses it.
CREATE SCHEMA IF NOT EXISTS planrun;
CREATE TABLE IF NOT EXISTS planrun.memoir_collected_images (
    chapter_id  bigint NOT NULL,
    section_id  bigint,            -- NULL: the chapter's cover
    json_digest uuid NOT NULL,
    row_digest  uuid NOT NULL
);
CREATE INDEX IF NOT EXISTS memoir_collected_images_by_section
    ON planrun.memoir_collected_images (section_id);
