//! `memoir.link_section_images`, stage 5 of the memoir plan: every section points at
//! its `memoir_images` row through `image_id`, and that row is brought up to date with
//! the section's `image` first, so that dropping `image` afterwards loses nothing (the
//! spec's rule "stage 5 loses no image").
//!
//! Since stage 4 the application may write a section's image on either side, its JSON
//! or its `memoir_images` row (issue 24). So for the sections it covers (a key range,
//! some keys, or all) it first carries into the JSON each image whose row the
//! application changed, added or deleted since stage 4 while the JSON stayed as stage
//! 4 collected it, and fails, naming the sections, where both sides changed and
//! differ: the rule of the way back, `pg_temp.memoir_images_as_reverted` in the plan's
//! `session.sql`, which planrun loads on its session (`[plan] setup_sql_file`), so
//! the rule is written once. Then it makes `memoir_images` match
//! `chapter_sections.image` as it is now (a changed image updated, a missing one
//! added, the row of a section whose image was removed deleted) and sets `image_id`,
//! in a few set-based statements, and keeps what each image it linked now is
//! (`planrun.memoir_collected_images`), so that an edit the application makes
//! afterwards, which the change capture hands back (its sources include
//! `memoir_images` by `section_id`), is judged against the linked image. The images
//! are read and checked by the rule of [`image_row`](crate::image_row) after the
//! carrying, so a bad object is named with its section rather than becoming a row
//! without a `url`. In batched mode each batch locks its
//! sections first (`FOR NO KEY UPDATE`), so an application deleting a section, whose
//! cascade reaches `memoir_images`, waits for the batch instead of deadlocking with it.

use planrun_transform::TransformReport;
use planrun_transform::{count, LockMode, SourceTable, TableLock};
use planrun_transform::{BatchOutcome, Transform, TransformContext, TransformError};
use postgres::Transaction;
use serde_json::Value;

use crate::catalog;
use crate::image_row::image_row;
use crate::params;

/// The `memoir.link_section_images` transform.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkSectionImages;

const PARAMS: [&str; 0] = [];

/// The statements that link the sections `@FILTER@` selects (a condition on `s`,
/// with `$1` the keys when it names them), in order: rows whose image changed, rows
/// missing, rows whose section has no image now, then the pointers. The keys are
/// typed `text`: pg_catalog has no `jsonb ->> jsonb`, so an untyped literal would let
/// such an operator in another schema of the search_path match exactly.
const LINK: [&str; 5] = [
    "UPDATE public.memoir_images m
     SET chapter_id = s.chapter_id, url = s.image ->> 'url'::text,
         caption = s.image ->> 'caption'::text, meta = s.image - 'url'::text - 'caption'::text
     FROM public.chapter_sections s
     WHERE @FILTER@ AND m.section_id = s.id AND s.image IS NOT NULL
       AND (m.chapter_id <> s.chapter_id
            OR m.url IS DISTINCT FROM s.image ->> 'url'::text
            OR m.caption IS DISTINCT FROM s.image ->> 'caption'::text
            OR m.meta IS DISTINCT FROM s.image - 'url'::text - 'caption'::text)",
    "INSERT INTO public.memoir_images (chapter_id, section_id, url, caption, meta)
     SELECT s.chapter_id, s.id, s.image ->> 'url'::text, s.image ->> 'caption'::text,
            s.image - 'url'::text - 'caption'::text
     FROM public.chapter_sections s
     WHERE @FILTER@ AND s.image IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM public.memoir_images m WHERE m.section_id = s.id)",
    "DELETE FROM public.memoir_images m USING public.chapter_sections s
     WHERE @FILTER@ AND m.section_id = s.id AND s.image IS NULL",
    "UPDATE public.chapter_sections s SET image_id = m.id
     FROM public.memoir_images m
     WHERE @FILTER@ AND m.section_id = s.id AND s.image_id IS DISTINCT FROM m.id",
    "UPDATE public.chapter_sections s SET image_id = NULL
     WHERE @FILTER@ AND s.image IS NULL AND s.image_id IS NOT NULL",
];

