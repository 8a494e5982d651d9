//! `memoir.split_chapters`, stage 2 of the memoir plan: every legacy chapter's `content`
//! and `images` become `chapter_sections` rows and a `cover_image`, by the pure rules of
//! [`split_chapter`](crate::split_chapter).
//!
//! The table is streamed (`split_stream.rs`: a portal fetched `batch_rows` chapters at a
//! time, split on a thread of its own one batch ahead, each batch's sections written with
//! one binary COPY). Covers are copied into a temporary table and applied with a single
//! `UPDATE ... FROM` at the end, so each chapter row is rewritten at most once. What was
//! written is recorded as the split's witness (`witness.rs`), which the plan's checks
//! compare with the legacy side. Nothing is ever committed here: the engine owns the
//! transaction and commits only after the plan's verification passes.

use planrun_transform::{count, count_signed, LockMode, TableLock};
use planrun_transform::{
    BatchOutcome, DeferredConstraints, SourceTable, Transform, TransformContext, TransformError,
    TransformReport,
};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::{Row, Transaction};
use serde_json::Value;

use crate::catalog::{self, is_text_like};
use crate::params;
use crate::quarantine::{QuarantinedChapter, CREATE_QUARANTINE_TABLE};
use crate::split::{split_chapter, SplitChapter};
use crate::split_batched;
use crate::split_stream::stream_chapters;
use crate::witness;

/// What to do with a chapter that breaks the spec's rules (`on_invalid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnInvalid {
    /// Stop with [`TransformError::InvalidRow`]; the engine rolls everything back.
    #[default]
    Fail,
    /// Keep the chapter's raw values in `planrun.memoir_quarantine` and migrate the rest.
    Quarantine,
}

impl OnInvalid {
    fn from_params(params: &toml::Table) -> Result<OnInvalid, String> {
        match params.get("on_invalid") {
            None => Ok(OnInvalid::Fail),
            Some(toml::Value::String(s)) if s == "fail" => Ok(OnInvalid::Fail),
            Some(toml::Value::String(s)) if s == "quarantine" => Ok(OnInvalid::Quarantine),
            Some(other) => Err(format!(
                "expected \"fail\" or \"quarantine\", found {other}"
            )),
        }
    }
}

/// The `memoir.split_chapters` transform.
#[derive(Debug, Clone, Copy, Default)]
pub struct SplitChapters;

const PARAMS: [&str; 2] = ["on_invalid", "batch_rows"];

