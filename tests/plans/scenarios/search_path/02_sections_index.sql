CREATE INDEX CONCURRENTLY IF NOT EXISTS chapter_sections_by_created_at ON public.chapter_sections (created_at);
