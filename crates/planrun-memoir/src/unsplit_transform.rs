//! `memoir.unsplit_chapters`, the way back of stage 2: `chapters.content` and
//! `chapters.images` added again with their legacy types and filled, then the sections
//! and covers emptied, leaving the database as stage 1 left it.
//!
//! A chapter whose sections and cover still have the digest `memoir.keep_legacy`
//! recorded at the split gets its legacy values back byte for byte from
//! `planrun.memoir_legacy`; any other (changed or added by the application in the new
//! shape) is written from its sections by [`unsplit_chapter`]. What the old shape cannot
//! hold fails the transform, naming the chapters, unless `allow_loss = true` (set it
//! with the stage's `[stage.revert_loss]`): the plan's revert precondition refuses the
//! same chapters first, with the revert-refused exit code, before anything changes.
//!
//! Each chapter's outcome goes into `pg_temp.memoir_unsplit` (dropped at commit), which
//! the plan's revert verifications read.

use planrun_transform::{
    LockMode, TableLock, Transform, TransformContext, TransformError, TransformReport,
};
use postgres::{Row, Transaction};
use serde_json::Value;

use crate::legacy_copy::{sections_now, CHAPTER_DIGEST, CREATE_LEGACY_TABLES};
use crate::params;
use crate::quarantine::CREATE_QUARANTINE_TABLE;
use crate::split::Section;
use crate::unsplit::{unsplit_chapter, Fidelity};

/// The `memoir.unsplit_chapters` transform.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnsplitChapters;

const PARAMS: [&str; 2] = ["allow_loss", "batch_rows"];

/// How many refused chapters an error names.
const NAMED: usize = 10;