/// The carrying (module docs) over the sections `@KEYS@` names (NULL: all): the
/// sections carried, and those changed on both sides differently. The rule's function
/// is the plan's (`session.sql`), in `pg_temp`.
const CARRY: &str = "
    WITH judged AS MATERIALIZED (
        SELECT r.section_id, r.image, r.conflict
        FROM pg_temp.memoir_images_as_reverted(true, @KEYS@) r),
    carried AS (
        UPDATE public.chapter_sections s SET image = j.image
        FROM judged j
        WHERE j.section_id = s.id AND NOT j.conflict AND j.image IS DISTINCT FROM s.image
        RETURNING s.id)
    SELECT (SELECT count(*) FROM carried),
           (SELECT array_agg(j.section_id ORDER BY j.section_id) FROM judged j WHERE j.conflict)";

/// After the link: what each image of the sections `@FILTER@` selects now is, its
/// JSON and its row agreeing, for the next carrying.
const KEEP: [&str; 2] = [
    "DELETE FROM planrun.memoir_collected_images k
     WHERE k.section_id IN (SELECT s.id FROM public.chapter_sections s WHERE @FILTER@)",
    "INSERT INTO planrun.memoir_collected_images (chapter_id, section_id, json_digest, row_digest)
     SELECT s.chapter_id, s.id, pg_temp.memoir_json_digest(s.image),
            pg_temp.memoir_row_digest(m.url, m.caption, m.meta)
     FROM public.chapter_sections s JOIN public.memoir_images m ON m.section_id = s.id
     WHERE @FILTER@ AND s.image IS NOT NULL",
];

/// Which sections an operation covers.
#[derive(Clone, Copy)]
enum Scope<'k> {
    All,
    Keys(&'k [i64]),
}

impl Scope<'_> {
    /// Runs `statement` over the sections covered: `@FILTER@` becomes a condition on
    /// `s`, `@KEYS@` the keys as an array (NULL for all).
    fn query(
        self,
        transaction: &mut Transaction<'_>,
        statement: &str,
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        match self {
            Scope::All => transaction.query(
                &statement
                    .replace("@FILTER@", "true")
                    .replace("@KEYS@", "NULL::bigint[]"),
                &[],
            ),
            Scope::Keys(keys) => transaction.query(
                &statement
                    .replace("@FILTER@", "s.id = ANY($1::bigint[])")
                    .replace("@KEYS@", "$1::bigint[]"),
                &[&keys],
            ),
        }
    }

    fn execute(
        self,
        transaction: &mut Transaction<'_>,
        statement: &str,
    ) -> Result<u64, postgres::Error> {
        match self {
            Scope::All => transaction.execute(&statement.replace("@FILTER@", "true"), &[]),
            Scope::Keys(keys) => transaction.execute(
                &statement.replace("@FILTER@", "s.id = ANY($1::bigint[])"),
                &[&keys],
            ),
        }
    }
}

