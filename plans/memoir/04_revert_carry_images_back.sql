-- The way back of stage 4 (and, again, of stage 3): memoir_images rows whose section
-- or chapter has no image JSON (the application added them in the new shape) are
-- carried back into chapter_sections.image and chapters.cover_image; then the table
-- is emptied, as stage 3 left it. Where both exist, the JSON stays: it is what stage 4
-- collected from and what stage 5 brings memoir_images up to date from.
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

UPDATE chapter_sections AS s
SET image = m.meta || jsonb_build_object('url', m.url)
            || CASE WHEN m.caption IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('caption', m.caption) END
FROM memoir_images AS m
WHERE m.section_id = s.id AND s.image IS NULL;

UPDATE chapters AS c
SET cover_image = m.meta || jsonb_build_object('url', m.url)
                  || CASE WHEN m.caption IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('caption', m.caption) END
FROM memoir_images AS m
WHERE m.chapter_id = c.id AND m.section_id IS NULL AND c.cover_image IS NULL;

DELETE FROM memoir_images;
