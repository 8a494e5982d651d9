-- Stage 2, after the split: chapter_sections.chapter_id -> chapters(id), as the spec's
-- target schema has it, validated with one join over the loaded rows. Skipped when
-- the key is already there (stage 1 run by hand from the runbook creates it).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'public.chapter_sections'::regclass AND contype = 'f'
                     AND confrelid = 'public.chapters'::regclass) THEN
        ALTER TABLE public.chapter_sections
            ADD CONSTRAINT chapter_sections_chapter_id_fkey
            FOREIGN KEY (chapter_id) REFERENCES public.chapters(id) ON DELETE CASCADE;
    END IF;
END
$$;