impl Transform for SplitChapters {
    fn name(&self) -> &'static str {
        "memoir.split_chapters"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn summary(&self) -> &'static str {
        "Split chapters.content and chapters.images into chapter_sections and chapters.cover_image"
    }

    /// Writers of `chapters` wait from the first read to the commit, so no content
    /// or images change behind the split before the columns are dropped; readers
    /// go on. `chapter_sections` is new and empty: its keys are rebuilt after the
    /// load, which needs it to itself.
    fn locks(&self, _params: &toml::Table) -> Vec<TableLock> {
        vec![
            TableLock::new("public.chapters", LockMode::Exclusive, self.name()),
            TableLock::new(
                "public.chapter_sections",
                LockMode::AccessExclusive,
                self.name(),
            ),
        ]
    }

    /// The sections, the covers it sets in `chapters` and the quarantined chapters;
    /// `chapters`' other columns it only reads.
    fn writes(&self, _params: &toml::Table) -> Vec<String> {
        [
            "public.chapter_sections",
            "public.chapters",
            "planrun.memoir_quarantine",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn check_params(&self, params: &toml::Table) -> Vec<(String, String)> {
        let mut problems = params::unknown_keys(params, &PARAMS);
        if let Err(message) = OnInvalid::from_params(params) {
            problems.push(("on_invalid".to_owned(), message));
        }
        problems.extend(params::check_batch_rows(params));
        problems
    }

    fn run(
        &self,
        context: &mut TransformContext<'_, '_>,
    ) -> Result<TransformReport, TransformError> {
        params::into_error(self.check_params(context.params))?;
        let on_invalid = OnInvalid::from_params(context.params).map_err(TransformError::Params)?;
        let batch_rows = params::batch_rows(context.params).map_err(TransformError::Params)?;
        let transaction = &mut *context.transaction;

        transaction.batch_execute(CREATE_QUARANTINE_TABLE)?;
        let images_type = check_schema(transaction)?;
        let changes_before = witness::changes_before(transaction)?;

        let mut report = TransformReport::default();
        report
            .notes
            .push(format!("images column type: {images_type}"));

        let total: i64 = transaction
            .query_one("SELECT count(*) FROM public.chapters", &[])?
            .get(0);
        let stale_covers: i64 = transaction
            .query_one(
                "SELECT count(*) FROM public.chapters WHERE cover_image IS NOT NULL",
                &[],
            )?
            .get(0);
        context.progress.start(Some(total.max(0) as u64));

        transaction.batch_execute(
            "DROP TABLE IF EXISTS pg_temp.memoir_split_covers;
             CREATE TEMP TABLE memoir_split_covers (chapter_id bigint NOT NULL, cover jsonb NOT NULL)
                 ON COMMIT DROP;",
        )?;

        // Usually chapter_sections is empty here (the plan checks it): its keys and
        // indexes are then built once after the load instead of row by row.
        let deferred = DeferredConstraints::take(transaction, "public.chapter_sections")?;

        let streamed = stream_chapters(context, on_invalid, batch_rows, &images_type)?;
        let transaction = &mut *context.transaction;
        report.rows_read = streamed.rows_read;
        report.rows_written = streamed.sections_written;
        report.rows_quarantined = streamed.quarantined;
        let covers_written = streamed.covers_written;

        context.progress.phase("writing covers");
        if stale_covers > 0 {
            // A cover is the first image or NULL: one left over from an earlier attempt
            // on a chapter that now has no images (or is quarantined) must go.
            let cleared = transaction.execute(
                "UPDATE public.chapters c SET cover_image = NULL
                 WHERE c.cover_image IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM pg_temp.memoir_split_covers v
                                   WHERE v.chapter_id = c.id)",
                &[],
            )?;
            report.notes.push(format!(
                "{} chapters already had a cover_image; {} of them have no images now and were reset to NULL",
                count_signed(stale_covers),
                count(cleared)
            ));
        }
        transaction.batch_execute(
            "ANALYZE pg_temp.memoir_split_covers;
             UPDATE public.chapters c SET cover_image = v.cover
             FROM pg_temp.memoir_split_covers v
             WHERE c.id = v.chapter_id AND c.cover_image IS DISTINCT FROM v.cover;
             DROP TABLE pg_temp.memoir_split_covers;",
        )?;
        if let Some(deferred) = deferred {
            context.progress.phase("rebuilding keys and indexes");
            let keys = deferred.len();
            let kept = deferred.kept().join("; ");
            deferred.restore(transaction)?;
            report.notes.push(format!(
                "chapter_sections was empty: its {keys} keys and indexes were built after the load"
            ));
            if !kept.is_empty() {
                report
                    .notes
                    .push(format!("kept in place during the load: {kept}"));
            }
        }
        streamed.witness.record(transaction, changes_before)?;
        context.progress.finish();

        report.notes.push(format!(
            "{} chapters read, {} sections and {} covers written",
            count(report.rows_read),
            count(report.rows_written),
            count(covers_written)
        ));
        if report.rows_quarantined > 0 {
            report.notes.push(format!(
                "{} invalid chapters set aside in planrun.memoir_quarantine",
                count(report.rows_quarantined)
            ));
        }
        Ok(report)
    }

    fn supports_batches(&self) -> bool {
        true
    }

    fn batch_total(
        &self,
        context: &mut TransformContext<'_, '_>,
    ) -> Result<Option<u64>, TransformError> {
        let total: i64 = context
            .transaction
            .query_one("SELECT count(*) FROM public.chapters", &[])?
            .get(0);
        Ok(Some(total.max(0) as u64))
    }

    /// One committed batch of batched mode: the next `limit` chapters after `after`,
    /// their sections, covers (set, or reset when a chapter no longer has images) and
    /// quarantined rows, all in the batch's transaction.
    fn run_batch(
        &self,
        context: &mut TransformContext<'_, '_>,
        after: Option<i64>,
        limit: u64,
    ) -> Result<BatchOutcome, TransformError> {
        params::into_error(self.check_params(context.params))?;
        let on_invalid = OnInvalid::from_params(context.params).map_err(TransformError::Params)?;
        split_batched::next_batch(context, on_invalid, after, limit)
    }

    fn sources(&self, _params: &toml::Table) -> Vec<SourceTable> {
        vec![SourceTable::new("public.chapters", "id")]
    }

    /// The chapters with these ids split again as they are now: their sections,
    /// cover and quarantine row replaced, or removed for a chapter that is gone.
    fn redo_keys(
        &self,
        context: &mut TransformContext<'_, '_>,
        keys: &[i64],
    ) -> Result<TransformReport, TransformError> {
        params::into_error(self.check_params(context.params))?;
        let on_invalid = OnInvalid::from_params(context.params).map_err(TransformError::Params)?;
        split_batched::redo(context, on_invalid, keys)
    }

    /// Everything a half-done batched split wrote: every section (the table is new
    /// in stage 1 and only the split fills it before its stage commits), every cover,
    /// and the stage's quarantine rows.
    fn reset(
        &self,
        context: &mut TransformContext<'_, '_>,
    ) -> Result<TransformReport, TransformError> {
        split_batched::reset(context)
    }
}

