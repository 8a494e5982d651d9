//! `memoir.collect_images`, stage 4 of the memoir plan: every chapter cover and every
//! section image becomes a `memoir_images` row, by the pure rule of
//! [`image_row`](crate::image_row).
//!
//! Idempotence lives in the reading query: only covers and section images without a
//! `memoir_images` row are selected, so a second run reads nothing and adds nothing, and a
//! run after a partial manual backfill adds just the rest. The portal's snapshot is taken
//! when it opens, so the rows this run inserts never feed back into what it reads. Writes
//! go straight into `memoir_images` with binary COPY, one per batch; the table's unique
//! indexes guard against anyone else inserting the same image meanwhile.

use planrun_transform::{count, count_signed, LockMode, TableLock};
use planrun_transform::{
    DeferredConstraints, Transform, TransformContext, TransformError, TransformReport,
};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::Transaction;
use serde_json::Value;

use crate::catalog;
use crate::image_row::{image_row, ImageRow};
use crate::params;

/// The `memoir.collect_images` transform.
#[derive(Debug, Clone, Copy, Default)]
pub struct CollectImages;

const PARAMS: [&str; 1] = ["batch_rows"];

const COVERS: &str = "
SELECT c.id::bigint, c.id::bigint, c.cover_image::text
FROM public.chapters c
WHERE c.cover_image IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM public.memoir_images m
                  WHERE m.chapter_id = c.id AND m.section_id IS NULL)
ORDER BY c.id";

const SECTION_IMAGES: &str = "
SELECT s.id, s.chapter_id, s.image::text
FROM public.chapter_sections s
WHERE s.image IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM public.memoir_images m WHERE m.section_id = s.id)
ORDER BY s.id";

/// The same sources when `memoir_images` was empty at the start: nothing to skip, and
/// without its indexes (deferred) an anti-join against it would only cost.
const ALL_COVERS: &str = "
SELECT c.id::bigint, c.id::bigint, c.cover_image::text
FROM public.chapters c WHERE c.cover_image IS NOT NULL ORDER BY c.id";

const ALL_SECTION_IMAGES: &str = "
SELECT s.id, s.chapter_id, s.image::text
FROM public.chapter_sections s WHERE s.image IS NOT NULL ORDER BY s.id";

/// Rows of `memoir_images` whose source was changed (by the application) after they
/// were collected: `(memoir_images.id, source id, source image)`. The keys are typed
/// `text`: pg_catalog has no `jsonb ->> jsonb`, so an untyped literal would let such an
/// operator in another schema of the search_path match exactly.
const CHANGED_COVERS: &str = "
SELECT m.id, c.id::bigint, c.cover_image::text
FROM public.chapters c
JOIN public.memoir_images m ON m.chapter_id = c.id AND m.section_id IS NULL
WHERE c.cover_image IS NOT NULL
  AND (m.url IS DISTINCT FROM c.cover_image ->> 'url'::text
       OR m.caption IS DISTINCT FROM c.cover_image ->> 'caption'::text
       OR m.meta IS DISTINCT FROM c.cover_image - 'url'::text - 'caption'::text)
ORDER BY m.id";

const CHANGED_SECTION_IMAGES: &str = "
SELECT m.id, s.id, s.image::text
FROM public.chapter_sections s
JOIN public.memoir_images m ON m.section_id = s.id
WHERE s.image IS NOT NULL
  AND (m.url IS DISTINCT FROM s.image ->> 'url'::text
       OR m.caption IS DISTINCT FROM s.image ->> 'caption'::text
       OR m.meta IS DISTINCT FROM s.image - 'url'::text - 'caption'::text)
ORDER BY m.id";

/// Which source a pass reads: its query, and how errors name the row.
struct Source {
    query: &'static str,
    query_all: &'static str,
    changed: &'static str,
    table: &'static str,
    column: &'static str,
    is_cover: bool,
}

const COVER_SOURCE: Source = Source {
    query: COVERS,
    query_all: ALL_COVERS,
    changed: CHANGED_COVERS,
    table: "chapters",
    column: "cover_image",
    is_cover: true,
};

