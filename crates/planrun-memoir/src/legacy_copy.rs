//! `memoir.keep_legacy`: what stage 2 keeps for its way back, in planrun's own schema.
//!
//! The split cannot be inverted exactly for every legacy row: blank-line separators
//! (more than one blank line, or blank lines of spaces), `\r\n` and lone `\r`, leading
//! and trailing blank lines, an empty string against NULL, the string shorthand of an
//! image, the order of images, JSON spacing and key order in a `json` or `text` column,
//! an images value of `null` or `[]` against SQL NULL. So, after the split and before the
//! legacy columns are dropped, every chapter's `content` and `images` are copied as text,
//! byte for byte, into `planrun.memoir_legacy` with a digest of what the split wrote for
//! it (its sections and cover), and the columns' types into
//! `planrun.memoir_legacy_columns`. The revert (`memoir.unsplit_chapters`) gives a
//! chapter whose sections and cover still have that digest its legacy values back, and
//! writes any other chapter from its sections.
//!
//! The tables live beside `planrun.memoir_quarantine`, with the same (the running
//! role's default) privileges, outside the application's schema; they are replaced at
//! every split and stay until the plan closes the way back (dropping them).

use planrun_transform::{
    BatchOutcome, LockMode, SourceTable, TableLock, Transform, TransformContext, TransformError,
    TransformReport,
};
use postgres::Transaction;

use crate::params;