impl Transform for LinkSectionImages {
    fn name(&self) -> &'static str {
        "memoir.link_section_images"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn summary(&self) -> &'static str {
        "Point chapter_sections.image_id at each section's memoir_images row, brought up to date first (batched: online)"
    }

    /// Writers of the sections and of `memoir_images` wait from the first read to the
    /// commit, so no image changes behind the link; readers go on. In batched mode the
    /// engine takes these only at the cutover.
    fn locks(&self, _params: &toml::Table) -> Vec<TableLock> {
        ["public.chapter_sections", "public.memoir_images"]
            .into_iter()
            .map(|table| TableLock::new(table, LockMode::Exclusive, self.name()))
            .collect()
    }

    fn writes(&self, _params: &toml::Table) -> Vec<String> {
        vec![
            "public.chapter_sections".to_owned(),
            "public.memoir_images".to_owned(),
        ]
    }

    fn check_params(&self, params: &toml::Table) -> Vec<(String, String)> {
        params::unknown_keys(params, &PARAMS)
    }

    fn run(
        &self,
        context: &mut TransformContext<'_, '_>,
    ) -> Result<TransformReport, TransformError> {
        params::into_error(self.check_params(context.params))?;
        check_schema(context.transaction)?;
        link(context.transaction, Scope::All)
    }

    fn supports_batches(&self) -> bool {
        true
    }

    fn sources(&self, _params: &toml::Table) -> Vec<SourceTable> {
        vec![
            SourceTable::new("public.chapter_sections", "id"),
            SourceTable::new("public.memoir_images", "section_id"),
        ]
    }

    fn run_batch(
        &self,
        context: &mut TransformContext<'_, '_>,
        after: Option<i64>,
        limit: u64,
    ) -> Result<BatchOutcome, TransformError> {
        params::into_error(self.check_params(context.params))?;
        check_schema(context.transaction)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = context.transaction.query(
            "SELECT id FROM public.chapter_sections
             WHERE $1::bigint IS NULL OR id > $1 ORDER BY id LIMIT $2
             FOR NO KEY UPDATE",
            &[&after, &limit],
        )?;
        let keys: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
        drop(rows);
        let Some(&last_key) = keys.last() else {
            return Ok(BatchOutcome::default());
        };
        let report = link(context.transaction, Scope::Keys(&keys))?;
        Ok(BatchOutcome {
            last_key: Some(last_key),
            report,
        })
    }

    fn redo_keys(
        &self,
        context: &mut TransformContext<'_, '_>,
        keys: &[i64],
    ) -> Result<TransformReport, TransformError> {
        check_schema(context.transaction)?;
        let keys = keys.to_vec();
        context.transaction.execute(
            "SELECT id FROM public.chapter_sections WHERE id = ANY($1)
             ORDER BY id FOR NO KEY UPDATE",
            &[&keys],
        )?;
        link(context.transaction, Scope::Keys(&keys))
    }

    /// The pointers go; the `memoir_images` rows brought up to date stay, as they
    /// match the sections (what stage 4 makes of them too).
    fn reset(
        &self,
        context: &mut TransformContext<'_, '_>,
    ) -> Result<TransformReport, TransformError> {
        let sections = catalog::require_table(
            context.transaction,
            "chapter_sections",
            "stage 1, sections_schema, creates it",
        )?;
        if !sections.has("image_id") {
            return Ok(TransformReport::default());
        }
        let cleared = context.transaction.execute(
            "UPDATE public.chapter_sections SET image_id = NULL WHERE image_id IS NOT NULL",
            &[],
        )?;
        Ok(TransformReport {
            rows_written: cleared,
            notes: vec![format!("cleared image_id of {} sections", count(cleared))],
            ..TransformReport::default()
        })
    }

    fn batch_total(
        &self,
        context: &mut TransformContext<'_, '_>,
    ) -> Result<Option<u64>, TransformError> {
        let total: i64 = context
            .transaction
            .query_one("SELECT count(*) FROM public.chapter_sections", &[])?
            .get(0);
        Ok(Some(total.max(0) as u64))
    }
}

/// The columns read and written: `chapter_sections.image` and `image_id` (added by
/// the step before), and `memoir_images`.
fn check_schema(transaction: &mut Transaction<'_>) -> Result<(), TransformError> {
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
    let sections = catalog::require_table(
        transaction,
        "chapter_sections",
        "stage 1, sections_schema, creates it",
    )?;
    sections.require_type("image", &["jsonb"])?;
    sections.require_type("image_id", &["bigint"])?;
    Ok(())
}

/// Every `(id, image)` row's image, when it has one, is a valid image object.
fn check_images(rows: &[postgres::Row]) -> Result<(), TransformError> {
    for row in rows {
        let id: i64 = row.get(0);
        let Some(text) = row.get::<_, Option<&str>>(1) else {
            continue;
        };
        let invalid = |path: String, reason: String| TransformError::InvalidRow {
            table: "chapter_sections".to_owned(),
            key: format!("id {id}"),
            path,
            reason,
        };
        let value: Value = serde_json::from_str(text)
            .map_err(|e| invalid("image".to_owned(), format!("not valid JSON: {e}")))?;
        image_row(&value).map_err(|e| invalid(e.path, e.reason))?;
    }
    Ok(())
}