const SECTION_SOURCE: Source = Source {
    query: SECTION_IMAGES,
    query_all: ALL_SECTION_IMAGES,
    changed: CHANGED_SECTION_IMAGES,
    table: "chapter_sections",
    column: "image",
    is_cover: false,
};

impl Transform for CollectImages {
    fn name(&self) -> &'static str {
        "memoir.collect_images"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn summary(&self) -> &'static str {
        "Collect chapters.cover_image and chapter_sections.image into memoir_images (idempotent)"
    }

    /// The sources stay as read until the commit (writers wait, readers go on), and
    /// no one else writes `memoir_images` meanwhile. When `memoir_images` is empty its
    /// indexes are rebuilt after the load, which takes it to itself then.
    fn locks(&self, _params: &toml::Table) -> Vec<TableLock> {
        [
            "public.chapters",
            "public.chapter_sections",
            "public.memoir_images",
        ]
        .into_iter()
        .map(|table| TableLock::new(table, LockMode::Exclusive, self.name()))
        .collect()
    }

    /// Only `memoir_images`: `chapters` and `chapter_sections` are locked so that
    /// they stay as read, not changed.
    fn writes(&self, _params: &toml::Table) -> Vec<String> {
        vec!["public.memoir_images".to_owned()]
    }

    fn check_params(&self, params: &toml::Table) -> Vec<(String, String)> {
        let mut problems = params::unknown_keys(params, &PARAMS);
        problems.extend(params::check_batch_rows(params));
        problems
    }

    fn run(
        &self,
        context: &mut TransformContext<'_, '_>,
    ) -> Result<TransformReport, TransformError> {
        params::into_error(self.check_params(context.params))?;
        let batch_rows = params::batch_rows(context.params).map_err(TransformError::Params)?;
        let transaction = &mut *context.transaction;
        let mut report = TransformReport::default();

        let with_sections = check_schema(transaction)?;
        if !with_sections {
            report.notes.push(
                "chapter_sections.image no longer exists (stage 5 ran): only covers were collected"
                    .to_owned(),
            );
        }

        let existing = transaction.query_one(
            "SELECT count(*) FILTER (WHERE section_id IS NULL),
                    count(*) FILTER (WHERE section_id IS NOT NULL)
             FROM public.memoir_images",
            &[],
        )?;
        let (existing_covers, existing_sections): (i64, i64) = (existing.get(0), existing.get(1));

        let mut total: i64 = transaction
            .query_one(&format!("SELECT count(*) FROM ({COVERS}) t"), &[])?
            .get(0);
        if with_sections {
            let sections: i64 = transaction
                .query_one(&format!("SELECT count(*) FROM ({SECTION_IMAGES}) t"), &[])?
                .get(0);
            total += sections;
        }
        context.progress.start(Some(total.max(0) as u64));

        // On a first run memoir_images is empty: its keys and indexes are then built
        // once after the load instead of row by row.
        let deferred = DeferredConstraints::take(transaction, "public.memoir_images")?;
        let all = deferred.is_some();
        let covers = collect(
            transaction,
            &COVER_SOURCE,
            all,
            batch_rows,
            context.progress,
        )?;
        let sections = if with_sections {
            collect(
                transaction,
                &SECTION_SOURCE,
                all,
                batch_rows,
                context.progress,
            )?
        } else {
            0
        };
        if let Some(deferred) = deferred {
            context.progress.phase("rebuilding keys and indexes");
            deferred.restore(transaction)?;
        }
        // Rows collected earlier whose source the application changed since: brought
        // up to date, so that memoir_images matches the sources as they are now.
        if !all {
            context.progress.phase("bringing changed images up to date");
        }
        let mut updated = if all {
            0
        } else {
            refresh(transaction, &COVER_SOURCE)?
        };
        if with_sections && !all {
            updated += refresh(transaction, &SECTION_SOURCE)?;
        }
        context.progress.finish();

        report.rows_read = covers + sections + updated;
        report.rows_written = covers + sections + updated;
        report.notes.push(format!(
            "{} covers and {} section images added; \
             {} covers and {} section images were already there",
            count(covers),
            count(sections),
            count_signed(existing_covers),
            count_signed(existing_sections)
        ));
        if updated > 0 {
            report.notes.push(format!(
                "{} memoir_images rows brought up to date with a cover or section image changed since they were collected",
                count(updated)
            ));
        }
        Ok(report)
    }
}

