-- Stage 3: one row per image; section_id NULL marks a chapter cover.
CREATE TABLE memoir_images (
    id         bigserial PRIMARY KEY,
    chapter_id bigint NOT NULL REFERENCES chapters(id) ON DELETE CASCADE,
    section_id bigint REFERENCES chapter_sections(id) ON DELETE CASCADE,
    url        text NOT NULL,
    caption    text,
    meta       jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- At most one cover per chapter, one image per section.
CREATE UNIQUE INDEX memoir_images_one_cover ON memoir_images (chapter_id) WHERE section_id IS NULL;
CREATE UNIQUE INDEX memoir_images_one_per_section ON memoir_images (section_id) WHERE section_id IS NOT NULL;

-- The foreign key to chapters cascades: each chapter the application deletes makes
-- PostgreSQL delete its images `WHERE chapter_id = $1`, which the partial index above
-- (covers only) cannot serve. Without this index that is a scan of every image per
-- chapter deleted, while the application's transaction holds its locks. Built here,
-- on the empty table, in the stage's transaction: nothing that grows with the table.
CREATE INDEX memoir_images_chapter_id_idx ON memoir_images (chapter_id);
