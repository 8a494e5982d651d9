//! One chapter's state in the database's current shape ([`Observed`]): as the database
//! holds it ([`Observer`]) or as a committed write expects it, and how the two differ.

use std::collections::HashMap;

use postgres::{Client, Row};
use serde_json::Value;

use crate::excerpt::{excerpt_json, excerpt_text, text_difference};
use crate::expectation::Fate;
use crate::jsonb::{parse, JsonNormalizer};
use crate::new_shape::SectionsState;
use crate::shape::{SectionImage, Shape};

/// One chapter as the database holds it, or as a committed write expects it, in the
/// database's current shape. JSON values have been through jsonb.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Observed {
    /// The legacy row: `(content, images)`, or `None` when there is no row.
    Legacy(Option<(Option<String>, Option<Value>)>),
    /// The migrated chapter.
    Migrated(MigratedChapter),
}

/// A chapter in the migrated shape: its `chapters` row and its sections.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct MigratedChapter {
    /// `Some(cover_image)` when the chapters row exists.
    row: Option<Option<Value>>,
    /// `(position, content, image)` in position order.
    sections: Vec<(i32, String, Option<Value>)>,
}

impl Observed {
    /// What the database holds for a chapter that has no row (and no sections).
    pub(crate) fn absent(shape: Shape) -> Observed {
        match shape {
            Shape::Legacy => Observed::Legacy(None),
            Shape::Migrated { .. } => Observed::Migrated(MigratedChapter::default()),
        }
    }

    /// What the database must hold for a chapter in `fate`.
    pub(crate) fn expected(
        fate: &Fate,
        shape: Shape,
        json: &mut JsonNormalizer,
    ) -> Result<Observed, String> {
        let Fate::Present((content, images)) = fate else {
            return Ok(Observed::absent(shape));
        };
        let Shape::Migrated { image } = shape else {
            let images = images.as_deref().map(|text| json.normalize(text));
            return Ok(Observed::Legacy(Some((content.clone(), images))));
        };
        let split =
            planrun_memoir::split_chapter(content.as_deref(), images.as_deref()).map_err(|e| {
                format!(
                    "its committed state cannot be split ({e}): content {}, images {}",
                    excerpt_text(content.as_deref()),
                    excerpt_text(images.as_deref())
                )
            })?;
        let cover = split
            .cover_image
            .map(|cover| json.normalize(&cover.to_string()));
        let mut normalize = |value: Value| {
            let value = json.normalize(&value.to_string());
            match image {
                SectionImage::Column => value,
                SectionImage::MemoirImages => without_null_caption(value),
            }
        };
        let sections = split
            .sections
            .into_iter()
            .map(|s| (s.position, s.content, s.image.map(&mut normalize)))
            .collect();
        Ok(Observed::Migrated(MigratedChapter {
            row: Some(cover),
            sections,
        }))
    }

    /// How `found` differs from this expected state, in a few words; `None` if it does
    /// not.
    pub(crate) fn difference(&self, found: &Observed) -> Option<String> {
        if self == found {
            return None;
        }
        Some(match (self, found) {
            (Observed::Legacy(None), Observed::Legacy(Some((content, images)))) => format!(
                "deleted by a committed write, but the row exists with content {} and \
                 images {}",
                excerpt_text(content.as_deref()),
                excerpt_json(images.as_ref())
            ),
            (Observed::Legacy(Some(_)), Observed::Legacy(None)) => {
                "the row a committed write left is missing".to_owned()
            }
            (Observed::Legacy(Some(want)), Observed::Legacy(Some(got))) if want.0 != got.0 => {
                format!(
                    "content: {}",
                    text_difference(want.0.as_deref(), got.0.as_deref())
                )
            }
            (Observed::Legacy(Some(want)), Observed::Legacy(Some(got))) => format!(
                "images: expected {}, found {}",
                excerpt_json(want.1.as_ref()),
                excerpt_json(got.1.as_ref())
            ),
            (Observed::Migrated(want), Observed::Migrated(got)) => want.difference(got),
            _ => unreachable!("expected and found states are built for the same shape"),
        })
    }
}

impl Observed {
    /// How `want`, a chapter as a write in the new shape left it, differs from what the
    /// database holds in either shape (the legacy row read by the spec's split), images
    /// compared without `"paragraph"` and a `null` caption; `None` if it does not.
    pub(crate) fn sections_difference(&self, want: &SectionsState) -> Option<String> {
        let found = match self {
            Observed::Legacy(None) | Observed::Migrated(MigratedChapter { row: None, .. }) => {
                return Some("the row a committed write left is missing".to_owned())
            }
            Observed::Legacy(Some((content, images))) => {
                let images = images.as_ref().map(Value::to_string);
                match planrun_memoir::split_chapter(content.as_deref(), images.as_deref()) {
                    Ok(split) => SectionsState {
                        cover: split.cover_image,
                        sections: split
                            .sections
                            .into_iter()
                            .map(|s| (s.position, s.content, s.image))
                            .collect(),
                    },
                    Err(e) => {
                        return Some(format!(
                            "the legacy row cannot be split ({e}): content {}",
                            excerpt_text(content.as_deref())
                        ))
                    }
                }
            }
            Observed::Migrated(MigratedChapter {
                row: Some(cover),
                sections,
            }) => SectionsState {
                cover: cover.clone(),
                sections: sections.clone(),
            },
        };
        let (want, found) = (want.comparable(), found.comparable());
        if want == found {
            return None;
        }
        let chapter = |state: SectionsState| MigratedChapter {
            row: Some(state.cover),
            sections: state.sections,
        };
        Some(chapter(want).difference(&chapter(found)))
    }
}

