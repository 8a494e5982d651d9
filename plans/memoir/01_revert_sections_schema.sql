-- The way back of stage 1 (after stage 2's, which empties chapter_sections and the
-- covers): the section table and the cover column go.
DROP TABLE chapter_sections;
ALTER TABLE chapters DROP COLUMN cover_image;
