CREATE TABLE public.memoir_images (
    id         bigserial PRIMARY KEY,
    chapter_id bigint NOT NULL REFERENCES public.chapters(id) ON DELETE CASCADE,
    section_id bigint REFERENCES public.chapter_sections(id) ON DELETE CASCADE,
    url        text NOT NULL,
    caption    text,
    meta       jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX memoir_images_one_cover ON public.memoir_images (chapter_id) WHERE section_id IS NULL;
CREATE UNIQUE INDEX memoir_images_one_per_section ON public.memoir_images (section_id) WHERE section_id IS NOT NULL;
