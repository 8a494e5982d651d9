//! The way back of stage 2 for a chapter the application changed or added in the new
//! shape: its sections and cover written as legacy `content` and `images` such that
//! splitting them again ([`split_chapter`]) gives the same sections and cover.
//!
//! The non-empty section contents, joined by a blank line, are the content; the section
//! images, the cover's first, are the images. Two candidates are tried, each proved by
//! splitting it again: the image objects as they are (exact whenever the placement rules
//! put them back where they were), then each with `"paragraph"` set to its section's
//! position (the spec's rule, which pins every image to its section; the cover, being
//! the same image, gets the same anchor). What neither candidate gives back is a
//! [`Fidelity::Lossy`] chapter, with the reason: the plan's revert precondition refuses
//! such chapters before anything changes, unless the plan declares the loss.
//!
//! A chapter nobody changed since the split never comes here: it gets its legacy values
//! back byte for byte from `planrun.memoir_legacy` (`legacy_copy.rs`).

use serde_json::{Map, Value};

use crate::paragraphs::paragraphs;
use crate::split::{split_chapter, Section};

/// How faithfully the legacy values written back split again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fidelity {
    /// Splitting them again gives exactly the sections and cover there were.
    Exact,
    /// The same, except that each image object carries `"paragraph"`: its position.
    Anchored,
    /// The old shape cannot hold this chapter; the text says why.
    Lossy(String),
}

/// A chapter's legacy values, as text, and how faithfully they split again.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyChapter {
    /// `chapters.content`; `None` (SQL NULL) when no section has content.
    pub content: Option<String>,
    /// `chapters.images` as JSON text; `None` (SQL NULL) when no section has an image.
    pub images: Option<String>,
    pub fidelity: Fidelity,
}

/// Writes `sections` (in position order) and `cover` back in the legacy shape.
pub fn unsplit_chapter(sections: &[Section], cover: Option<&Value>) -> LegacyChapter {
    let content = legacy_content(sections);
    let images: Vec<(i32, &Value)> = sections
        .iter()
        .filter_map(|s| s.image.as_ref().map(|image| (s.position, image)))
        .collect();
    if images.is_empty() && cover.is_none() {
        let fidelity = match split_again(content.as_deref(), None, sections, None) {
            true => Fidelity::Exact,
            false => Fidelity::Lossy(why_lossy(sections, cover)),
        };
        return LegacyChapter {
            content,
            images: None,
            fidelity,
        };
    }
    let paragraph_sections = sections.iter().filter(|s| !s.content.is_empty()).count();
    let last_place = i32::try_from(paragraph_sections).unwrap_or(i32::MAX);
    let order = cover_first(&images, cover, last_place);
    let as_they_are: Vec<Value> = order.iter().map(|&i| images[i].1.clone()).collect();
    let as_they_are = Value::Array(as_they_are).to_string();
    if split_again(content.as_deref(), Some(&as_they_are), sections, cover) {
        return LegacyChapter {
            content,
            images: Some(as_they_are),
            fidelity: Fidelity::Exact,
        };
    }

    let anchored: Vec<Value> = order
        .iter()
        .map(|&i| anchor_at(images[i].1, images[i].0))
        .collect();
    let anchored_sections: Vec<Section> = sections
        .iter()
        .map(|s| Section {
            image: s.image.as_ref().map(|image| anchor_at(image, s.position)),
            ..s.clone()
        })
        .collect();
    let anchored_cover = cover.and(anchored.first().cloned());
    let anchored = Value::Array(anchored).to_string();
    let fidelity = if cover_matches(cover, order.first().map(|&i| images[i].1))
        && split_again(
            content.as_deref(),
            Some(&anchored),
            &anchored_sections,
            anchored_cover.as_ref(),
        ) {
        Fidelity::Anchored
    } else {
        Fidelity::Lossy(why_lossy(sections, cover))
    };
    LegacyChapter {
        content,
        images: Some(anchored),
        fidelity,
    }
}

/// The non-empty contents joined by a blank line, or `None` when there are none.
fn legacy_content(sections: &[Section]) -> Option<String> {
    let contents: Vec<&str> = sections
        .iter()
        .map(|s| s.content.as_str())
        .filter(|c| !c.is_empty())
        .collect();
    (!contents.is_empty()).then(|| contents.join("\n\n"))
}

