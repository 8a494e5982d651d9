-- Stage 5, once every section points at its image: the foreign key added NOT VALID at
-- the stage's start is validated. VALIDATE CONSTRAINT itself takes SHARE UPDATE
-- EXCLUSIVE on chapter_sections (no reader or writer waits for it) and ROW SHARE on
-- memoir_images; here it runs under the EXCLUSIVE locks the stage's cutover already
-- holds, before the column drop, so the application's readers still go on.
ALTER TABLE public.chapter_sections VALIDATE CONSTRAINT chapter_sections_image_id_fkey;
