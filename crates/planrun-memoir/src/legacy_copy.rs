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
    LockMode, TableLock, Transform, TransformContext, TransformError, TransformReport,
};

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
        let transaction = &mut *context.transaction;
        transaction.batch_execute(CREATE_LEGACY_TABLES)?;
        transaction.batch_execute(
            "DELETE FROM planrun.memoir_legacy;
             DELETE FROM planrun.memoir_legacy_columns;
             INSERT INTO planrun.memoir_legacy_columns (column_name, column_type)
             SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = 'public.chapters'::regclass AND NOT attisdropped
               AND attname IN ('content', 'images');",
        )?;
        let kept = transaction.execute(
            &format!(
                "INSERT INTO planrun.memoir_legacy
                     (chapter_id, content, images, split_digest, run_id, stage_id)
                 SELECT c.id, c.content::text, c.images::text, {CHAPTER_DIGEST}, $1, $2
                 FROM public.chapters c LEFT JOIN ({}) s ON s.chapter_id = c.id",
                sections_now(false)
            ),
            &[&context.run_id, &context.stage_id],
        )?;
        Ok(TransformReport {
            rows_read: kept,
            rows_written: kept,
            notes: vec![format!(
                "{kept} chapters' legacy content and images kept in planrun.memoir_legacy for the way back"
            )],
            ..TransformReport::default()
        })
    }
}
