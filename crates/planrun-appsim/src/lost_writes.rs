//! The check that no committed write was lost: the state each chapter's last committed
//! write left, compared with what the database holds now, in whichever shape it is.

use postgres::Client;

use crate::expectation::Fate;
use crate::jsonb::JsonNormalizer;
use crate::observed::{Observed, Observer};
use crate::shape::Shape;
use crate::AppLog;

impl AppLog {
    /// Every committed write the database does not reflect now, one line each: the
    /// chapter, what its last committed write left, what the database holds.
    ///
    /// Works on the legacy schema (compares `content` and `images`, the latter as
    /// jsonb) and on the migrated one (splits the expected state by the spec's rules and
    /// compares `chapter_sections`, with images from `image` or through `image_id` from
    /// `memoir_images`, and `chapters.cover_image`). A deleted chapter must have no row
    /// and no sections. Chapters no committed write touched are not checked, nor those
    /// whose state an in-doubt write left unknown. A chapter last written in the new
    /// shape is compared section by section, read from the legacy row by the spec's
    /// split while the database is in the old shape.
    ///
    /// Panics when the database cannot be read: this is test support.
    pub fn lost_writes(&self, client: &mut Client) -> Vec<String> {
        let checked: Vec<(i64, Vec<&Fate>)> = self
            .chapters
            .iter()
            .filter_map(|(id, expectation)| Some((*id, expectation.acceptable()?)))
            .collect();
        let ids: Vec<i64> = checked.iter().map(|(id, _)| *id).collect();
        let shape = match Shape::of(client) {
            Ok(shape) => shape,
            Err(problem) => return vec![problem],
        };
        let mut observed = Observer::new(client, shape).observe(&ids);
        let mut normalizer = JsonNormalizer::new(client);
        let mut lost = Vec::new();
        for (id, acceptable) in checked {
            let found = observed
                .remove(&id)
                .unwrap_or_else(|| Observed::absent(shape));
            let mut first_difference = None;
            for fate in acceptable {
                let difference = match fate {
                    Fate::Sections(want) => found.sections_difference(want),
                    _ => match Observed::expected(fate, shape, &mut normalizer) {
                        Ok(expected) => expected.difference(&found),
                        Err(problem) => Some(problem),
                    },
                };
                match difference {
                    None => {
                        first_difference = None;
                        break;
                    }
                    Some(difference) => {
                        first_difference.get_or_insert(difference);
                    }
                }
            }
            if let Some(difference) = first_difference {
                lost.push(format!("chapter {id}: {difference}"));
            }
        }
        lost
    }
}