/// A batch's chapters: those split, by id, and those set aside.
type SplitBatch = (Vec<(i64, SplitChapter)>, Vec<QuarantinedChapter>);

/// Splits fetched `(id, content, images)` rows, failing on or setting aside invalid ones.
pub(crate) fn split_rows(
    rows: &[Row],
    on_invalid: OnInvalid,
) -> Result<SplitBatch, TransformError> {
    let mut batch: Vec<(i64, SplitChapter)> = Vec::with_capacity(rows.len());
    let mut set_aside: Vec<QuarantinedChapter> = Vec::new();
    for row in rows {
        let id: i64 = row.get(0);
        let content: Option<&str> = row.get(1);
        let images: Option<&str> = row.get(2);
        match split_chapter(content, images) {
            Ok(split) => batch.push((id, split)),
            Err(invalid) => match on_invalid {
                OnInvalid::Fail => {
                    return Err(TransformError::InvalidRow {
                        table: "chapters".to_owned(),
                        key: format!("id {id}"),
                        path: invalid.path,
                        reason: invalid.reason,
                    })
                }
                OnInvalid::Quarantine => set_aside.push(QuarantinedChapter {
                    chapter_id: id,
                    content: content.map(str::to_owned),
                    images: images.map(str::to_owned),
                    path: invalid.path,
                    reason: invalid.reason,
                }),
            },
        }
    }
    Ok((batch, set_aside))
}

/// Checks every column the transform reads or writes; returns the images column's type.
pub(crate) fn check_schema(transaction: &mut Transaction<'_>) -> Result<String, TransformError> {
    let chapters = catalog::require_table(transaction, "chapters", "the legacy chapters")?;
    chapters.require_type("id", &["bigint", "integer"])?;
    let content = chapters.require("content")?;
    if !is_text_like(content) {
        return Err(TransformError::Schema(format!(
            "column chapters.content has type {content}, expected text"
        )));
    }
    let images = chapters.require("images")?.to_owned();
    if !(images == "jsonb" || images == "json" || is_text_like(&images)) {
        return Err(TransformError::Schema(format!(
            "column chapters.images has type {images}, expected jsonb, json or text holding JSON"
        )));
    }
    chapters
        .require_type("cover_image", &["jsonb"])
        .map_err(|e| stage_one_hint(e, "chapters.cover_image"))?;

    let sections = catalog::require_table(
        transaction,
        "chapter_sections",
        "stage 1, sections_schema, creates it",
    )?;
    for (column, expected) in [
        ("chapter_id", "bigint"),
        ("position", "integer"),
        ("content", "text"),
        ("image", "jsonb"),
    ] {
        sections.require_type(column, &[expected])?;
    }
    Ok(images)
}

fn stage_one_hint(error: TransformError, what: &str) -> TransformError {
    match error {
        TransformError::Schema(message) if message.ends_with("does not exist") => {
            TransformError::Schema(format!(
                "{message} (stage 1, sections_schema, creates {what})"
            ))
        }
        other => other,
    }
}

pub(crate) fn write_sections(
    transaction: &mut Transaction<'_>,
    batch: &[(i64, SplitChapter)],
) -> Result<u64, postgres::Error> {
    if batch.iter().all(|(_, split)| split.sections.is_empty()) {
        return Ok(0);
    }
    let sink = transaction.copy_in(
        "COPY public.chapter_sections (chapter_id, position, content, image) FROM STDIN (FORMAT binary)",
    )?;
    let mut writer =
        BinaryCopyInWriter::new(sink, &[Type::INT8, Type::INT4, Type::TEXT, Type::JSONB]);
    for (id, split) in batch {
        for section in &split.sections {
            writer.write(&[id, &section.position, &section.content, &section.image])?;
        }
    }
    writer.finish()
}

pub(crate) fn write_covers(
    transaction: &mut Transaction<'_>,
    batch: &[(i64, SplitChapter)],
) -> Result<u64, postgres::Error> {
    let mut covers = batch
        .iter()
        .filter_map(|(id, split)| split.cover_image.as_ref().map(|cover| (id, cover)))
        .peekable();
    if covers.peek().is_none() {
        return Ok(0);
    }
    let sink = transaction.copy_in(
        "COPY pg_temp.memoir_split_covers (chapter_id, cover) FROM STDIN (FORMAT binary)",
    )?;
    let mut writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::JSONB]);
    for (id, cover) in covers {
        let cover: &Value = cover;
        writer.write(&[id, cover])?;
    }
    writer.finish()
}
