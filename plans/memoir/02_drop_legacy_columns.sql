-- Stage 2, after the split: the legacy body and image list are now in
-- chapter_sections (and, for quarantined chapters, verbatim in
-- planrun.memoir_quarantine), so the columns go.
ALTER TABLE chapters DROP COLUMN content, DROP COLUMN images;
