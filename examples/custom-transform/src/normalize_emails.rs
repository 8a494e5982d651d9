//! `shop.normalize_emails`: each customer's `email`, trimmed and with its domain in
//! lower case, written to `customers.email_normalized`, in batches of key order, in one
//! transaction (atomic mode) or one per batch while the application keeps writing
//! (`mode = "batched"`).

use planrun_transform::{
    BatchOutcome, LockMode, SourceTable, TableLock, Transform, TransformContext, TransformError,
    TransformReport,
};
use postgres::Row;

/// The table read and written, named with its schema.
const TABLE: &str = "public.customers";

/// Rows per round trip in atomic mode; batched mode gets its batch size from the plan.
const CHUNK: u64 = 1_000;

/// The transform that plans name `shop.normalize_emails`.
pub struct NormalizeEmails;

impl Transform for NormalizeEmails {
    fn name(&self) -> &'static str {
        "shop.normalize_emails"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn summary(&self) -> &'static str {
        "customers.email, trimmed and its domain lower-cased, into customers.email_normalized"
    }

    /// It takes no params of its own (`mode` and `batch_size` are the engine's).
    fn check_params(&self, params: &toml::Table) -> Vec<(String, String)> {
        params
            .keys()
            .map(|key| {
                (
                    key.clone(),
                    "unknown param: this transform takes none".into(),
                )
            })
            .collect()
    }

    /// Reads `email` and writes `email_normalized` of the same rows: the application's
    /// writers wait for the commit, its readers do not.
    fn locks(&self, _params: &toml::Table) -> Vec<TableLock> {
        vec![TableLock::new(TABLE, LockMode::Exclusive, self.name())]
    }

    fn run(&self, cx: &mut TransformContext<'_, '_>) -> Result<TransformReport, TransformError> {
        cx.progress.start(self.batch_total(cx)?);
        let mut total = TransformReport::default();
        let mut after = None;
        loop {
            let batch = self.run_batch(cx, after, CHUNK)?;
            let Some(last_key) = batch.last_key else {
                break;
            };
            cx.progress.advance(batch.report.rows_read);
            total.rows_read += batch.report.rows_read;
            total.rows_written += batch.report.rows_written;
            after = Some(last_key);
        }
        cx.progress.finish();
        Ok(total)
    }

    fn supports_batches(&self) -> bool {
        true
    }

    fn run_batch(
        &self,
        cx: &mut TransformContext<'_, '_>,
        after: Option<i64>,
        limit: u64,
    ) -> Result<BatchOutcome, TransformError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = cx.transaction.query(
            "SELECT id::bigint, email::text FROM public.customers
             WHERE $1::bigint IS NULL OR id > $1 ORDER BY id LIMIT $2",
            &[&after, &limit],
        )?;
        Ok(BatchOutcome {
            last_key: rows.last().map(|row| row.get(0)),
            report: write_normalized(cx, &rows)?,
        })
    }

    fn sources(&self, _params: &toml::Table) -> Vec<SourceTable> {
        vec![SourceTable::new(TABLE, "id")]
    }

    /// Rows the application changed after their batch: normalized again as they are
    /// now. A deleted row took its `email_normalized` with it.
    fn redo_keys(
        &self,
        cx: &mut TransformContext<'_, '_>,
        keys: &[i64],
    ) -> Result<TransformReport, TransformError> {
        let rows = cx.transaction.query(
            "SELECT id::bigint, email::text FROM public.customers WHERE id = ANY($1::bigint[])",
            &[&keys],
        )?;
        write_normalized(cx, &rows)
    }

    fn reset(&self, cx: &mut TransformContext<'_, '_>) -> Result<TransformReport, TransformError> {
        let cleared = cx.transaction.execute(
            "UPDATE public.customers SET email_normalized = NULL WHERE email_normalized IS NOT NULL",
            &[],
        )?;
        Ok(TransformReport {
            rows_written: cleared,
            notes: vec![format!("email_normalized cleared on {cleared} rows")],
            ..TransformReport::default()
        })
    }

    fn batch_total(
        &self,
        cx: &mut TransformContext<'_, '_>,
    ) -> Result<Option<u64>, TransformError> {
        let total: i64 = cx
            .transaction
            .query_one("SELECT count(*) FROM public.customers", &[])?
            .get(0);
        Ok(Some(total.unsigned_abs()))
    }
}

/// Normalizes `(id, email)` rows and writes them back with one `UPDATE`.
fn write_normalized(
    cx: &mut TransformContext<'_, '_>,
    rows: &[Row],
) -> Result<TransformReport, TransformError> {
    let mut ids = Vec::with_capacity(rows.len());
    let mut emails = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.get(0);
        let email: Option<String> = row.get(1);
        let normalized = email
            .as_deref()
            .map(normalize_email)
            .transpose()
            .map_err(|reason| TransformError::InvalidRow {
                table: TABLE.into(),
                key: format!("id {id}"),
                path: "email".into(),
                reason,
            })?;
        ids.push(id);
        emails.push(normalized);
    }
    // pg_catalog.unnest, not an `unnest(bigint[])` another role may have put on the
    // search_path, which would fit better than pg_catalog's `unnest(anyarray)`
    // (docs/transforms.md, "SQL another role cannot hijack").
    let written = cx.transaction.execute(
        "UPDATE public.customers AS customer SET email_normalized = normalized.email
         FROM ROWS FROM (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::text[]))
              AS normalized(id, email)
         WHERE customer.id = normalized.id",
        &[&ids, &emails],
    )?;
    Ok(TransformReport {
        rows_read: rows.len() as u64,
        rows_written: written,
        ..TransformReport::default()
    })
}

/// `" Ann.Lee@Example.COM "` -> `"Ann.Lee@example.com"`: surrounding whitespace and a
/// `mailto:` prefix removed, the domain in lower case. The part before the `@` keeps
/// its case: mail servers may tell `Ann` from `ann`, DNS never tells domains apart so.
pub fn normalize_email(raw: &str) -> Result<String, String> {
    let address = raw.trim();
    let address = match address.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("mailto:") => &address[7..],
        _ => address,
    };
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(format!("`{raw}` has no @"));
    };
    if local.is_empty() || domain.is_empty() {
        return Err(format!("`{raw}` has nothing before or after its @"));
    }
    if address.chars().any(char::is_whitespace) {
        return Err(format!("`{raw}` has a space inside"));
    }
    Ok(format!("{local}@{}", domain.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::normalize_email;

    #[test]
    fn the_domain_is_lower_cased_and_the_local_part_kept() {
        assert_eq!(
            normalize_email("  Ann.Lee@Example.COM\t").unwrap(),
            "Ann.Lee@example.com"
        );
        assert_eq!(
            normalize_email("MAILTO:bob@Shop.Example").unwrap(),
            "bob@shop.example"
        );
        assert_eq!(
            normalize_email("\"a@b\"@Example.org").unwrap(),
            "\"a@b\"@example.org"
        );
    }

    #[test]
    fn an_address_without_both_halves_is_refused() {
        for bad in ["ann", "ann@", "@example.com", "ann lee@example.com", ""] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }
}