impl Transform for UnsplitChapters {
    fn name(&self) -> &'static str {
        "memoir.unsplit_chapters"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn summary(&self) -> &'static str {
        "Write chapter_sections and chapters.cover_image back into chapters.content and chapters.images (the revert of memoir.split_chapters)"
    }

    /// Writers of `chapters` and `chapter_sections` wait from the first read, so the
    /// sections read are the sections emptied; readers go on until the columns are
    /// added back at the end (ACCESS EXCLUSIVE on `chapters` from there to the commit).
    fn locks(&self, _params: &toml::Table) -> Vec<TableLock> {
        vec![
            TableLock::new("public.chapters", LockMode::Exclusive, self.name()),
            TableLock::new("public.chapter_sections", LockMode::Exclusive, self.name()),
        ]
    }

    fn writes(&self, _params: &toml::Table) -> Vec<String> {
        [
            "public.chapters",
            "public.chapter_sections",
            "planrun.memoir_legacy",
            "planrun.memoir_quarantine",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn check_params(&self, params: &toml::Table) -> Vec<(String, String)> {
        let mut problems = params::unknown_keys(params, &PARAMS);
        if let Err(message) = allow_loss(params) {
            problems.push(("allow_loss".to_owned(), message));
        }
        problems.extend(params::check_batch_rows(params));
        problems
    }

    fn run(
        &self,
        context: &mut TransformContext<'_, '_>,
    ) -> Result<TransformReport, TransformError> {
        params::into_error(self.check_params(context.params))?;
        let allow_loss = allow_loss(context.params).map_err(TransformError::Params)?;
        let batch_rows = params::batch_rows(context.params).map_err(TransformError::Params)?;
        let transaction = &mut *context.transaction;
        transaction.batch_execute(CREATE_QUARANTINE_TABLE)?;
        transaction.batch_execute(CREATE_LEGACY_TABLES)?;
        let (content_type, images_type) = legacy_types(transaction)?;
        transaction.batch_execute(
            "DROP TABLE IF EXISTS pg_temp.memoir_unsplit;
             CREATE TEMP TABLE memoir_unsplit (chapter_id bigint PRIMARY KEY, content text,
                 images text, way text NOT NULL) ON COMMIT DROP;",
        )?;

        let total: i64 = transaction
            .query_one("SELECT count(*) FROM public.chapters", &[])?
            .get(0);
        context.progress.start(Some(total.max(0) as u64));
        let mut outcome = Outcome::default();
        let portal = transaction.bind(
            &format!(
                "SELECT c.id, l.content, l.images,
                        l.split_digest IS NOT NULL AND l.split_digest = {CHAPTER_DIGEST},
                        c.cover_image::text, s.sections::text
                 FROM public.chapters c
                 LEFT JOIN ({}) s ON s.chapter_id = c.id
                 LEFT JOIN planrun.memoir_legacy l ON l.chapter_id = c.id
                 ORDER BY c.id",
                sections_now(true)
            ),
            &[],
        )?;
        loop {
            let rows = transaction.query_portal(&portal, batch_rows)?;
            if rows.is_empty() {
                break;
            }
            let batch = rows
                .iter()
                .map(|row| chapter_back(row, &mut outcome))
                .collect::<Result<Vec<_>, _>>()?;
            write_batch(transaction, &batch)?;
            context.progress.advance(rows.len() as u64);
        }
        drop(portal);
        if !allow_loss && !outcome.lossy.is_empty() {
            return Err(outcome.refusal());
        }

        context.progress.phase("writing chapters back");
        // Everything but the legacy columns' update first, under EXCLUSIVE (the
        // application's readers go on, seeing the rows as they were until the commit):
        // the sections and covers emptied, planrun's kept copies dropped.
        let sections = transaction.execute("DELETE FROM public.chapter_sections", &[])?;
        transaction.batch_execute(
            "UPDATE public.chapters SET cover_image = NULL WHERE cover_image IS NOT NULL;
             DELETE FROM planrun.memoir_quarantine;
             DELETE FROM planrun.memoir_legacy;
             DELETE FROM planrun.memoir_legacy_columns;",
        )?;
        // Only now the ACCESS EXCLUSIVE that adding columns takes, to the commit: the
        // application's readers of chapters wait for this one update, not for the
        // unsplit nor for the emptying above.
        transaction.batch_execute(&format!(
            "ALTER TABLE public.chapters ADD COLUMN content {content_type}, ADD COLUMN images {images_type};"
        ))?;
        let written = transaction.execute(
            &format!(
                "UPDATE public.chapters c SET content = u.content, images = u.images::{images_type}
                 FROM pg_temp.memoir_unsplit u
                 WHERE c.id = u.chapter_id AND (u.content IS NOT NULL OR u.images IS NOT NULL)"
            ),
            &[],
        )?;
        context.progress.finish();
        Ok(outcome.report(written, sections))
    }
}

/// `allow_loss`, defaulted to `false`.
fn allow_loss(params: &toml::Table) -> Result<bool, String> {
    match params.get("allow_loss") {
        None => Ok(false),
        Some(toml::Value::Boolean(b)) => Ok(*b),
        Some(other) => Err(format!("expected true or false, found {other}")),
    }
}

/// The legacy columns' types as the split found them; `text` and `jsonb` (the spec's)
/// when they were not kept. A type is only used once PostgreSQL recognises it.
fn legacy_types(transaction: &mut Transaction<'_>) -> Result<(String, String), TransformError> {
    let mut types = [
        ("content", "text".to_owned()),
        ("images", "jsonb".to_owned()),
    ];
    for (column, default) in &mut types {
        let row = transaction.query_opt(
            "SELECT column_type, to_regtype(column_type) IS NOT NULL
             FROM planrun.memoir_legacy_columns WHERE column_name = $1",
            &[column],
        )?;
        if let Some(row) = row {
            let (kept, known): (String, bool) = (row.get(0), row.get(1));
            let plain = kept
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " _(),".contains(c));
            if !known || !plain {
                return Err(TransformError::Schema(format!(
                    "planrun.memoir_legacy_columns gives chapters.{column} the type {kept:?}, which is not a plain type name"
                )));
            }
            *default = kept;
        }
    }
    let [(_, content), (_, images)] = types;
    Ok((content, images))
}