/// Checks the tables and columns read and written; says whether `chapter_sections.image`
/// still exists.
fn check_schema(transaction: &mut Transaction<'_>) -> Result<bool, TransformError> {
    let images = catalog::require_table(
        transaction,
        "memoir_images",
        "stage 3, images_schema, creates it",
    )?;
    for (column, expected) in [
        ("chapter_id", "bigint"),
        ("section_id", "bigint"),
        ("url", "text"),
        ("caption", "text"),
        ("meta", "jsonb"),
    ] {
        images.require_type(column, &[expected])?;
    }
    let chapters = catalog::require_table(transaction, "chapters", "the memoir chapters")?;
    chapters.require_type("cover_image", &["jsonb"])?;
    let sections = catalog::require_table(
        transaction,
        "chapter_sections",
        "stage 1, sections_schema, creates it",
    )?;
    if !sections.has("image") {
        return Ok(false);
    }
    sections.require_type("image", &["jsonb"])?;
    Ok(true)
}

/// Reads one source in batches and copies its rows into `memoir_images`; returns how
/// many were added.
fn collect(
    transaction: &mut Transaction<'_>,
    source: &Source,
    all: bool,
    batch_rows: i32,
    progress: &dyn planrun_transform::Progress,
) -> Result<u64, TransformError> {
    let query = if all { source.query_all } else { source.query };
    let portal = transaction.bind(query, &[])?;
    let mut added = 0;
    loop {
        let rows = transaction.query_portal(&portal, batch_rows)?;
        if rows.is_empty() {
            break;
        }
        let mut batch: Vec<(i64, i64, ImageRow)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.get(0);
            let chapter_id: i64 = row.get(1);
            let text: &str = row.get(2);
            batch.push((id, chapter_id, parse(source, id, text)?));
        }
        let fetched = rows.len() as u64;
        drop(rows);
        added += write(transaction, source, batch)?;
        progress.advance(fetched);
    }
    Ok(added)
}

/// Updates every `memoir_images` row whose source changed; returns how many.
fn refresh(transaction: &mut Transaction<'_>, source: &Source) -> Result<u64, TransformError> {
    let changed = transaction.query(source.changed, &[])?;
    let update = transaction.prepare(
        "UPDATE public.memoir_images SET url = $2, caption = $3, meta = $4 WHERE id = $1",
    )?;
    for row in &changed {
        let (image_id, source_id, text): (i64, i64, &str) = (row.get(0), row.get(1), row.get(2));
        let image = parse(source, source_id, text)?;
        let meta = Value::Object(image.meta);
        transaction.execute(&update, &[&image_id, &image.url, &image.caption, &meta])?;
    }
    Ok(changed.len() as u64)
}

fn parse(source: &Source, id: i64, text: &str) -> Result<ImageRow, TransformError> {
    let invalid = |path: String, reason: String| TransformError::InvalidRow {
        table: source.table.to_owned(),
        key: format!("id {id}"),
        path,
        reason,
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| invalid(source.column.to_owned(), format!("not valid JSON: {e}")))?;
    image_row(&value).map_err(|e| {
        // image_row names paths from `image`; a cover lives in `cover_image`.
        let path = match e.path.strip_prefix("image") {
            Some(rest) => format!("{}{rest}", source.column),
            None => e.path,
        };
        invalid(path, e.reason)
    })
}

fn write(
    transaction: &mut Transaction<'_>,
    source: &Source,
    batch: Vec<(i64, i64, ImageRow)>,
) -> Result<u64, postgres::Error> {
    let sink = transaction.copy_in(
        "COPY public.memoir_images (chapter_id, section_id, url, caption, meta) \
         FROM STDIN (FORMAT binary)",
    )?;
    let mut writer = BinaryCopyInWriter::new(
        sink,
        &[Type::INT8, Type::INT8, Type::TEXT, Type::TEXT, Type::JSONB],
    );
    for (id, chapter_id, row) in batch {
        let section_id = (!source.is_cover).then_some(id);
        let meta = Value::Object(row.meta);
        writer.write(&[&chapter_id, &section_id, &row.url, &row.caption, &meta])?;
    }
    writer.finish()
}
