//! What a statement is, read from its parse tree: what planrun must refuse in a
//! transactional stage, what must run on its own outside one, and what only psql can
//! run.

use pg_query::protobuf::{AlterTableType, ReindexObjectType, TransactionStmtKind};
use pg_query::NodeEnum;

/// The kind of one statement, as far as running it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementKind {
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...: planrun owns a stage's transaction.
    TransactionControl {
        what: &'static str,
    },
    /// Cannot run inside a transaction block (VACUUM, CREATE DATABASE, ALTER SYSTEM,
    /// DROP INDEX CONCURRENTLY, ...).
    NoTransaction {
        what: String,
    },
    /// `CREATE INDEX CONCURRENTLY`: outside a transaction, and a failed build leaves an
    /// invalid index behind under its name (the schema, when written).
    ConcurrentIndex {
        schema: Option<String>,
        name: Option<String>,
    },
    /// `ALTER TYPE ... ADD VALUE`: the new value cannot be used in the same transaction.
    AddsEnumValue {
        value: String,
    },
    /// `COPY ... FROM STDIN` / `TO STDOUT`: psql feeds or reads them, planrun does not.
    CopyStdio {
        from_stdin: bool,
    },
    /// `SET` (not `SET LOCAL`) or `RESET`: lasts for the session.
    SessionSetting,
    Other,
}

impl StatementKind {
    /// Why the statement cannot run inside a transaction block, if it cannot.
    pub fn outside_transaction_only(&self) -> Option<String> {
        match self {
            StatementKind::NoTransaction { what } => Some(what.clone()),
            StatementKind::ConcurrentIndex { .. } => Some("CREATE INDEX CONCURRENTLY".into()),
            _ => None,
        }
    }

    pub(crate) fn of(node: &NodeEnum) -> StatementKind {
        let no_transaction = |what: &str| StatementKind::NoTransaction {
            what: what.to_owned(),
        };
        match node {
            NodeEnum::TransactionStmt(stmt) => StatementKind::TransactionControl {
                what: transaction_word(stmt.kind()),
            },
            NodeEnum::IndexStmt(stmt) if stmt.concurrent => StatementKind::ConcurrentIndex {
                schema: stmt
                    .relation
                    .as_ref()
                    .map(|relation| relation.schemaname.clone())
                    .filter(|schema| !schema.is_empty()),
                name: Some(stmt.idxname.clone()).filter(|name| !name.is_empty()),
            },
            NodeEnum::DropStmt(stmt) if stmt.concurrent => {
                no_transaction("DROP INDEX CONCURRENTLY")
            }
            NodeEnum::ReindexStmt(stmt) => {
                let concurrently = stmt.params.iter().any(|param| {
                    matches!(&param.node, Some(NodeEnum::DefElem(def)) if def.defname == "concurrently")
                });
                let whole = matches!(
                    stmt.kind(),
                    ReindexObjectType::ReindexObjectSchema
                        | ReindexObjectType::ReindexObjectSystem
                        | ReindexObjectType::ReindexObjectDatabase
                );
                match (concurrently, whole) {
                    (true, _) => no_transaction("REINDEX CONCURRENTLY"),
                    (false, true) => no_transaction("REINDEX SCHEMA, SYSTEM or DATABASE"),
                    _ => StatementKind::Other,
                }
            }
            NodeEnum::AlterTableStmt(stmt) => {
                let detaches_concurrently = stmt.cmds.iter().any(|cmd| match &cmd.node {
                    Some(NodeEnum::AlterTableCmd(cmd)) => {
                        cmd.subtype() == AlterTableType::AtDetachPartition
                            && matches!(
                                cmd.def.as_deref().and_then(|def| def.node.as_ref()),
                                Some(NodeEnum::PartitionCmd(partition)) if partition.concurrent
                            )
                    }
                    _ => false,
                });
                if detaches_concurrently {
                    no_transaction("DETACH PARTITION CONCURRENTLY")
                } else {
                    StatementKind::Other
                }
            }
            NodeEnum::VacuumStmt(stmt) if stmt.is_vacuumcmd => no_transaction("VACUUM"),
            NodeEnum::CreatedbStmt(_) => no_transaction("CREATE DATABASE"),
            NodeEnum::DropdbStmt(_) => no_transaction("DROP DATABASE"),
            NodeEnum::AlterSystemStmt(_) => no_transaction("ALTER SYSTEM"),
            NodeEnum::CreateTableSpaceStmt(_) => no_transaction("CREATE TABLESPACE"),
            NodeEnum::DropTableSpaceStmt(_) => no_transaction("DROP TABLESPACE"),
            NodeEnum::CreateSubscriptionStmt(_) => no_transaction("CREATE SUBSCRIPTION"),
            NodeEnum::DropSubscriptionStmt(_) => no_transaction("DROP SUBSCRIPTION"),
            NodeEnum::AlterEnumStmt(stmt)
                if !stmt.new_val.is_empty() && stmt.old_val.is_empty() =>
            {
                StatementKind::AddsEnumValue {
                    value: stmt.new_val.clone(),
                }
            }
            NodeEnum::CopyStmt(stmt) if stmt.filename.is_empty() && !stmt.is_program => {
                StatementKind::CopyStdio {
                    from_stdin: stmt.is_from,
                }
            }
            NodeEnum::VariableSetStmt(stmt) if !stmt.is_local => StatementKind::SessionSetting,
            _ => StatementKind::Other,
        }
    }
}

fn transaction_word(kind: TransactionStmtKind) -> &'static str {
    match kind {
        TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart => "BEGIN",
        TransactionStmtKind::TransStmtCommit => "COMMIT",
        TransactionStmtKind::TransStmtRollback => "ROLLBACK",
        TransactionStmtKind::TransStmtSavepoint => "SAVEPOINT",
        TransactionStmtKind::TransStmtRelease => "RELEASE SAVEPOINT",
        TransactionStmtKind::TransStmtRollbackTo => "ROLLBACK TO SAVEPOINT",
        TransactionStmtKind::TransStmtPrepare => "PREPARE TRANSACTION",
        TransactionStmtKind::TransStmtCommitPrepared => "COMMIT PREPARED",
        TransactionStmtKind::TransStmtRollbackPrepared => "ROLLBACK PREPARED",
        TransactionStmtKind::Undefined => "a transaction command",
    }
}