/// One chapter's way back: its id, legacy values and which way they came.
type ChapterBack = (i64, Option<String>, Option<String>, &'static str);

/// A section as `json_agg` gives it: `{"position", "content", "image"}`.
fn section_now(value: Value) -> Option<Section> {
    let Value::Object(mut object) = value else {
        return None;
    };
    let position = i32::try_from(object.get("position")?.as_i64()?).ok()?;
    let content = object.get("content")?.as_str()?.to_owned();
    let image = match object.remove("image")? {
        Value::Null => None,
        image => Some(image),
    };
    Some(Section {
        position,
        content,
        image,
    })
}

fn chapter_back(row: &Row, outcome: &mut Outcome) -> Result<ChapterBack, TransformError> {
    let id: i64 = row.get(0);
    if row.get::<_, bool>(3) {
        outcome.legacy += 1;
        return Ok((id, row.get(1), row.get(2), "legacy"));
    }
    let cover: Option<&str> = row.get(4);
    let sections: Option<&str> = row.get(5);
    let unreadable = |what: &str| TransformError::InvalidRow {
        table: "chapters".to_owned(),
        key: format!("id {id}"),
        path: what.to_owned(),
        reason: "cannot be read back as JSON".to_owned(),
    };
    let cover: Option<Value> = cover
        .map(serde_json::from_str)
        .transpose()
        .map_err(|_| unreadable("cover_image"))?;
    let sections: Vec<Section> = match sections.map(serde_json::from_str::<Vec<Value>>) {
        None => Vec::new(),
        Some(Ok(sections)) => sections
            .into_iter()
            .map(section_now)
            .collect::<Option<_>>()
            .ok_or_else(|| unreadable("chapter_sections"))?,
        Some(Err(_)) => return Err(unreadable("chapter_sections")),
    };
    let back = unsplit_chapter(&sections, cover.as_ref());
    let way = match back.fidelity {
        Fidelity::Exact => "exact",
        Fidelity::Anchored => "anchored",
        Fidelity::Lossy(why) => {
            outcome.lossy.push((id, why));
            "lossy"
        }
    };
    outcome.count(way);
    Ok((id, back.content, back.images, way))
}

fn write_batch(
    transaction: &mut Transaction<'_>,
    batch: &[ChapterBack],
) -> Result<u64, postgres::Error> {
    let ids: Vec<i64> = batch.iter().map(|b| b.0).collect();
    let contents: Vec<Option<&str>> = batch.iter().map(|b| b.1.as_deref()).collect();
    let images: Vec<Option<&str>> = batch.iter().map(|b| b.2.as_deref()).collect();
    let ways: Vec<&str> = batch.iter().map(|b| b.3).collect();
    transaction.execute(
        "INSERT INTO pg_temp.memoir_unsplit (chapter_id, content, images, way)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])",
        &[&ids, &contents, &images, &ways],
    )
}

/// What the revert did, chapter by chapter.
#[derive(Default)]
struct Outcome {
    legacy: u64,
    exact: u64,
    anchored: u64,
    lossy: Vec<(i64, String)>,
}

impl Outcome {
    fn count(&mut self, way: &str) {
        match way {
            "exact" => self.exact += 1,
            "anchored" => self.anchored += 1,
            _ => {}
        }
    }

    fn refusal(&self) -> TransformError {
        let named = &self.lossy[..self.lossy.len().min(NAMED)];
        let ids: Vec<String> = named.iter().map(|(id, _)| id.to_string()).collect();
        let why: Vec<String> = named
            .iter()
            .map(|(id, why)| format!("chapter {id}: {why}"))
            .collect();
        let more = self.lossy.len() - named.len();
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        TransformError::InvalidRow {
            table: "chapters".to_owned(),
            key: format!("id {}{more}", ids.join(", ")),
            path: "chapter_sections".to_owned(),
            reason: format!(
                "the legacy content and images cannot hold {} chapters ({}); declare the loss ([stage.revert_loss] and allow_loss = true) or change them first",
                self.lossy.len(),
                why.join("; ")
            ),
        }
    }

    fn report(self, written: u64, sections: u64) -> TransformReport {
        let mut notes = vec![format!(
            "{} chapters got their legacy values back byte for byte, {} were written from sections that split back exactly, {} with each image anchored at its section",
            self.legacy, self.exact, self.anchored
        )];
        if !self.lossy.is_empty() {
            notes.push(format!(
                "{} chapters the legacy columns cannot hold were written anyway (the plan declares the loss)",
                self.lossy.len()
            ));
        }
        notes.push(format!("{sections} sections removed"));
        TransformReport {
            rows_read: self.legacy + self.exact + self.anchored + self.lossy.len() as u64,
            rows_written: written,
            notes,
            ..TransformReport::default()
        }
    }
}
