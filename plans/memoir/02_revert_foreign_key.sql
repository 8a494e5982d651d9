-- The way back of stage 2, after memoir.unsplit_chapters has written every chapter
-- back and emptied chapter_sections: the foreign key stage 2 added goes, leaving the
-- table as stage 1 made it (stage 2 adds the key again when it runs again).
ALTER TABLE chapter_sections DROP CONSTRAINT IF EXISTS chapter_sections_chapter_id_fkey;
