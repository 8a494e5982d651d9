//! The memoir migration (contract: the memoir spec, `shared/memoir-spec.md`).
//!
//! The pure half holds the exact chapter-splitting rules of stage 2, the image rows of
//! stage 4 and a deterministic generator of synthetic legacy data; none of it touches a
//! database. The database half is the native transforms the plan names,
//! `memoir.split_chapters`, `memoir.collect_images` and `memoir.link_section_images`,
//! with the way back of stage 2 (`memoir.keep_legacy` and `memoir.unsplit_chapters`;
//! see [`register`]), and
//! [`legacy`], which builds and fills a legacy database for tests and `planrun demo`.

mod catalog;
mod collect_transform;
pub mod generate;
mod image_row;
mod images;
mod jsonb_text;
pub mod legacy;
mod legacy_copy;
mod link_transform;
mod numeric_range;
mod paragraphs;
mod params;
mod quarantine;
mod split;
mod split_batched;
mod split_stream;
mod split_transform;
mod unsplit;
mod unsplit_transform;
mod witness;

pub use collect_transform::CollectImages;
pub use legacy_copy::{KeepLegacy, CREATE_LEGACY_TABLES};
pub use link_transform::LinkSectionImages;
pub use quarantine::CREATE_QUARANTINE_TABLE;
pub use split_transform::{OnInvalid, SplitChapters};
pub use unsplit::{unsplit_chapter, Fidelity, LegacyChapter};
pub use unsplit_transform::UnsplitChapters;

pub use image_row::{image_row, ImageRow, InvalidImageRow};
pub use images::{anchor, parse_images, Image, InvalidImages};
pub use paragraphs::{
    is_blank, joined_paragraphs, normalize_newlines, paragraphs, ParagraphSlices,
};
pub use split::{
    assign_sections, place_images, split_chapter, InvalidChapter, Section, SplitChapter,
};

/// Adds the memoir transforms to `registry`: `memoir.split_chapters`,
/// `memoir.collect_images`, `memoir.link_section_images`, and the way back's
/// `memoir.keep_legacy` and `memoir.unsplit_chapters`.
pub fn register(registry: &mut planrun_transform::Registry) {
    registry
        .register(SplitChapters)
        .register(CollectImages)
        .register(LinkSectionImages)
        .register(KeepLegacy)
        .register(UnsplitChapters);
}
