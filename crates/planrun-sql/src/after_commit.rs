//! What may run after a stage has committed, while the application works on its
//! result: only statements whose every lock can be read from their text. `ALTER TABLE
//! ... VALIDATE CONSTRAINT`, `ANALYZE`, settings and a named `CREATE INDEX
//! CONCURRENTLY` on plain columns (no expression, a predicate calling only
//! `pg_catalog.` functions) qualify. Any other statement may
//! call a function, run SQL built at run time (`EXECUTE` in a `DO` block) or fire a
//! trigger, none of which the lock analysis sees, so it is named as unseen, not
//! assumed to block no one.

use pg_query::protobuf::AlterTableType;
use pg_query::{NodeEnum, NodeRef};

use crate::error::SqlError;
use crate::script::parse_script;

/// A statement of an after-commit step whose locks cannot be known offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnseenStatement {
    /// 1-based line of the script where it starts.
    pub line: usize,
    /// What it is, in a few words ("a DO block", "INSERT", ...).
    pub what: String,
}

/// The statements of `text` that may not run after a commit because what they lock
/// cannot be read from their text.
pub fn unseen_after_commit(text: &str) -> Result<Vec<UnseenStatement>, SqlError> {
    let mut unseen = Vec::new();
    for statement in parse_script(text)? {
        let Ok(parsed) = pg_query::parse(statement.text, 0) else {
            continue;
        };
        for raw in &parsed.protobuf.stmts {
            let Some(node) = raw.stmt.as_ref().and_then(|node| node.node.as_ref()) else {
                continue;
            };
            if let Some(what) = why_unseen(node) {
                unseen.push(UnseenStatement {
                    line: statement.line(text),
                    what,
                });
            }
        }
    }
    Ok(unseen)
}

fn why_unseen(node: &NodeEnum) -> Option<String> {
    match node {
        NodeEnum::AlterTableStmt(stmt) => {
            let only_validates = stmt.cmds.iter().all(|cmd| {
                matches!(&cmd.node, Some(NodeEnum::AlterTableCmd(cmd))
                    if cmd.subtype() == AlterTableType::AtValidateConstraint)
            });
            (!only_validates).then(|| "ALTER TABLE other than VALIDATE CONSTRAINT".to_owned())
        }
        NodeEnum::IndexStmt(stmt) if stmt.concurrent => concurrent_index_unseen(stmt, node),
        NodeEnum::VacuumStmt(stmt) if !stmt.is_vacuumcmd => None,
        NodeEnum::VariableSetStmt(_) | NodeEnum::VariableShowStmt(_) => None,
        NodeEnum::SelectStmt(_) => calls_outside_pg_catalog(node),
        NodeEnum::DoStmt(_) => Some("a DO block (SQL it builds at run time is not seen)".into()),
        other => Some(statement_name(other)),
    }
}

/// A concurrent index build is read whole when it is named (a failed build leaves an
/// invalid index the next run must find and drop), indexes columns only (an
/// expression may call any function) and its predicate calls only `pg_catalog.`.
fn concurrent_index_unseen(
    stmt: &pg_query::protobuf::IndexStmt,
    node: &NodeEnum,
) -> Option<String> {
    if stmt.idxname.is_empty() {
        return Some(
            "CREATE INDEX CONCURRENTLY without a name (an invalid index a failed build leaves could not be found and built again)".into(),
        );
    }
    let expression = stmt.index_params.iter().any(|param| {
        !matches!(&param.node, Some(NodeEnum::IndexElem(elem)) if elem.expr.is_none() && !elem.name.is_empty())
    });
    if expression {
        return Some("CREATE INDEX CONCURRENTLY on an expression (it may call functions)".into());
    }
    calls_outside_pg_catalog(node)
}

/// A query is read whole when every function it calls is written `pg_catalog.`: one
/// of PostgreSQL's own, not a function of the database's that may lock anything.
fn calls_outside_pg_catalog(node: &NodeEnum) -> Option<String> {
    node.nodes().into_iter().find_map(|(node, ..)| match node {
        NodeRef::FuncCall(call) => {
            let names: Vec<&str> = call
                .funcname
                .iter()
                .filter_map(|name| match &name.node {
                    Some(NodeEnum::String(part)) => Some(part.sval.as_str()),
                    _ => None,
                })
                .collect();
            match names.as_slice() {
                ["pg_catalog", _] => None,
                _ => Some(format!(
                    "a call of `{}` (only `pg_catalog.` functions are known to lock nothing more)",
                    names.join(".")
                )),
            }
        }
        _ => None,
    })
}

fn statement_name(node: &NodeEnum) -> String {
    let debug = format!("{node:?}");
    let name = debug.split('(').next().unwrap_or("statement");
    format!(
        "{} (it may call functions or fire triggers)",
        name.trim_end_matches("Stmt").to_uppercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<(usize, String)> {
        unseen_after_commit(text)
            .unwrap()
            .into_iter()
            .map(|statement| (statement.line, statement.what))
            .collect()
    }

    #[test]
    fn validation_analyze_and_settings_are_seen_whole() {
        let text = "SET lock_timeout = '1s';\n\
                    ALTER TABLE ONLY public.children VALIDATE CONSTRAINT children_parent_fkey;\n\
                    ANALYZE public.children;\n\
                    SELECT pg_catalog.pg_sleep(0) FROM public.children;\n\
                    CREATE INDEX CONCURRENTLY IF NOT EXISTS children_parent ON public.children (parent_id) WHERE parent_id IS NOT NULL;\n";
        assert_eq!(lines(text), vec![]);
    }

    #[test]
    fn a_concurrent_index_is_seen_whole_only_named_on_columns_with_a_plain_predicate() {
        let text = "CREATE INDEX CONCURRENTLY ON t (a);\n\
                    CREATE INDEX CONCURRENTLY t_lower ON t (lower(a));\n\
                    CREATE INDEX CONCURRENTLY t_some ON t (a) WHERE check_it(a);\n\
                    CREATE INDEX t_plain ON t (a);\n";
        let found = lines(text);
        assert_eq!(
            found.iter().map(|(line, _)| *line).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert!(found[0].1.contains("without a name"), "{found:?}");
        assert!(found[1].1.contains("on an expression"), "{found:?}");
        assert!(found[2].1.contains("`check_it`"), "{found:?}");
        assert!(found[3].1.starts_with("INDEX"), "{found:?}");
    }

    #[test]
    fn dynamic_sql_functions_and_other_alters_are_named_with_their_line() {
        let text = "ALTER TABLE t VALIDATE CONSTRAINT c;\n\
                    DO $$ BEGIN EXECUTE 'LOCK TABLE t IN ACCESS EXCLUSIVE MODE'; END $$;\n\
                    SELECT lock_everything();\n\
                    ALTER TABLE t VALIDATE CONSTRAINT c, ADD COLUMN x int;\n";
        let found = lines(text);
        assert_eq!(
            found.iter().map(|(line, _)| *line).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        assert!(found[0].1.starts_with("a DO block"), "{found:?}");
        assert!(found[1].1.contains("`lock_everything`"), "{found:?}");
        assert!(found[2].1.starts_with("ALTER TABLE other"), "{found:?}");
    }
}
