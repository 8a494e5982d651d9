-- Stage 5, first: the stage makes every section's memoir_images row match its JSON
-- (memoir.link_section_images), then drops the JSON. Since stage 4 the application may
-- have written either side, so the rows it changed (or added, or deleted) while the
-- JSON stayed as stage 4 collected it are first carried into the JSON, by the rule the
-- way back of stage 4 uses (pg_temp.memoir_images_as_reverted, session.sql); an image
-- changed on both sides differently was refused by the stage's precondition. Under the
-- stage's EXCLUSIVE locks on both tables (writers wait, readers go on), in its first
-- transaction; only the sections whose JSON changes are written.
LOCK TABLE public.chapter_sections, public.memoir_images IN EXCLUSIVE MODE;

UPDATE public.chapter_sections AS s SET image = r.image
FROM pg_temp.memoir_images_as_reverted(sections_only => true) AS r
WHERE r.section_id = s.id AND r.image IS DISTINCT FROM s.image;
