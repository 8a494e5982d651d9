-- Stage 5, last, under the cutover's locks once every section is linked: image_id's
-- foreign key, added NOT VALID (catalog only, no scan: every value written from now on
-- is checked, and the rows already there are validated after the commit,
-- 05_validate_image_fk.sql); then the image JSON is gone from chapter_sections, and
-- image_id points at it in memoir_images. The key is added here rather than at the
-- stage's start so that the batches' deletions of memoir_images rows do not each read
-- every section (05_section_image_fk.sql says why). The drop is a catalog change (no
-- rewrite) under ACCESS EXCLUSIVE, held to the commit: the only moment of the stage the
-- application's readers of chapter_sections wait for. The key is skipped when already
-- there (a stage 5 an older plan started, reset and started again).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'public.chapter_sections'::regclass
                     AND conname = 'chapter_sections_image_id_fkey') THEN
        ALTER TABLE public.chapter_sections
            ADD CONSTRAINT chapter_sections_image_id_fkey
            FOREIGN KEY (image_id) REFERENCES public.memoir_images(id) ON DELETE SET NULL
            NOT VALID;
    END IF;
END
$$;

ALTER TABLE public.chapter_sections DROP COLUMN image;
