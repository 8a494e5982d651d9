CREATE TABLE public.chapter_sections (
    id         bigserial PRIMARY KEY,
    chapter_id bigint NOT NULL REFERENCES public.chapters(id) ON DELETE CASCADE,
    position   int NOT NULL,
    content    text NOT NULL DEFAULT '',
    image      jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (chapter_id, position)
);

ALTER TABLE public.chapters ADD COLUMN cover_image jsonb;
