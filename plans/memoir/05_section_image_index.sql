-- Stage 5, after its commit: the index the foreign key from image_id needs. Each
-- memoir_images row deleted (an application deleting a chapter cascades to its images)
-- makes PostgreSQL run `UPDATE chapter_sections SET image_id = NULL WHERE image_id =
-- $1` (ON DELETE SET NULL); without an index that reads every section, once per image
-- deleted, while the application's transaction holds its locks.
--
-- Built CONCURRENTLY, after the commit (`after_commit = true` in plans/memoir.toml),
-- so that its scan of the whole table holds only SHARE UPDATE EXCLUSIVE on
-- chapter_sections: no reader and no writer waits for it. It cannot run in a
-- transaction block, so planrun runs the stage's after-commit steps on the session.
-- A failed build leaves an invalid index under this name: the ledger keeps the stage
-- `validation_pending`, and the next `planrun apply` drops it and builds it again.
-- IF NOT EXISTS: a re-run after the build passed (and the key's validation did not)
-- keeps it. Reverting stage 5 drops image_id, and the index with it.
CREATE INDEX CONCURRENTLY IF NOT EXISTS chapter_sections_image_id_idx
    ON public.chapter_sections (image_id);
