-- Stage 1: the section table and the chapter cover column.
-- chapter_sections gets its foreign key to chapters at the end of stage 2, after the
-- split has filled it (02_chapter_sections_foreign_key.sql): adding a foreign key
-- takes SHARE ROW EXCLUSIVE on chapters, which lets the application read, and checks
-- all rows with one join; dropping one for the load, as a bulk loader would, takes
-- ACCESS EXCLUSIVE on chapters until commit; keeping it checks every section row on
-- its own. The table is new and empty until stage 2, and stage 2 holds EXCLUSIVE on
-- chapters, so no row can lack its chapter meanwhile.
CREATE TABLE chapter_sections (
    id         bigserial PRIMARY KEY,
    chapter_id bigint NOT NULL,
    position   int NOT NULL,
    content    text NOT NULL DEFAULT '',
    image      jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (chapter_id, position)
);

ALTER TABLE chapters ADD COLUMN IF NOT EXISTS cover_image jsonb;
