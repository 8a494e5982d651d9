-- Stage 2, after its commit: the foreign key added NOT VALID at the end of the split
-- (02_chapter_sections_foreign_key.sql; a key made by hand has this name, by the
-- stage's precondition) is validated, in a transaction of its own (`after_commit =
-- true` in plans/memoir.toml). VALIDATE CONSTRAINT takes SHARE UPDATE EXCLUSIVE on
-- chapter_sections and ROW SHARE on chapters: no reader and no writer of either waits
-- for its join over the table. Until it passes the ledger records the stage
-- `validation_pending`; a re-run of apply retries only this. On a key that is already
-- valid it does nothing.
ALTER TABLE public.chapter_sections VALIDATE CONSTRAINT chapter_sections_chapter_id_fkey;
