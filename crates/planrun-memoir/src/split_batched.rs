//! `memoir.split_chapters` in batched mode: the next batch of chapters in key order,
//! the chapters the application changed behind the checkpoint split again, and the
//! undoing of a half-done split (`planrun reset`).
//!
//! Every write is keyed by chapter id, so each operation replaces exactly what the
//! split wrote for its chapters: sections are deleted and written again, the cover is
//! set or reset, the quarantine row replaced or removed.

use planrun_transform::{BatchOutcome, TransformContext, TransformError, TransformReport};
use postgres::Transaction;

use crate::quarantine::{self, CREATE_QUARANTINE_TABLE};
use crate::split_transform::{check_schema, split_rows, write_covers, write_sections, OnInvalid};

/// Which chapters an operation covers, for resetting covers that no longer apply.
enum Scope<'k> {
    /// `after < id <= last`.
    Range {
        after: Option<i64>,
        last: i64,
    },
    Keys(&'k [i64]),
}

/// The next at most `limit` chapters after `after`.
pub(crate) fn next_batch(
    context: &mut TransformContext<'_, '_>,
    on_invalid: OnInvalid,
    after: Option<i64>,
    limit: u64,
) -> Result<BatchOutcome, TransformError> {
    let images_type = prepare(context.transaction)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = context.transaction.query(
        "SELECT id::bigint, content::text, images::text FROM public.chapters
         WHERE $1::bigint IS NULL OR id > $1 ORDER BY id LIMIT $2",
        &[&after, &limit],
    )?;
    let Some(last) = rows.last() else {
        return Ok(BatchOutcome::default());
    };
    let last_key: i64 = last.get(0);
    // A catch-up may have split chapters of this batch already (the application
    // inserted them after the last batch, and the stage was resumed): the batch
    // replaces what was written for them.
    let ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    context.transaction.execute(
        "DELETE FROM public.chapter_sections WHERE chapter_id = ANY($1)",
        &[&ids],
    )?;
    context.transaction.execute(
        "DELETE FROM planrun.memoir_quarantine WHERE chapter_id = ANY($1)",
        &[&ids],
    )?;
    let mut report = split_and_write(
        context,
        &rows,
        on_invalid,
        &images_type,
        Scope::Range {
            after,
            last: last_key,
        },
    )?;
    report.notes = vec![format!("images column type: {images_type}")];
    Ok(BatchOutcome {
        last_key: Some(last_key),
        report,
    })
}

/// The chapters `keys` split again as they are now.
pub(crate) fn redo(
    context: &mut TransformContext<'_, '_>,
    on_invalid: OnInvalid,
    keys: &[i64],
) -> Result<TransformReport, TransformError> {
    let images_type = prepare(context.transaction)?;
    let keys: Vec<i64> = keys.to_vec();
    context.transaction.execute(
        "DELETE FROM public.chapter_sections WHERE chapter_id = ANY($1)",
        &[&keys],
    )?;
    context.transaction.execute(
        "DELETE FROM planrun.memoir_quarantine WHERE chapter_id = ANY($1)",
        &[&keys],
    )?;
    let rows = context.transaction.query(
        "SELECT id::bigint, content::text, images::text FROM public.chapters
         WHERE id = ANY($1) ORDER BY id",
        &[&keys],
    )?;
    split_and_write(context, &rows, on_invalid, &images_type, Scope::Keys(&keys))
}

/// Removes every section, cover and quarantine row of the stage.
pub(crate) fn reset(
    context: &mut TransformContext<'_, '_>,
) -> Result<TransformReport, TransformError> {
    let transaction = &mut *context.transaction;
    transaction.batch_execute(CREATE_QUARANTINE_TABLE)?;
    let sections = transaction.execute("DELETE FROM public.chapter_sections", &[])?;
    let covers = transaction.execute(
        "UPDATE public.chapters SET cover_image = NULL WHERE cover_image IS NOT NULL",
        &[],
    )?;
    let quarantined = transaction.execute(
        "DELETE FROM planrun.memoir_quarantine WHERE stage_id = $1",
        &[&context.stage_id],
    )?;
    Ok(TransformReport {
        rows_written: sections + covers + quarantined,
        notes: vec![format!(
            "removed {sections} sections, {covers} covers and {quarantined} quarantined chapters"
        )],
        ..TransformReport::default()
    })
}

fn prepare(transaction: &mut Transaction<'_>) -> Result<String, TransformError> {
    transaction.batch_execute(CREATE_QUARANTINE_TABLE)?;
    check_schema(transaction)
}

/// Splits fetched `(id, content, images)` rows and writes their sections, covers and
/// quarantine rows; covers of chapters in `scope` that have none now are reset.
fn split_and_write(
    context: &mut TransformContext<'_, '_>,
    rows: &[postgres::Row],
    on_invalid: OnInvalid,
    images_type: &str,
    scope: Scope<'_>,
) -> Result<TransformReport, TransformError> {
    let (batch, set_aside) = split_rows(rows, on_invalid)?;
    let transaction = &mut *context.transaction;
    transaction.batch_execute(
        "DROP TABLE IF EXISTS pg_temp.memoir_split_covers;
         CREATE TEMP TABLE memoir_split_covers (chapter_id bigint NOT NULL, cover jsonb NOT NULL)
             ON COMMIT DROP;",
    )?;
    let rows_written = write_sections(transaction, &batch)?;
    write_covers(transaction, &batch)?;
    let rows_quarantined = quarantine::insert(
        transaction,
        &set_aside,
        images_type,
        context.run_id,
        context.stage_id,
    )?;
    const NO_COVER_NOW: &str = "c.cover_image IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM pg_temp.memoir_split_covers v WHERE v.chapter_id = c.id)";
    match scope {
        Scope::Range { after, last } => transaction.execute(
            &format!(
                "UPDATE public.chapters c SET cover_image = NULL
                 WHERE ($1::bigint IS NULL OR c.id > $1) AND c.id <= $2 AND {NO_COVER_NOW}"
            ),
            &[&after, &last],
        )?,
        Scope::Keys(keys) => transaction.execute(
            &format!(
                "UPDATE public.chapters c SET cover_image = NULL WHERE c.id = ANY($1) AND {NO_COVER_NOW}"
            ),
            &[&keys],
        )?,
    };
    transaction.batch_execute(
        "UPDATE public.chapters c SET cover_image = v.cover
         FROM pg_temp.memoir_split_covers v
         WHERE c.id = v.chapter_id AND c.cover_image IS DISTINCT FROM v.cover;
         DROP TABLE pg_temp.memoir_split_covers;",
    )?;
    Ok(TransformReport {
        rows_read: rows.len() as u64,
        rows_written,
        rows_quarantined,
        notes: Vec::new(),
    })
}