/// Indexes into `images`: the one equal to the cover first, then the others in position
/// order. The cover's image is looked for where a first image can be placed (a
/// paragraph's section, or the first empty section after them: `last_place`), an exact
/// match before one that differs only in `"paragraph"`, the lowest position first.
fn cover_first(images: &[(i32, &Value)], cover: Option<&Value>, last_place: i32) -> Vec<usize> {
    let placeable = |i: &usize| images[*i].0 <= last_place;
    let first = cover.and_then(|cover| {
        let unanchored = without_anchor(cover);
        (0..images.len())
            .filter(placeable)
            .find(|&i| images[i].1 == cover)
            .or_else(|| {
                (0..images.len())
                    .filter(placeable)
                    .find(|&i| without_anchor(images[i].1) == unanchored)
            })
    });
    let mut order: Vec<usize> = first.into_iter().collect();
    order.extend((0..images.len()).filter(|&i| Some(i) != first));
    order
}

fn cover_matches(cover: Option<&Value>, first: Option<&Value>) -> bool {
    match (cover, first) {
        (Some(cover), Some(first)) => without_anchor(cover) == without_anchor(first),
        (None, None) => true,
        _ => false,
    }
}

/// The image object without its `"paragraph"` key.
fn without_anchor(image: &Value) -> Value {
    match image {
        Value::Object(object) => {
            let mut object = object.clone();
            object.shift_remove("paragraph");
            Value::Object(object)
        }
        other => other.clone(),
    }
}

/// The image object with `"paragraph"` set to `position`.
fn anchor_at(image: &Value, position: i32) -> Value {
    match image {
        Value::Object(object) => {
            let mut object: Map<String, Value> = object.clone();
            object.insert("paragraph".to_owned(), Value::from(position));
            Value::Object(object)
        }
        other => other.clone(),
    }
}

/// Whether splitting `content` and `images` gives exactly `sections` and `cover`.
fn split_again(
    content: Option<&str>,
    images: Option<&str>,
    sections: &[Section],
    cover: Option<&Value>,
) -> bool {
    match split_chapter(content, images) {
        Ok(split) => split.sections == sections && split.cover_image.as_ref() == cover,
        Err(_) => false,
    }
}

