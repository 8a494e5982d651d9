//! Stage 4 of the memoir spec: the `memoir_images` row derived from one image object
//! (a chapter's `cover_image` or a section's `image`).
//!
//! Stage 2 only writes valid objects, but stage 4 reads them back from the database, where
//! someone may have edited them in between; the same checks as stage 2 apply, so a bad
//! object is reported with its place instead of becoming a row with an empty `url`.

use serde_json::{Map, Value};

use crate::images::{excerpt, member_path};

/// The columns of one `memoir_images` row that come from the image object.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRow {
    /// The object's `url`.
    pub url: String,
    /// The object's `caption`; `None` when it is absent or JSON `null`.
    pub caption: Option<String>,
    /// The object without `url` and `caption`, other keys in their order (so `paragraph`
    /// and every extra key stay here).
    pub meta: Map<String, Value>,
}

/// Why an image object cannot become a `memoir_images` row. The path is relative to the
/// object: `image` for the object itself, `image.url`, `image.caption`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct InvalidImageRow {
    /// Where the problem is.
    pub path: String,
    /// What is wrong, as a short lowercase phrase.
    pub reason: String,
}

/// Derives the `memoir_images` columns from an image object.
pub fn image_row(image: &Value) -> Result<ImageRow, InvalidImageRow> {
    let invalid = |key: Option<&str>, reason: String| InvalidImageRow {
        path: key.map_or_else(|| "image".to_owned(), |key| member_path("image", key)),
        reason,
    };
    let Value::Object(object) = image else {
        return Err(invalid(
            None,
            format!("expected an object, found {}", excerpt(image)),
        ));
    };
    let url = match object.get("url") {
        Some(Value::String(url)) if !url.is_empty() => url.clone(),
        Some(other) => {
            return Err(invalid(
                Some("url"),
                format!("expected a non-empty string, found {}", excerpt(other)),
            ))
        }
        None => return Err(invalid(Some("url"), "missing".to_owned())),
    };
    let caption = match object.get("caption") {
        None | Some(Value::Null) => None,
        Some(Value::String(caption)) => Some(caption.clone()),
        Some(other) => {
            return Err(invalid(
                Some("caption"),
                format!("expected a string or null, found {}", excerpt(other)),
            ))
        }
    };
    let meta = object
        .iter()
        .filter(|(key, _)| *key != "url" && *key != "caption")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    Ok(ImageRow { url, caption, meta })
}
