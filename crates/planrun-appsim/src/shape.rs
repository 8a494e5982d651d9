//! Which shape the database is in when the writes are checked: the legacy `chapters`
//! columns, or the migrated `chapter_sections` with images in a column or in
//! `memoir_images`.

use postgres::Client;

/// Which shape the database is in, decided from its catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `chapters.content` and `chapters.images` exist.
    Legacy,
    /// The legacy columns are gone; sections hold the data, images read by `image`.
    Migrated { image: SectionImage },
}

/// Where a section's image lives after the migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SectionImage {
    /// `chapter_sections.image` (stages 2 to 4).
    Column,
    /// `chapter_sections.image_id` -> `memoir_images` (after stage 5).
    MemoirImages,
}

impl Shape {
    pub(crate) fn of(client: &mut Client) -> Result<Shape, String> {
        let columns: Vec<String> = client
            .query(
                "SELECT table_name || '.' || column_name FROM information_schema.columns
                 WHERE table_schema = 'public'
                   AND table_name IN ('chapters', 'chapter_sections')",
                &[],
            )
            .expect("the catalog is readable")
            .iter()
            .map(|row| row.get(0))
            .collect();
        let has = |column: &str| columns.iter().any(|c| c == column);
        match (has("chapters.content"), has("chapters.images")) {
            (true, true) => return Ok(Shape::Legacy),
            (false, false) => {}
            _ => {
                return Err(format!(
                    "the database is neither legacy nor migrated: chapters has only one of \
                     content and images (columns: {})",
                    columns.join(", ")
                ))
            }
        }
        let image = if has("chapter_sections.image") {
            Some(SectionImage::Column)
        } else if has("chapter_sections.image_id") {
            Some(SectionImage::MemoirImages)
        } else {
            None
        };
        match image {
            Some(image) if has("chapters.cover_image") => Ok(Shape::Migrated { image }),
            _ => Err(format!(
                "the legacy columns are gone but the migrated tables are incomplete \
                 (columns: {})",
                columns.join(", ")
            )),
        }
    }
}