/// Carries the row edits into the JSON, checks the images, runs [`LINK`] and keeps
/// what each image linked is ([`KEEP`]), over `scope`.
fn link(
    transaction: &mut Transaction<'_>,
    scope: Scope<'_>,
) -> Result<TransformReport, TransformError> {
    let (kept, carried) = carry(transaction, scope)?;
    let images = scope.query(
        transaction,
        "SELECT s.id, s.image::text FROM public.chapter_sections s
         WHERE @FILTER@ AND s.image IS NOT NULL",
    )?;
    check_images(&images)?;
    let read = match scope {
        Scope::All => images.len() as u64,
        Scope::Keys(keys) => keys.len() as u64,
    };
    drop(images);
    let mut changed = [0u64; 5];
    for (statement, changed) in LINK.iter().zip(&mut changed) {
        *changed = scope.execute(transaction, statement)?;
    }
    if kept {
        for statement in KEEP {
            scope.execute(transaction, statement)?;
        }
    }
    let [updated, added, removed, pointed, cleared] = changed;
    let mut notes = vec![format!(
        "{} sections pointed at their image",
        count(pointed)
    )];
    if carried > 0 {
        notes.push(format!(
            "{} memoir_images rows the application changed since stage 4 carried into the sections' images first",
            count(carried)
        ));
    }
    if updated + added + removed > 0 {
        notes.push(format!(
            "memoir_images brought up to date with the sections: {} rows updated, {} added, {} removed",
            count(updated),
            count(added),
            count(removed)
        ));
    }
    Ok(TransformReport {
        rows_read: read,
        rows_written: updated + added + removed + pointed + cleared,
        rows_quarantined: 0,
        notes,
    })
}

/// Carries into the JSON of the sections `scope` covers the images whose
/// `memoir_images` row the application changed since stage 4 while their JSON stayed
/// ([`CARRY`]), after locking those rows (an edit committed between the carrying and
/// the link would be overwritten: it waits for the batch, and the capture hands it
/// back). Fails naming the sections changed on both sides differently. Returns
/// whether `planrun.memoir_collected_images` exists (the link then keeps its images
/// there) and how many sections were carried.
fn carry(
    transaction: &mut Transaction<'_>,
    scope: Scope<'_>,
) -> Result<(bool, u64), TransformError> {
    let found = transaction.query_one(
        "SELECT to_regprocedure('pg_temp.memoir_images_as_reverted(boolean,bigint[])') IS NOT NULL,
                to_regclass('planrun.memoir_collected_images') IS NOT NULL",
        &[],
    )?;
    if !found.get::<_, bool>(0) {
        return Err(TransformError::Schema(
            "pg_temp.memoir_images_as_reverted(boolean, bigint[]) is missing: it is defined by \
             the memoir plan's plans/memoir/session.sql ([plan] setup_sql_file), which tells the \
             memoir_images rows the application changed since stage 4 from those it did not"
                .to_owned(),
        ));
    }
    if let Scope::Keys(keys) = scope {
        transaction.execute(
            "SELECT id FROM public.memoir_images WHERE section_id = ANY($1)
             ORDER BY id FOR NO KEY UPDATE",
            &[&keys],
        )?;
    }
    let kept = found.get(1);
    let Some(row) = scope.query(transaction, CARRY)?.pop() else {
        return Ok((kept, 0)); // an aggregate's one row: not reached
    };
    let carried: i64 = row.get(0);
    if let Some(conflicts) = row.get::<_, Option<Vec<i64>>>(1) {
        let mut named: Vec<String> = conflicts.iter().take(20).map(i64::to_string).collect();
        if conflicts.len() > named.len() {
            named.push(format!("and {} more", conflicts.len() - named.len()));
        }
        return Err(TransformError::InvalidRow {
            table: "chapter_sections".to_owned(),
            key: format!("id {}", named.join(", ")),
            path: "image".to_owned(),
            reason: "the application changed this image since stage 4 both in the JSON and in its \
                     memoir_images row, and the two now differ: make both say the same, then apply again"
                .to_owned(),
        });
    }
    Ok((kept, carried.max(0) as u64))
}