/// Why the old shape cannot hold this chapter, for the refusal.
pub(crate) fn why_lossy(sections: &[Section], cover: Option<&Value>) -> String {
    let paragraph_sections = sections.iter().filter(|s| !s.content.is_empty()).count();
    for (index, section) in sections.iter().enumerate() {
        let p = section.position;
        if usize::try_from(p).ok() != Some(index) {
            return format!("section positions are not 0, 1, 2, ... (position {p} at {index})");
        }
        if section.content.is_empty() && index < paragraph_sections {
            return format!("section {p} has no content but a later section has");
        }
        if !section.content.is_empty() {
            let found = paragraphs(Some(&section.content));
            if found.len() != 1 || found[0] != section.content {
                return format!(
                    "section {p}'s content is {} paragraphs by the split's rule, not exactly one",
                    found.len()
                );
            }
        } else if section.image.is_none() {
            return format!("section {p} has neither content nor an image");
        }
    }
    if paragraph_sections < sections.len() {
        if let Some(bare) = sections[..paragraph_sections]
            .iter()
            .find(|s| s.image.is_none())
        {
            return format!(
                "section {} has no image, so the image of empty section {} would move into it",
                bare.position, paragraph_sections
            );
        }
    }
    let has_images = sections.iter().any(|s| s.image.is_some());
    match cover {
        None if has_images => "its sections have images but it has no cover".to_owned(),
        Some(_) if !has_images => "it has a cover but no section image".to_owned(),
        Some(_) => "its cover is not the image of a paragraph's section or of its first empty section, or an image is not a valid image object".to_owned(),
        None => "splitting it again would give other sections".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn section(position: i32, content: &str, image: Option<Value>) -> Section {
        Section {
            position,
            content: content.to_owned(),
            image,
        }
    }

    #[test]
    fn a_chapter_with_no_sections_and_no_cover_is_null_and_null() {
        let back = unsplit_chapter(&[], None);
        assert_eq!(back.content, None);
        assert_eq!(back.images, None);
        assert_eq!(back.fidelity, Fidelity::Exact);
    }

    #[test]
    fn images_already_where_the_rules_put_them_are_written_as_they_are() {
        let a = json!({"url": "a.jpg"});
        let b = json!({"url": "b.jpg", "paragraph": 1});
        let sections = [
            section(0, "A", Some(a.clone())),
            section(1, "B", Some(b.clone())),
        ];
        let back = unsplit_chapter(&sections, Some(&a));
        assert_eq!(back.content.as_deref(), Some("A\n\nB"));
        assert_eq!(
            back.images.as_deref(),
            Some(r#"[{"url":"a.jpg"},{"url":"b.jpg","paragraph":1}]"#)
        );
        assert_eq!(back.fidelity, Fidelity::Exact);
    }

    #[test]
    fn an_image_the_rules_would_move_is_anchored_at_its_section() {
        let b = json!({"url": "b.jpg"});
        let sections = [section(0, "A", None), section(1, "B", Some(b.clone()))];
        let back = unsplit_chapter(&sections, Some(&b));
        assert_eq!(
            back.images.as_deref(),
            Some(r#"[{"url":"b.jpg","paragraph":1}]"#)
        );
        assert_eq!(back.fidelity, Fidelity::Anchored);
    }

    #[test]
    fn a_cover_that_is_not_the_first_image_goes_first() {
        let a = json!({"url": "a.jpg", "paragraph": 0});
        let b = json!({"url": "b.jpg", "paragraph": 1});
        let sections = [
            section(0, "A", Some(a.clone())),
            section(1, "B", Some(b.clone())),
        ];
        let back = unsplit_chapter(&sections, Some(&b));
        assert_eq!(
            back.images.as_deref(),
            Some(r#"[{"url":"b.jpg","paragraph":1},{"url":"a.jpg","paragraph":0}]"#)
        );
        assert_eq!(back.fidelity, Fidelity::Exact);
    }

    #[test]
    fn what_the_old_shape_cannot_hold_is_lossy_with_a_reason() {
        let a = json!({"url": "a.jpg"});
        let other = json!({"url": "elsewhere.jpg"});
        let cases: Vec<(Vec<Section>, Option<Value>, &str)> = vec![
            (vec![section(0, "A\n\nB", None)], None, "2 paragraphs"),
            (vec![section(0, " ", None)], None, "0 paragraphs"),
            (
                vec![section(0, "", Some(a.clone())), section(1, "B", None)],
                Some(a.clone()),
                "no content but a later",
            ),
            (vec![section(1, "A", None)], None, "not 0, 1, 2"),
            (
                vec![section(0, "A", None), section(1, "", Some(a.clone()))],
                Some(a.clone()),
                "would move into it",
            ),
            (vec![section(0, "A", Some(a.clone()))], None, "no cover"),
            (
                vec![section(0, "A", Some(a.clone()))],
                Some(other),
                "cover is not",
            ),
            (
                vec![section(0, "A", None), section(1, "", None)],
                None,
                "neither",
            ),
            (vec![section(0, "A\r", None)], None, "not exactly one"),
        ];
        for (sections, cover, reason) in cases {
            let back = unsplit_chapter(&sections, cover.as_ref());
            match back.fidelity {
                Fidelity::Lossy(why) => assert!(why.contains(reason), "{why} for {sections:?}"),
                other => panic!("{sections:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn appended_image_sections_come_back_after_the_paragraphs() {
        let a = json!({"url": "a.jpg"});
        let b = json!({"url": "b.jpg", "caption": null});
        let c = json!({"url": "c.jpg", "k": [1, 2.50]});
        let sections = [
            section(0, "\u{3000}\u{3000}A1\nA2", Some(a.clone())),
            section(1, "", Some(b.clone())),
            section(2, "", Some(c.clone())),
        ];
        for cover in [&a, &b] {
            let back = unsplit_chapter(&sections, Some(cover));
            assert_ne!(back.fidelity, Fidelity::Lossy(String::new()));
            assert!(!matches!(back.fidelity, Fidelity::Lossy(_)), "{back:?}");
        }
        let back = unsplit_chapter(&sections, Some(&c));
        assert!(matches!(back.fidelity, Fidelity::Lossy(_)), "{back:?}");
    }
}
