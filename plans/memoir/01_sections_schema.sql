-- Stage 1: the section table and the chapter cover column.
CREATE TABLE chapter_sections (
    id         bigserial PRIMARY KEY,
    chapter_id bigint NOT NULL REFERENCES chapters(id) ON DELETE CASCADE,
    position   int NOT NULL,
    content    text NOT NULL DEFAULT '',
    image      jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (chapter_id, position)
);

ALTER TABLE chapters ADD COLUMN IF NOT EXISTS cover_image jsonb;