/// The tables of the way back.
pub const CREATE_LEGACY_TABLES: &str = "
CREATE SCHEMA IF NOT EXISTS planrun;
CREATE TABLE IF NOT EXISTS planrun.memoir_legacy (
    chapter_id   bigint PRIMARY KEY,
    content      text,
    images       text,
    split_digest text NOT NULL,
    run_id       bigint NOT NULL,
    stage_id     text NOT NULL,
    kept_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS planrun.memoir_legacy_columns (
    column_name text PRIMARY KEY,
    column_type text NOT NULL
);";

/// One section's part of its chapter's digest.
const SECTION_DIGEST: &str =
    "string_agg(position || ':' || md5(content) || ':' || coalesce(image::text, '-'), ',' ORDER BY position)";

/// Per chapter with sections (`chapter_id`), its sections' part of the digest
/// (`digest_part`) and, `with_sections`, the sections as a JSON array (`sections`) of
/// `{"position", "content", "image"}`. The keep and the revert compute the digest with
/// this one query and [`CHAPTER_DIGEST`], so a chapter nobody changed has the same
/// digest on both sides.
pub(crate) fn sections_now(with_sections: bool) -> String {
    let sections = if with_sections {
        ", json_agg(json_build_object('position', position, 'content', content, 'image', image) ORDER BY position) AS sections"
    } else {
        ""
    };
    format!(
        "SELECT chapter_id, {SECTION_DIGEST} AS digest_part{sections}
         FROM public.chapter_sections GROUP BY chapter_id"
    )
}

/// The digest of a chapter from its cover (`c.cover_image`) and [`sections_now`] (`s`).
pub(crate) const CHAPTER_DIGEST: &str =
    "md5(coalesce(c.cover_image::text, '-') || '|' || coalesce(s.digest_part, ''))";

/// The `memoir.keep_legacy` transform.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeepLegacy;

impl Transform for KeepLegacy {
    fn name(&self) -> &'static str {
        "memoir.keep_legacy"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn summary(&self) -> &'static str {
        "Keep every chapter's legacy content and images, and a digest of its split, for the way back"
    }

    /// The same as the split's: the legacy values and the sections must not change
    /// between the split and the copy.
    fn locks(&self, _params: &toml::Table) -> Vec<TableLock> {
        vec![
            TableLock::new("public.chapters", LockMode::Exclusive, self.name()),
            TableLock::new("public.chapter_sections", LockMode::Exclusive, self.name()),
        ]
    }

    fn writes(&self, _params: &toml::Table) -> Vec<String> {
        ["planrun.memoir_legacy", "planrun.memoir_legacy_columns"]
            .map(str::to_owned)
            .to_vec()
    }

    fn check_params(&self, params: &toml::Table) -> Vec<(String, String)> {
        params::unknown_keys(params, &[])
    }

    fn run(
        &self,
        context: &mut TransformContext<'_, '_>,
    ) -> Result<TransformReport, TransformError> {
        params::into_error(self.check_params(context.params))?;
        start_over(context.transaction)?;
        let kept = keep(context, None)?;
        Ok(kept_report(kept, "kept"))
    }

    /// A chapter's row is made from its `chapters` row and its sections, nothing else.
    fn per_key_inputs(&self, _params: &toml::Table) -> Vec<SourceTable> {
        vec![
            SourceTable::new("public.chapters", "id"),
            SourceTable::new("public.chapter_sections", "chapter_id"),
        ]
    }

    /// The next at most `limit` chapters after `after`, in key order; the first
    /// batch (`after = None`) first empties what an earlier split kept.
    fn run_batch(
        &self,
        context: &mut TransformContext<'_, '_>,
        after: Option<i64>,
        limit: u64,
    ) -> Result<BatchOutcome, TransformError> {
        params::into_error(self.check_params(context.params))?;
        if after.is_none() {
            start_over(context.transaction)?;
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let ids: Vec<i64> = context
            .transaction
            .query(
                "SELECT id::bigint FROM public.chapters
                 WHERE $1::bigint IS NULL OR id > $1 ORDER BY id LIMIT $2",
                &[&after, &limit],
            )?
            .into_iter()
            .map(|row| row.get(0))
            .collect();
        let Some(&last) = ids.last() else {
            return Ok(BatchOutcome::default());
        };
        let kept = keep(context, Some(&ids))?;
        Ok(BatchOutcome {
            last_key: Some(last),
            report: kept_report(kept, "kept"),
        })
    }

    /// The chapters `keys` kept again as they are now; a chapter that is gone keeps
    /// nothing.
    fn redo_keys(
        &self,
        context: &mut TransformContext<'_, '_>,
        keys: &[i64],
    ) -> Result<TransformReport, TransformError> {
        params::into_error(self.check_params(context.params))?;
        if keys.is_empty() {
            return Ok(kept_report(0, "kept again"));
        }
        context.transaction.execute(
            "DELETE FROM planrun.memoir_legacy WHERE chapter_id = ANY($1)",
            &[&keys.to_vec()],
        )?;
        let kept = keep(context, Some(keys))?;
        Ok(kept_report(kept, "kept again"))
    }
}

/// Empties what an earlier split kept and records the legacy columns' types.
fn start_over(transaction: &mut Transaction<'_>) -> Result<(), postgres::Error> {
    transaction.batch_execute(CREATE_LEGACY_TABLES)?;
    transaction.batch_execute(
        "DELETE FROM planrun.memoir_legacy;
         DELETE FROM planrun.memoir_legacy_columns;
         INSERT INTO planrun.memoir_legacy_columns (column_name, column_type)
         SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
         WHERE attrelid = 'public.chapters'::regclass AND NOT attisdropped
           AND attname IN ('content', 'images');",
    )
}

/// Keeps the chapters `keys` (every chapter when `None`): their legacy values and the
/// digest of their sections and cover as they are now; how many.
fn keep(
    context: &mut TransformContext<'_, '_>,
    keys: Option<&[i64]>,
) -> Result<u64, postgres::Error> {
    let (sections, filter) = match keys {
        None => (sections_now(false), "true"),
        Some(_) => (
            format!(
                "SELECT chapter_id, {SECTION_DIGEST} AS digest_part
                 FROM public.chapter_sections WHERE chapter_id = ANY($3) GROUP BY chapter_id"
            ),
            "c.id = ANY($3)",
        ),
    };
    let sql = format!(
        "INSERT INTO planrun.memoir_legacy
             (chapter_id, content, images, split_digest, run_id, stage_id)
         SELECT c.id, c.content::text, c.images::text, {CHAPTER_DIGEST}, $1, $2
         FROM public.chapters c LEFT JOIN ({sections}) s ON s.chapter_id = c.id
         WHERE {filter}"
    );
    let (run_id, stage_id) = (&context.run_id, &context.stage_id);
    match keys {
        None => context.transaction.execute(&sql, &[run_id, stage_id]),
        Some(keys) => {
            let keys = keys.to_vec();
            context
                .transaction
                .execute(&sql, &[run_id, stage_id, &keys])
        }
    }
}

fn kept_report(kept: u64, how: &str) -> TransformReport {
    TransformReport {
        rows_read: kept,
        rows_written: kept,
        notes: vec![format!(
            "{kept} chapters' legacy content and images {how} in planrun.memoir_legacy for the way back"
        )],
        ..TransformReport::default()
    }
}
