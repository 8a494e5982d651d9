-- Stage 5, after its commit: the foreign key added NOT VALID at the cutover is
-- validated, in a transaction of its own (`after_commit = true` in plans/memoir.toml).
-- VALIDATE CONSTRAINT takes SHARE UPDATE EXCLUSIVE on chapter_sections and ROW SHARE
-- on memoir_images: no reader and no writer of either waits for its scan. Until it
-- passes the ledger records the stage `validation_pending`; a re-run of apply retries
-- only this.
ALTER TABLE public.chapter_sections VALIDATE CONSTRAINT chapter_sections_image_id_fkey;
