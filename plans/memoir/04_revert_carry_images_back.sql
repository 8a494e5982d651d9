-- The way back of stage 4 (and, again, of stage 3): each cover's and section's JSON as
-- pg_temp.memoir_images_as_reverted (session.sql) says, then memoir_images is emptied,
-- as stage 3 left it. Since stage 4 the application may write either side; the
-- digests stage 4 kept (04_keep_collected_images.sql) tell which it changed: a row it
-- changed while the JSON stayed as collected is carried into the JSON (a row it added,
-- with no JSON, too; a row it deleted removes the image); otherwise the JSON stays, as
-- the application left it. An image changed on both sides differently is refused
-- before this runs (the stage's revert precondition, `loss = true`).
--
-- A row's image object is its meta with url and, when it has one, caption: a caption
-- that was JSON null and one that was absent are both NULL in memoir_images, and the
-- object rebuilt has no caption key.
--
-- The stage's captures count the images to keep and its checks count them again after
-- this file: writers of the three tables wait from the captures to the commit
-- (EXCLUSIVE; readers go on), taken with the stage's other locks before anything runs
-- (planrun reads the locks of a revert's SQL and takes them first). Without them an
-- application deleting a chapter meanwhile failed the revert (exit 12, "expected = 2446,
-- got 2441"; tests/revert_traffic.rs).
LOCK TABLE public.chapters, public.chapter_sections, public.memoir_images IN EXCLUSIVE MODE;

-- Both sides read once; only the JSON that changes is written.
WITH reverted AS MATERIALIZED (
    SELECT r.chapter_id, r.section_id, r.image FROM pg_temp.memoir_images_as_reverted() r
),
sections AS (
    UPDATE public.chapter_sections AS s SET image = r.image
    FROM reverted AS r
    WHERE r.section_id = s.id AND r.image IS DISTINCT FROM s.image
)
UPDATE public.chapters AS c SET cover_image = r.image
FROM reverted AS r
WHERE r.section_id IS NULL AND r.chapter_id = c.id AND r.image IS DISTINCT FROM c.cover_image;

DELETE FROM public.memoir_images;

-- Stage 4's own state goes with it.
DROP TABLE IF EXISTS planrun.memoir_collected_images;
