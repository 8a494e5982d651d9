//! Rules 3 to 5 of the memoir spec: placing a chapter's images among its paragraphs,
//! choosing its cover, and numbering the resulting sections.
//!
//! Placement is linear in paragraphs plus images: a chapter may hold 100,000 paragraphs
//! and 10,000 images, so pass 2 keeps a cursor on the lowest section that might be free
//! instead of searching from section 0 for each image. The cursor never has to move back
//! because sections only ever fill up.

use std::borrow::Cow;

use serde_json::Value;

use crate::images::{parse_images, Image, InvalidImages};
use crate::paragraphs::paragraphs;

/// One row of `chapter_sections`, without its ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// 0-based and dense within the chapter.
    pub position: i32,
    /// A paragraph's text, or `""` for a section appended to hold an image.
    pub content: String,
    /// The image object placed here (always a JSON object), if any.
    pub image: Option<Value>,
}

/// Everything stage 2 writes for one chapter.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitChapter {
    /// The chapter's sections in position order.
    pub sections: Vec<Section>,
    /// The first image element as an object, for `chapters.cover_image`; `None` (SQL NULL)
    /// when the chapter has no images.
    pub cover_image: Option<Value>,
    /// How many elements the legacy images array had, which is also how many sections
    /// hold an image: the conservation checks count both sides with this.
    pub image_count: usize,
}

/// Why a chapter cannot be split, and where: the path names the place in the images JSON
/// (`images[3].paragraph`), or `content`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct InvalidChapter {
    /// Where the problem is, e.g. `images`, `images[3]`, `images[3].url`.
    pub path: String,
    /// What is wrong, as a short lowercase phrase.
    pub reason: String,
}

impl From<InvalidImages> for InvalidChapter {
    fn from(e: InvalidImages) -> Self {
        InvalidChapter {
            path: e.path,
            reason: e.reason,
        }
    }
}

/// Splits one legacy chapter (`content` and `images` as text, `None` for SQL NULL) into
/// sections and a cover, following rules 1 to 5 of the spec.
pub fn split_chapter(
    content: Option<&str>,
    images: Option<&str>,
) -> Result<SplitChapter, InvalidChapter> {
    let images = parse_images(images)?;
    place_images(paragraphs(content), images)
}

/// Rules 3 to 5 on already parsed paragraphs and images.
pub fn place_images(
    paragraphs: Vec<Cow<'_, str>>,
    images: Vec<Image>,
) -> Result<SplitChapter, InvalidChapter> {
    let slots = assign_sections(paragraphs.len(), &images);
    if i32::try_from(slots.len()).is_err() {
        return Err(InvalidChapter {
            path: "content".to_owned(),
            reason: format!(
                "{} sections do not fit the int column chapter_sections.position",
                slots.len()
            ),
        });
    }

    let image_count = images.len();
    let cover_image = images
        .first()
        .map(|image| Value::Object(image.object.clone()));
    let mut objects: Vec<Option<Value>> =
        images.into_iter().map(|i| Some(i.into_value())).collect();
    let mut contents = paragraphs.into_iter().map(Cow::into_owned);
    let sections = slots
        .into_iter()
        .zip(0..)
        .map(|(slot, position)| Section {
            position,
            content: contents.next().unwrap_or_default(),
            image: slot.and_then(|i| objects.get_mut(i).and_then(Option::take)),
        })
        .collect();
    Ok(SplitChapter {
        sections,
        cover_image,
        image_count,
    })
}

/// For each section, the index of the image it holds: the first `paragraph_count` entries
/// are the paragraphs' sections, any further ones were appended for leftover images.
pub fn assign_sections(paragraph_count: usize, images: &[Image]) -> Vec<Option<usize>> {
    let mut slots: Vec<Option<usize>> = vec![None; paragraph_count];
    let mut placed = vec![false; images.len()];

    for (index, image) in images.iter().enumerate() {
        let Some(k) = image.paragraph.and_then(|k| usize::try_from(k).ok()) else {
            continue;
        };
        if let Some(slot @ None) = slots.get_mut(k) {
            *slot = Some(index);
            placed[index] = true;
        }
    }

    let mut lowest_free = 0;
    for (index, _) in placed.iter().enumerate().filter(|(_, placed)| !**placed) {
        while slots.get(lowest_free).is_some_and(Option::is_some) {
            lowest_free += 1;
        }
        match slots.get_mut(lowest_free) {
            Some(slot) => *slot = Some(index),
            None => slots.push(Some(index)),
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn anchored(paragraph: Option<u64>) -> Image {
        Image {
            object: Map::new(),
            paragraph,
        }
    }

    #[test]
    fn assign_sections_with_no_paragraphs_appends_one_section_per_image() {
        let images = [anchored(Some(0)), anchored(None), anchored(Some(u64::MAX))];
        assert_eq!(assign_sections(0, &images), [Some(0), Some(1), Some(2)]);
    }

    #[test]
    fn assign_sections_fills_gaps_left_by_pass_one_from_the_lowest() {
        let images = [
            anchored(Some(3)),
            anchored(Some(1)),
            anchored(None),
            anchored(None),
            anchored(None),
            anchored(None),
        ];
        assert_eq!(
            assign_sections(4, &images),
            [Some(2), Some(1), Some(3), Some(0), Some(4), Some(5)]
        );
    }

    #[test]
    fn assign_sections_is_linear_on_a_large_chapter() {
        let images: Vec<Image> = (0..10_000)
            .map(|i| anchored(if i % 2 == 0 { Some(99_999 - i) } else { None }))
            .collect();
        let slots = assign_sections(100_000, &images);
        assert_eq!(slots.len(), 100_000);
        assert_eq!(slots.iter().flatten().count(), 10_000);
        assert_eq!(slots[0], Some(1));
        assert_eq!(slots[99_999], Some(0));
    }
}
