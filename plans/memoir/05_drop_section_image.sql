-- Stage 5, last: the image JSON is gone from chapter_sections; image_id points at it in
-- memoir_images. A catalog change (no rewrite) under ACCESS EXCLUSIVE, held to the
-- commit: the only moment of the stage the application's readers of chapter_sections
-- wait for.
ALTER TABLE public.chapter_sections DROP COLUMN image;
