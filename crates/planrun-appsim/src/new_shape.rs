//! The writes of an application that follows the database's shape, in the new shape:
//! a section's content or image changed in `chapter_sections` (image in its `image`
//! column, or in the `memoir_images` row its `image_id` points at), and the whole
//! chapter as that write left it ([`SectionsState`]).
//!
//! Sections are addressed by chapter and position, which the split gives again after
//! a revert and a re-apply, never by id. Each write is one statement that also returns
//! every section of the chapter and its cover, read in the snapshot the write ran in
//! with the write's own change applied: the chapter's state at its commit, which the
//! writer owning the chapter is the only application thread to change.
//!
//! The writes are ones the old shape can hold (a paragraph's content replaced by one
//! paragraph; an image other than the chapter's cover replaced by another), so that a
//! revert must carry them back rather than refuse them.

use postgres::Row;
use serde_json::Value;

use crate::jsonb::parse;
use crate::shape::SectionImage;

/// A chapter in the new shape: its cover and `(position, content, image)` of each of
/// its sections in position order, as jsonb printed them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SectionsState {
    pub(crate) cover: Option<Value>,
    pub(crate) sections: Vec<(i32, String, Option<Value>)>,
}

impl SectionsState {
    /// The rows a [`section_write_sql`] statement returned; `None` when it changed
    /// nothing.
    pub(crate) fn from_rows(rows: &[Row]) -> Option<SectionsState> {
        let cover = rows.first()?.get::<_, Option<String>>(3);
        let sections = rows
            .iter()
            .map(|row| {
                let image = row.get::<_, Option<String>>(2).map(|text| parse(&text));
                (row.get(0), row.get(1), image)
            })
            .collect();
        Some(SectionsState {
            cover: cover.map(|text| parse(&text)),
            sections,
        })
    }

    /// The same chapter with what no shape keeps the same way left out of its images:
    /// the `"paragraph"` anchor (the way back pins an image the application moved to its
    /// section with one) and a JSON `null` caption (`memoir_images` reads it back as no
    /// caption).
    pub(crate) fn comparable(&self) -> SectionsState {
        SectionsState {
            cover: self.cover.as_ref().map(comparable_image),
            sections: self
                .sections
                .iter()
                .map(|(position, content, image)| {
                    (
                        *position,
                        content.clone(),
                        image.as_ref().map(comparable_image),
                    )
                })
                .collect(),
        }
    }
}

fn comparable_image(image: &Value) -> Value {
    let mut image = image.clone();
    if let Value::Object(object) = &mut image {
        object.shift_remove("paragraph");
        if object.get("caption") == Some(&Value::Null) {
            object.shift_remove("caption");
        }
    }
    image
}

/// What a write in the new shape changes in one section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SectionWrite {
    /// `$1` (text) becomes the content of one of the chapter's sections with content.
    Content,
    /// `$1` (a JSON object as text) becomes the image of one of the chapter's sections
    /// whose image is not its cover's.
    Image,
}

/// The statement for `write` where images live as `image` says: `$1` the new value,
/// `$2` the chapter, `$3` text that picks which eligible section. It returns, for a
/// change made, each section's `position, content, image::text` and the chapter's
/// `cover_image::text`; no rows when it changed nothing.
///
/// The table written is the first the statement names, so that it takes its ROW
/// EXCLUSIVE lock before any weaker one on the same table: a statement that first
/// reads `chapter_sections` and then updates it holds ACCESS SHARE while it waits for
/// ROW EXCLUSIVE, which deadlocks with stage 5's cutover (EXCLUSIVE, then ACCESS
/// EXCLUSIVE for the column drop) until one of them gives up.
pub(crate) fn section_write_sql(write: SectionWrite, image: SectionImage) -> String {
    let object = |alias: &str| {
        format!(
            "{alias}.meta || jsonb_build_object('url', {alias}.url)
             || CASE WHEN {alias}.caption IS NULL THEN '{{}}'::jsonb
                     ELSE jsonb_build_object('caption', {alias}.caption) END"
        )
    };
    let image_of = |alias: &str| match image {
        SectionImage::Column => format!("{alias}.image"),
        SectionImage::MemoirImages => format!(
            "(SELECT {} FROM memoir_images m WHERE m.id = {alias}.image_id)",
            object("m")
        ),
    };
    let (picked, eligible) = match write {
        SectionWrite::Content => ("t.id", "t.content <> ''".to_owned()),
        SectionWrite::Image => (
            match image {
                SectionImage::Column => "t.id",
                SectionImage::MemoirImages => "t.image_id",
            },
            format!(
                "({0}) IS NOT NULL AND ({0})->>'url' IS DISTINCT FROM ch.cover_image->>'url'",
                image_of("t")
            ),
        ),
    };
    let target = format!(
        "(SELECT {picked} FROM chapter_sections t JOIN chapters ch ON ch.id = t.chapter_id
          WHERE t.chapter_id = $2 AND {eligible}
          ORDER BY md5(t.position::text || $3) LIMIT 1)"
    );
    let section_image = image_of("s");
    let (change, joined, content, image_out) = match (write, image) {
        (SectionWrite::Content, _) => (
            format!(
                "UPDATE chapter_sections s SET content = $1 WHERE s.id = {target}
                 RETURNING s.id, s.content"
            ),
            "c.id = s.id",
            "coalesce(c.content, s.content)",
            section_image,
        ),
        (SectionWrite::Image, SectionImage::Column) => (
            format!(
                "UPDATE chapter_sections s SET image = $1::text::jsonb WHERE s.id = {target}
                 RETURNING s.id, s.image"
            ),
            "c.id = s.id",
            "s.content",
            format!("CASE WHEN c.id IS NULL THEN {section_image} ELSE c.image END"),
        ),
        (SectionWrite::Image, SectionImage::MemoirImages) => (
            format!(
                "UPDATE memoir_images m
                 SET url = $1::text::jsonb->>'url', caption = $1::text::jsonb->>'caption',
                     meta = $1::text::jsonb - 'url' - 'caption'
                 WHERE m.id = {target}
                 RETURNING m.id, m.url, m.caption, m.meta"
            ),
            "c.id = s.image_id",
            "s.content",
            format!(
                "CASE WHEN c.id IS NULL THEN {section_image} ELSE {} END",
                object("c")
            ),
        ),
    };
    format!(
        "WITH changed AS ({change})
         SELECT s.position, {content}, ({image_out})::text,
                (SELECT cover_image::text FROM chapters WHERE id = $2)
         FROM chapter_sections s LEFT JOIN changed c ON {joined}
         WHERE s.chapter_id = $2 AND EXISTS (SELECT FROM changed)
         ORDER BY s.position"
    )
}
