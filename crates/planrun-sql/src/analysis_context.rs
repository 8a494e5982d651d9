//! What the statements before this one tell the analysis: which tables are new (created
//! earlier in this transaction, or earlier in the plan and not written since), whether
//! `lock_timeout` is set, and which constraints were added `NOT VALID` or validated;
//! and what the target's catalog says of column types, when it was read.

use std::collections::{HashMap, HashSet};

use pg_query::protobuf::TypeName;

use crate::column_types::parse_type;

/// State carried from statement to statement, and from stage to stage of a plan.
#[derive(Debug, Clone, Default)]
pub struct AnalysisContext {
    in_transaction: bool,
    lock_timeout: bool,
    lock_timeout_reported: bool,
    /// Created in the open transaction: no other session sees them until commit.
    created_in_transaction: HashSet<String>,
    /// Of those, the ones the transaction has written rows to.
    written_in_transaction: HashSet<String>,
    /// Created earlier and, as far as the plan shows, never written to: empty.
    empty: HashSet<String>,
    /// `(table, constraint)` added NOT VALID in the open transaction.
    not_valid_in_transaction: HashSet<(String, String)>,
    /// `(table, constraint) -> column` of `CHECK (column IS NOT NULL)` constraints.
    not_null_checks: Vec<(String, String, String)>,
    /// `(table, column)` with a validated `CHECK (column IS NOT NULL)`.
    validated_not_null: HashSet<(String, String)>,
    /// `(table, column) -> (type, as the catalog spells it)`: from the target's catalog
    /// (`planrun plan`), then as the plan's `ALTER COLUMN ... TYPE` changes them.
    column_types: HashMap<(String, String), (TypeName, Option<String>)>,
}

/// The name a relation is tracked by: without a `public.` prefix, so that `orders`
/// and `public.orders` are one table (planrun cannot resolve `search_path` offline).
pub fn relation_key(name: &str) -> String {
    name.strip_prefix("public.").unwrap_or(name).to_owned()
}

impl AnalysisContext {
    /// A context for statements run one at a time, outside a transaction block.
    pub fn new() -> AnalysisContext {
        AnalysisContext::default()
    }

    /// Records that `column` of `relation` has type `type_sql` (as `format_type` spells
    /// it) on the target, so that a type change is decided rather than flagged.
    pub fn set_column_type(&mut self, relation: &str, column: &str, type_sql: &str) {
        if let Some(parsed) = parse_type(type_sql) {
            self.column_types.insert(
                (relation_key(relation), column.to_owned()),
                (parsed, Some(type_sql.to_owned())),
            );
        }
    }

    pub(crate) fn column_type(&self, relation: &str, column: &str) -> Option<TypeName> {
        self.column_types
            .get(&(relation_key(relation), column.to_owned()))
            .map(|(parsed, _)| parsed.clone())
    }

    pub(crate) fn column_type_as_written(&self, relation: &str, column: &str) -> Option<String> {
        self.column_types
            .get(&(relation_key(relation), column.to_owned()))
            .and_then(|(_, written)| written.clone())
    }

    /// A type change the plan makes, when the old type was known.
    pub(crate) fn note_column_type(&mut self, relation: &str, column: &str, new: TypeName) {
        let key = (relation_key(relation), column.to_owned());
        if self.column_types.contains_key(&key) {
            self.column_types.insert(key, (new, None));
        }
    }

    /// Starts a stage: in a transaction block or not, with `lock_timeout` set by the
    /// plan or stage or not.
    pub fn begin_stage(&mut self, in_transaction: bool, lock_timeout: bool) {
        self.in_transaction = in_transaction;
        self.lock_timeout = lock_timeout;
        self.lock_timeout_reported = false;
    }

    /// Ends the stage: what it created becomes visible (and stays empty, as far as the
    /// plan shows, until something writes to it).
    pub fn end_stage(&mut self) {
        let written = std::mem::take(&mut self.written_in_transaction);
        self.empty.extend(
            self.created_in_transaction
                .drain()
                .filter(|relation| !written.contains(relation)),
        );
        self.not_valid_in_transaction.clear();
        self.in_transaction = false;
    }

    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// Whether a lock on `relation` endangers no one: it is invisible to other
    /// sessions, or empty.
    pub fn is_new(&self, relation: &str) -> bool {
        let key = relation_key(relation);
        self.created_in_transaction.contains(&key) || self.empty.contains(&key)
    }

    pub fn note_created(&mut self, relation: &str) {
        let key = relation_key(relation);
        if self.in_transaction {
            self.created_in_transaction.insert(key);
        } else {
            self.empty.insert(key);
        }
    }

    /// `relation` now holds rows (a table created in the open transaction stays
    /// invisible to others until commit, so it stays new until then).
    pub fn note_written(&mut self, relation: &str) {
        let key = relation_key(relation);
        if self.created_in_transaction.contains(&key) {
            self.written_in_transaction.insert(key);
        } else {
            self.empty.remove(&key);
        }
    }

    pub fn note_dropped(&mut self, relation: &str) {
        let key = relation_key(relation);
        self.created_in_transaction.remove(&key);
        self.empty.remove(&key);
    }

    pub fn set_lock_timeout(&mut self, set: bool) {
        self.lock_timeout = set;
    }

    pub fn lock_timeout(&self) -> bool {
        self.lock_timeout
    }

    /// True the first time in a stage: one missing-`lock_timeout` finding per stage.
    pub fn first_missing_lock_timeout(&mut self) -> bool {
        !std::mem::replace(&mut self.lock_timeout_reported, true)
    }

    pub(crate) fn note_not_valid(&mut self, table: &str, constraint: &str) {
        if self.in_transaction && !constraint.is_empty() {
            self.not_valid_in_transaction
                .insert((relation_key(table), constraint.to_owned()));
        }
    }

    pub(crate) fn added_not_valid_in_transaction(&self, table: &str, constraint: &str) -> bool {
        self.not_valid_in_transaction
            .contains(&(relation_key(table), constraint.to_owned()))
    }

    /// A `CHECK (column IS NOT NULL)` named `constraint`, validated now or not.
    pub(crate) fn note_not_null_check(
        &mut self,
        table: &str,
        constraint: &str,
        column: &str,
        validated: bool,
    ) {
        let table = relation_key(table);
        if validated {
            self.validated_not_null
                .insert((table.clone(), column.to_owned()));
        }
        self.not_null_checks
            .push((table, constraint.to_owned(), column.to_owned()));
    }

    pub(crate) fn note_validated(&mut self, table: &str, constraint: &str) {
        let table = relation_key(table);
        let columns: Vec<String> = self
            .not_null_checks
            .iter()
            .filter(|(t, c, _)| *t == table && c == constraint)
            .map(|(_, _, column)| column.clone())
            .collect();
        for column in columns {
            self.validated_not_null.insert((table.clone(), column));
        }
    }

    pub(crate) fn has_validated_not_null(&self, table: &str, column: &str) -> bool {
        self.validated_not_null
            .contains(&(relation_key(table), column.to_owned()))
    }
}
