//! `ALTER TABLE`, subcommand by subcommand, with the lock levels of PostgreSQL's
//! `ALTER TABLE` reference page: the statement takes the strongest mode any of its
//! subcommands needs.

use pg_query::protobuf::{
    AlterTableCmd, AlterTableStmt, AlterTableType, ColumnDef, ConstrType, Constraint,
};
use pg_query::NodeEnum;

use crate::column_types::{not_null_check_column, type_change, type_display, TypeChange};
use crate::lock_analysis::{qualified, Analyzer};
use crate::lock_mode::LockMode;
use crate::rule::Rule;

impl Analyzer<'_> {
    pub(crate) fn alter_table(&mut self, stmt: &AlterTableStmt) {
        let Some(table) = stmt.relation.as_ref().map(qualified) else {
            return;
        };
        for cmd in &stmt.cmds {
            if let Some(NodeEnum::AlterTableCmd(cmd)) = &cmd.node {
                self.alter_table_cmd(&table, cmd);
            }
        }
    }

    fn alter_table_cmd(&mut self, table: &str, cmd: &AlterTableCmd) {
        use AlterTableType::*;
        let def = cmd.def.as_deref().and_then(|def| def.node.as_ref());
        match (cmd.subtype(), def) {
            (AtAddColumn, Some(NodeEnum::ColumnDef(column))) => self.add_column(table, column),
            (AtDropColumn, _) => {
                self.lock(table, LockMode::AccessExclusive);
                self.finding(
                    Rule::BanDropColumn,
                    Some(table),
                    format!("DROP COLUMN `{}` of `{table}`", cmd.name),
                );
            }
            (AtAlterColumnType, Some(NodeEnum::ColumnDef(column))) => {
                self.alter_column_type(table, &cmd.name, column)
            }
            (AtSetNotNull, _) => self.set_not_null(table, &cmd.name),
            (AtAddConstraint, Some(NodeEnum::Constraint(constraint))) => {
                self.add_constraint(table, constraint)
            }
            (AtValidateConstraint, _) => self.validate_constraint(table, &cmd.name),
            (AtSetLogged | AtSetUnLogged | AtSetTableSpace | AtSetAccessMethod, _) => {
                self.lock(table, LockMode::AccessExclusive);
                self.rewrite(table);
                self.finding(
                    Rule::TableRewrite,
                    Some(table),
                    format!("ALTER TABLE `{table}` {}", rewrite_words(cmd.subtype())),
                );
            }
            (
                AtSetStatistics | AtSetOptions | AtResetOptions | AtSetRelOptions
                | AtResetRelOptions | AtReplaceRelOptions | AtClusterOn | AtDropCluster,
                _,
            ) => self.lock(table, LockMode::ShareUpdateExclusive),
            (
                AtEnableTrig | AtEnableAlwaysTrig | AtEnableReplicaTrig | AtDisableTrig
                | AtEnableTrigAll | AtDisableTrigAll | AtEnableTrigUser | AtDisableTrigUser,
                _,
            ) => self.lock(table, LockMode::ShareRowExclusive),
            (AtAttachPartition, Some(NodeEnum::PartitionCmd(partition))) => {
                self.lock(table, LockMode::ShareUpdateExclusive);
                if let Some(name) = partition.name.as_ref().map(qualified) {
                    self.lock(&name, LockMode::AccessExclusive);
                    self.scan(&name);
                }
            }
            (AtDetachPartition, Some(NodeEnum::PartitionCmd(partition))) => {
                let mode = if partition.concurrent {
                    LockMode::ShareUpdateExclusive
                } else {
                    LockMode::AccessExclusive
                };
                self.lock(table, mode);
                if let Some(name) = partition.name.as_ref().map(qualified) {
                    self.lock(&name, LockMode::AccessExclusive);
                }
            }
            _ => self.lock(table, LockMode::AccessExclusive),
        }
    }

    fn alter_column_type(&mut self, table: &str, name: &str, column: &ColumnDef) {
        self.lock(table, LockMode::AccessExclusive);
        let Some(target) = &column.type_name else {
            return;
        };
        let old = self.context.column_type(table, name);
        let change = type_change(old.as_ref(), target, column.raw_default.is_some());
        let new = type_display(target);
        let detail = match (&change, &old) {
            (TypeChange::NoRewrite, _) => None,
            (TypeChange::Rewrite, Some(old)) => Some(format!(
                "`{name}` of `{table}` changes from {} to {new}: every row is checked and rewritten",
                self.context.column_type_as_written(table, name).unwrap_or_else(|| type_display(old))
            )),
            (TypeChange::Rewrite, None) => Some(format!(
                "`{name}` of `{table}` changes to {new}: not binary-coercible"
            )),
            (TypeChange::DependsOnOldType, _) => Some(format!(
                "`{name}` of `{table}` changes to {new}: free or a rewrite depending on its old type, which the analysis cannot see offline (`planrun plan` reads it from the target)"
            )),
        };
        if change == TypeChange::Rewrite {
            self.rewrite(table);
        }
        if let Some(detail) = detail {
            self.finding(Rule::ChangingColumnType, Some(table), detail);
        }
        self.context.note_column_type(table, name, target.clone());
    }

    fn set_not_null(&mut self, table: &str, column: &str) {
        self.lock(table, LockMode::AccessExclusive);
        if !self.context.has_validated_not_null(table, column) {
            self.scan(table);
            self.finding(
                Rule::AddingNotNullableField,
                Some(table),
                format!("SET NOT NULL on `{column}` of `{table}` with no validated CHECK ({column} IS NOT NULL)"),
            );
        }
    }

    fn validate_constraint(&mut self, table: &str, name: &str) {
        self.lock(table, LockMode::ShareUpdateExclusive);
        self.scan(table);
        if self.context.added_not_valid_in_transaction(table, name) {
            self.finding(
                Rule::ValidateInSameTransaction,
                Some(table),
                format!(
                    "VALIDATE CONSTRAINT `{name}` of `{table}` in the transaction that added it"
                ),
            );
        }
        self.context.note_validated(table, name);
    }

    fn add_constraint(&mut self, table: &str, constraint: &Constraint) {
        let name = &constraint.conname;
        let validated = !constraint.skip_validation;
        let described = if name.is_empty() {
            format!("on `{table}`")
        } else {
            format!("`{name}` on `{table}`")
        };
        match constraint.contype() {
            ConstrType::ConstrForeign => {
                self.lock(table, LockMode::ShareRowExclusive);
                if let Some(referenced) = constraint.pktable.as_ref().map(qualified) {
                    self.lock(&referenced, LockMode::ShareRowExclusive);
                }
                if validated {
                    self.scan(table);
                    self.finding(
                        Rule::AddingForeignKeyConstraint,
                        Some(table),
                        format!("FOREIGN KEY {described} without NOT VALID"),
                    );
                } else {
                    self.context.note_not_valid(table, name);
                }
            }
            ConstrType::ConstrCheck => {
                self.lock(table, LockMode::AccessExclusive);
                if let Some(column) = constraint
                    .raw_expr
                    .as_deref()
                    .and_then(not_null_check_column)
                {
                    self.context
                        .note_not_null_check(table, name, &column, validated);
                }
                if validated {
                    self.scan(table);
                    self.finding(
                        Rule::ConstraintMissingNotValid,
                        Some(table),
                        format!("CHECK {described} without NOT VALID"),
                    );
                } else {
                    self.context.note_not_valid(table, name);
                }
            }
            kind @ (ConstrType::ConstrUnique | ConstrType::ConstrPrimary) => {
                self.lock(table, LockMode::AccessExclusive);
                if !constraint.indexname.is_empty() {
                    return;
                }
                self.scan(table);
                let (rule, what) = if kind == ConstrType::ConstrPrimary {
                    (Rule::AddingPrimaryKeyConstraint, "PRIMARY KEY")
                } else {
                    (Rule::DisallowedUniqueConstraint, "UNIQUE")
                };
                self.finding(
                    rule,
                    Some(table),
                    format!("{what} {described} builds its index without USING INDEX"),
                );
            }
            ConstrType::ConstrExclusion => {
                self.lock(table, LockMode::AccessExclusive);
                self.scan(table);
            }
            _ => self.lock(table, LockMode::AccessExclusive),
        }
    }
}

fn rewrite_words(subtype: AlterTableType) -> &'static str {
    match subtype {
        AlterTableType::AtSetLogged => "SET LOGGED writes the whole table to the WAL",
        AlterTableType::AtSetUnLogged => "SET UNLOGGED rewrites the table",
        AlterTableType::AtSetTableSpace => "SET TABLESPACE copies the table",
        _ => "SET ACCESS METHOD rewrites the table",
    }
}
