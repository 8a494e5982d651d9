//! The memoir migration (contract: the memoir spec, `shared/memoir-spec.md`).
//!
//! The pure half holds the exact chapter-splitting rules of stage 2, the image rows of
//! stage 4 and a deterministic generator of synthetic legacy data; none of it touches a
//! database. The database half is the native transforms the plan names,
//! `memoir.split_chapters`, `memoir.collect_images` and `memoir.link_section_images` (see [`register`]), and
//! [`legacy`], which builds and fills a legacy database for tests and `planrun demo`.

mod catalog;
mod collect_transform;
pub mod generate;
mod image_row;
mod images;
pub mod legacy;
mod link_transform;
mod numeric_range;
mod paragraphs;
mod params;
mod quarantine;
mod split;
mod split_batched;
mod split_transform;

pub use collect_transform::CollectImages;
pub use link_transform::LinkSectionImages;
pub use quarantine::CREATE_QUARANTINE_TABLE;
pub use split_transform::{OnInvalid, SplitChapters};

pub use image_row::{image_row, ImageRow, InvalidImageRow};
pub use images::{anchor, parse_images, Image, InvalidImages};
pub use paragraphs::{
    is_blank, joined_paragraphs, normalize_newlines, paragraphs, ParagraphSlices,
};
pub use split::{
    assign_sections, place_images, split_chapter, InvalidChapter, Section, SplitChapter,
};

/// Adds the memoir transforms to `registry`: `memoir.split_chapters`,
/// `memoir.collect_images` and `memoir.link_section_images`.
pub fn register(registry: &mut planrun_transform::Registry) {
    registry
        .register(SplitChapters)
        .register(CollectImages)
        .register(LinkSectionImages);
}
