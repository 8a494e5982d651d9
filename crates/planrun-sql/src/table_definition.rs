//! Columns as `CREATE TABLE` and `ALTER TABLE ... ADD COLUMN` define them: types that
//! are hard to change later, defaults that make `ADD COLUMN` rewrite the table, and
//! the foreign keys, keys and `NOT NULL`s that come with a new column.

use pg_query::protobuf::{ColumnDef, ConstrType, CreateStmt};
use pg_query::NodeEnum;

use crate::column_types::{
    column_constraints, column_default, is_serial, is_small_integer, key_names, type_name,
    volatile_function,
};
use crate::lock_analysis::{qualified, Analyzer};
use crate::lock_mode::LockMode;
use crate::rule::Rule;

impl Analyzer<'_> {
    pub(crate) fn create_table(&mut self, stmt: &CreateStmt) {
        let Some(table) = stmt.relation.as_ref().map(qualified) else {
            return;
        };
        // With IF NOT EXISTS the table may be there already, with rows.
        if !stmt.if_not_exists {
            self.context.note_created(&table);
        }
        let mut primary_key: Vec<String> = Vec::new();
        for element in &stmt.table_elts {
            if let Some(NodeEnum::Constraint(constraint)) = &element.node {
                match constraint.contype() {
                    ConstrType::ConstrPrimary => primary_key.extend(key_names(&constraint.keys)),
                    ConstrType::ConstrForeign => self.references(constraint.pktable.as_ref()),
                    _ => {}
                }
            }
        }
        for element in &stmt.table_elts {
            if let Some(NodeEnum::ColumnDef(column)) = &element.node {
                let in_key = primary_key.contains(&column.colname);
                self.column_types(&table, column, in_key);
                for (kind, constraint) in column_constraints(column) {
                    if kind == ConstrType::ConstrForeign {
                        self.references(constraint.pktable.as_ref());
                    }
                }
            }
        }
    }

    /// A foreign key's referenced table: SHARE ROW EXCLUSIVE, to add the triggers.
    fn references(&mut self, referenced: Option<&pg_query::protobuf::RangeVar>) {
        if let Some(referenced) = referenced {
            self.lock(&qualified(referenced), LockMode::ShareRowExclusive);
        }
    }

    /// The rules about a column's type; they hold on new tables too.
    pub(crate) fn column_types(&mut self, table: &str, column: &ColumnDef, in_primary_key: bool) {
        let Some(declared) = &column.type_name else {
            return;
        };
        let name = type_name(declared);
        let constraints = column_constraints(column);
        let is_key = in_primary_key
            || constraints.iter().any(|(kind, _)| {
                matches!(kind, ConstrType::ConstrPrimary | ConstrType::ConstrIdentity)
            });
        let place = format!("`{}` of `{table}`", column.colname);
        if is_key && is_small_integer(&name) {
            self.finding(
                Rule::PreferBigintPrimaryKey,
                Some(table),
                format!("key column {place} is {name}"),
            );
        }
        match name.as_str() {
            "bpchar" => self.finding(
                Rule::BanCharField,
                Some(table),
                format!("column {place} is char(n)"),
            ),
            "timestamp" => self.finding(
                Rule::PreferTimestamptz,
                Some(table),
                format!("column {place} is timestamp without time zone"),
            ),
            _ => {}
        }
    }

    /// `ALTER TABLE ... ADD COLUMN`: ACCESS EXCLUSIVE, and a rewrite, a scan or a
    /// failure depending on the default and constraints.
    pub(crate) fn add_column(&mut self, table: &str, column: &ColumnDef) {
        self.lock(table, LockMode::AccessExclusive);
        let constraints = column_constraints(column);
        let in_key = constraints
            .iter()
            .any(|(kind, _)| *kind == ConstrType::ConstrPrimary);
        self.column_types(table, column, in_key);
        let name = column.type_name.as_ref().map(type_name).unwrap_or_default();
        let place = format!("`{}` of `{table}`", column.colname);
        let default = column_default(column);
        let has = |wanted: ConstrType| constraints.iter().any(|(kind, _)| *kind == wanted);
        let volatile = default.and_then(volatile_function);
        let fills_itself = is_serial(&name) || has(ConstrType::ConstrIdentity);
        if let Some(function) = volatile.clone().or(fills_itself.then(|| name.clone())) {
            self.rewrite(table);
            self.finding(
                Rule::AddingFieldWithVolatileDefault,
                Some(table),
                format!("column {place} gets a value from {function} for every row: a rewrite"),
            );
        }
        let stored_generated = constraints.iter().any(|(kind, constraint)| {
            *kind == ConstrType::ConstrGenerated && constraint.generated_kind != "v"
        });
        if stored_generated {
            self.rewrite(table);
            self.finding(
                Rule::AddingStoredGeneratedField,
                Some(table),
                format!("stored generated column {place}"),
            );
        }
        let filled = default.is_some() || fills_itself || stored_generated;
        if has(ConstrType::ConstrNotnull) && !filled {
            self.finding(
                Rule::AddingRequiredField,
                Some(table),
                format!("column {place} is NOT NULL with no default"),
            );
        }
        for (kind, constraint) in constraints {
            match kind {
                ConstrType::ConstrForeign => {
                    self.references(constraint.pktable.as_ref());
                    if !constraint.skip_validation {
                        self.scan(table);
                        self.finding(
                            Rule::AddingForeignKeyConstraint,
                            Some(table),
                            format!("column {place} REFERENCES without NOT VALID"),
                        );
                    }
                }
                ConstrType::ConstrPrimary => {
                    self.scan(table);
                    self.finding(
                        Rule::AddingPrimaryKeyConstraint,
                        Some(table),
                        format!("column {place} is added as PRIMARY KEY"),
                    );
                }
                ConstrType::ConstrUnique => {
                    self.scan(table);
                    self.finding(
                        Rule::DisallowedUniqueConstraint,
                        Some(table),
                        format!("column {place} is added UNIQUE"),
                    );
                }
                _ => {}
            }
        }
    }
}
