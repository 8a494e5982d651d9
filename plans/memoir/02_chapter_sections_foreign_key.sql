-- Stage 2, after the split: chapter_sections.chapter_id -> chapters(id), as the spec's
-- target schema has it, added NOT VALID: no scan here, under the stage's locks (online,
-- the cutover's, which stop the application's writers). It checks every row written
-- from now on; the rows the split loaded are checked after the stage commits, by
-- 02_validate_chapter_sections_fk.sql (`after_commit = true` in plans/memoir.toml),
-- under SHARE UPDATE EXCLUSIVE, which blocks no reader and no writer. Skipped when the
-- key is already there (stage 1 run by hand from the runbook creates it, validated, on
-- the empty table); the stage's precondition has made sure it has the name the
-- validation names.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'public.chapter_sections'::regclass AND contype = 'f'
                     AND confrelid = 'public.chapters'::regclass) THEN
        ALTER TABLE public.chapter_sections
            ADD CONSTRAINT chapter_sections_chapter_id_fkey
            FOREIGN KEY (chapter_id) REFERENCES public.chapters(id) ON DELETE CASCADE NOT VALID;
    END IF;
END
$$;
