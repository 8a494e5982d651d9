//! The [`Transform`] trait and what passes between a transform and the engine.

use serde::Serialize;

use crate::progress::Progress;

/// A named piece of native code that a plan step runs, e.g. `memoir.split_chapters`.
pub trait Transform: Send + Sync {
    /// The name plans use; by convention `<crate>.<verb>`.
    fn name(&self) -> &'static str;
    /// Part of every stage checksum: bump it when the transform's output changes, so
    /// that the ledger shows drift on stages it already ran.
    fn version(&self) -> &'static str;
    /// One line for `planrun transforms`.
    fn summary(&self) -> &'static str;
    /// Problems with a step's `params`, as `(key, message)`, found offline by
    /// `planrun check`.
    fn check_params(&self, _params: &toml::Table) -> Vec<(String, String)> {
        Vec::new()
    }
    /// The tables the transform reads to transform or writes, with the lock each
    /// needs from before the first read to the commit. The engine takes them at the
    /// stage's start, with the stage's retries, and fails the stage without running
    /// anything when it cannot: a transform never runs unprotected. Declare the
    /// weakest mode that is safe: EXCLUSIVE on a table read and then changed or
    /// dropped (writers wait, readers do not), ACCESS EXCLUSIVE only on a table no
    /// one may read meanwhile (a new one being filled).
    fn locks(&self, _params: &toml::Table) -> Vec<planrun_plan::TableLock> {
        Vec::new()
    }
    /// The tables whose rows the transform changes, schema-qualified. `planrun
    /// verify` does not run again an earlier stage's check that reads one of them once
    /// this transform has run in a later stage: it reports the check as superseded.
    /// By default every table of [`locks`](Self::locks) and
    /// [`sources`](Self::sources), since a transform that does not say which tables it
    /// only reads may change any of them; declare the exact list so that the checks of
    /// what it only reads keep running.
    fn writes(&self, params: &toml::Table) -> Vec<String> {
        let declared = self.locks(params).into_iter().map(|lock| lock.table);
        let sources = self.sources(params).into_iter().map(|source| source.table);
        let mut tables: Vec<String> = Vec::new();
        for table in declared.chain(sources) {
            if !tables.contains(&table) {
                tables.push(table);
            }
        }
        tables
    }
    /// Does the work inside the stage's transaction.
    fn run(
        &self,
        context: &mut TransformContext<'_, '_>,
    ) -> Result<TransformReport, TransformError>;

    /// Whether the transform can run with `mode = "batched"`.
    fn supports_batches(&self) -> bool {
        false
    }

    /// Batched mode: processes the next at most `limit` source rows whose key is
    /// greater than `after` (all rows when `None`), in key order, inside the batch's
    /// transaction. The engine commits the batch together with the returned
    /// checkpoint; a batch that processed no row ends the loop.
    fn run_batch(
        &self,
        _context: &mut TransformContext<'_, '_>,
        _after: Option<i64>,
        _limit: u64,
    ) -> Result<BatchOutcome, TransformError> {
        Err(TransformError::Params(format!(
            "transform `{}` does not support mode = \"batched\"",
            self.name()
        )))
    }

    /// Batched mode: the tables the transform reads rows from, each with its integer
    /// key column. While a batched stage is under way the engine records, with a
    /// trigger on each, the keys of the rows the application inserts, updates or
    /// deletes, and hands them to [`redo_keys`](Self::redo_keys); batched mode needs
    /// at least one.
    fn sources(&self, _params: &toml::Table) -> Vec<SourceTable> {
        Vec::new()
    }

    /// Batched mode: transforms the source rows with these keys again, as they are
    /// now, replacing whatever the transform wrote for them before; a key no longer
    /// in the source leaves nothing behind. Must be idempotent: a key may come more
    /// than once, or before its batch.
    fn redo_keys(
        &self,
        _context: &mut TransformContext<'_, '_>,
        _keys: &[i64],
    ) -> Result<TransformReport, TransformError> {
        Err(TransformError::Params(format!(
            "transform `{}` cannot redo changed rows, so it cannot run batched",
            self.name()
        )))
    }

    /// After a batched step: the tables, each with the column holding the key, whose
    /// rows of a key are all the transform reads to write its output for that key.
    /// When every one is a source of the batched step or a table its per-key checks
    /// watch, the engine runs the transform in batches
    /// ([`run_batch`](Self::run_batch), the first with `after = None` replacing
    /// everything it wrote before) before the cutover, outside its locks, and under
    /// them [`redo_keys`](Self::redo_keys) for the keys changed since, instead of
    /// [`run`](Self::run) over the whole table. Empty (the default): it runs whole
    /// at the cutover.
    fn per_key_inputs(&self, _params: &toml::Table) -> Vec<SourceTable> {
        Vec::new()
    }

    /// `planrun reset`: removes everything the transform wrote in batched mode, so
    /// that the database is as it was before the stage started. Returns what it did.
    fn reset(
        &self,
        _context: &mut TransformContext<'_, '_>,
    ) -> Result<TransformReport, TransformError> {
        Err(TransformError::Params(format!(
            "transform `{}` cannot undo a half-done batched stage",
            self.name()
        )))
    }

    /// Batched mode: the number of source rows in all, for progress, when cheap to know.
    fn batch_total(
        &self,
        _context: &mut TransformContext<'_, '_>,
    ) -> Result<Option<u64>, TransformError> {
        Ok(None)
    }
}

/// A table a batched transform reads, and its integer key column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTable {
    /// Schema-qualified, e.g. `public.chapters`.
    pub table: String,
    pub key: String,
}

impl SourceTable {
    pub fn new(table: impl Into<String>, key: impl Into<String>) -> SourceTable {
        SourceTable {
            table: table.into(),
            key: key.into(),
        }
    }
}

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The key of the last source row processed; `None` when no row was left.
    pub last_key: Option<i64>,
    pub report: TransformReport,
}

/// What a running transform is given.
pub struct TransformContext<'a, 't> {
    /// The stage's transaction (a savepoint in a dry run): commit is the engine's.
    pub transaction: &'a mut postgres::Transaction<'t>,
    /// The step's `params` table.
    pub params: &'a toml::Table,
    pub stage_id: &'a str,
    /// The ledger's id for this run, for rows a transform records (quarantine).
    pub run_id: i64,
    pub progress: &'a dyn Progress,
}

/// What a transform did, for the report and the ledger.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct TransformReport {
    pub rows_read: u64,
    pub rows_written: u64,
    /// Rows set aside instead of migrated (see `on_invalid = "quarantine"`).
    pub rows_quarantined: u64,
    /// Short facts worth showing, e.g. "images column type: json".
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransformError {
    /// A source row the transform cannot migrate: which row, where in it, and why.
    #[error("invalid row in {table} ({key}): {path}: {reason}")]
    InvalidRow {
        table: String,
        key: String,
        path: String,
        reason: String,
    },
    #[error("invalid params: {0}")]
    Params(String),
    /// The database is not in the shape the transform needs.
    #[error("{0}")]
    Schema(String),
    #[error(transparent)]
    Database(#[from] postgres::Error),
}
