-- Stage 5 (optional), its start: the column sections will point at their
-- memoir_images row through, nullable and without a default, so adding it rewrites
-- nothing (a catalog change under ACCESS EXCLUSIVE, for an instant). Its foreign key is
-- added NOT VALID: every value written from now on is checked, and the rows are
-- validated once they are all filled (05_validate_image_fk.sql). Both are skipped when
-- already there (a stage 5 reset with `planrun reset` and started again).
ALTER TABLE public.chapter_sections ADD COLUMN IF NOT EXISTS image_id bigint;

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
