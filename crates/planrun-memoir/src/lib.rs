//! The memoir migration's pure half: the exact chapter-splitting rules of stage 2
//! (`split_chapters`), the image rows of stage 4 (`collect_images`), and a deterministic
//! generator of synthetic legacy data. Nothing here touches a database; the contract it
//! implements is the memoir spec (`shared/memoir-spec.md`).

pub mod generate;
mod image_row;
mod images;
mod paragraphs;
mod split;

pub use image_row::{image_row, ImageRow, InvalidImageRow};
pub use images::{anchor, parse_images, Image, InvalidImages};
pub use paragraphs::{
    is_blank, joined_paragraphs, normalize_newlines, paragraphs, ParagraphSlices,
};
pub use split::{
    assign_sections, place_images, split_chapter, InvalidChapter, Section, SplitChapter,
};