impl MigratedChapter {
    fn difference(&self, found: &MigratedChapter) -> String {
        match (&self.row, &found.row) {
            (None, Some(_)) => {
                return format!(
                    "deleted by a committed write, but the row exists with {} sections",
                    found.sections.len()
                )
            }
            (None, None) => {
                return format!(
                    "deleted by a committed write, but {} of its sections remain",
                    found.sections.len()
                )
            }
            (Some(_), None) => return "the row a committed write left is missing".to_owned(),
            (Some(want), Some(got)) if want != got => {
                return format!(
                    "cover_image: expected {}, found {}",
                    excerpt_json(want.as_ref()),
                    excerpt_json(got.as_ref())
                )
            }
            (Some(_), Some(_)) => {}
        }
        for (want, got) in self.sections.iter().zip(&found.sections) {
            let position = want.0;
            if want.0 != got.0 {
                return format!("section positions: expected {}, found {}", want.0, got.0);
            }
            if want.1 != got.1 {
                return format!(
                    "section {position} content: {}",
                    text_difference(Some(&want.1), Some(&got.1))
                );
            }
            if want.2 != got.2 {
                return format!(
                    "section {position} image: expected {}, found {}",
                    excerpt_json(want.2.as_ref()),
                    excerpt_json(got.2.as_ref())
                );
            }
        }
        format!(
            "expected {} sections, found {}",
            self.sections.len(),
            found.sections.len()
        )
    }
}

/// Reads the current state of chapters in the database's shape.
pub(crate) struct Observer<'a> {
    client: &'a mut Client,
    shape: Shape,
}

impl<'a> Observer<'a> {
    pub(crate) fn new(client: &'a mut Client, shape: Shape) -> Self {
        Observer { client, shape }
    }

    /// The chapters among `ids` that have a row or sections.
    pub(crate) fn observe(&mut self, ids: &[i64]) -> HashMap<i64, Observed> {
        match self.shape {
            Shape::Legacy => self
                .query(
                    "SELECT id, content, images::text::jsonb::text FROM chapters
                     WHERE id = ANY($1)",
                    ids,
                )
                .iter()
                .map(|row| {
                    let images = row.get::<_, Option<String>>(2).map(|text| parse(&text));
                    (row.get(0), Observed::Legacy(Some((row.get(1), images))))
                })
                .collect(),
            Shape::Migrated { image } => {
                let mut chapters: HashMap<i64, MigratedChapter> = HashMap::new();
                for row in self.query(
                    "SELECT id, cover_image::text FROM chapters WHERE id = ANY($1)",
                    ids,
                ) {
                    let cover = row.get::<_, Option<String>>(1).map(|text| parse(&text));
                    chapters.entry(row.get(0)).or_default().row = Some(cover);
                }
                let image_sql = match image {
                    SectionImage::Column => "s.image::text",
                    SectionImage::MemoirImages => {
                        "(SELECT m.meta || jsonb_build_object('url', m.url)
                                 || CASE WHEN m.caption IS NULL THEN '{}'::jsonb
                                         ELSE jsonb_build_object('caption', m.caption) END
                          FROM memoir_images m WHERE m.id = s.image_id)::text"
                    }
                };
                let sql = format!(
                    "SELECT s.chapter_id, s.position, s.content, {image_sql}
                     FROM chapter_sections s WHERE s.chapter_id = ANY($1)
                     ORDER BY s.chapter_id, s.position"
                );
                for row in self.query(&sql, ids) {
                    let image = row.get::<_, Option<String>>(3).map(|text| parse(&text));
                    chapters.entry(row.get(0)).or_default().sections.push((
                        row.get(1),
                        row.get(2),
                        image,
                    ));
                }
                chapters
                    .into_iter()
                    .map(|(id, chapter)| (id, Observed::Migrated(chapter)))
                    .collect()
            }
        }
    }

    fn query(&mut self, sql: &str, ids: &[i64]) -> Vec<Row> {
        self.client
            .query(sql, &[&ids])
            .unwrap_or_else(|e| panic!("the simulator's check query fails: {e}\n{sql}"))
    }
}

/// Through `memoir_images` a caption that was JSON `null` and one that was absent both
/// read back as a NULL column; compare them as absent.
fn without_null_caption(mut value: Value) -> Value {
    if let Value::Object(object) = &mut value {
        if object.get("caption") == Some(&Value::Null) {
            object.remove("caption");
        }
    }
    value
}
