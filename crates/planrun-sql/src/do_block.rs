//! `DO` blocks: the SQL statements of a PL/pgSQL `DO` body are analysed as if they
//! were written in the script, in order, so that an `ALTER TABLE` wrapped in
//! `DO $$ BEGIN ... END $$` takes the same locks and raises the same findings as the
//! bare statement. The body is parsed by PostgreSQL's own PL/pgSQL parser
//! (`pg_query::parse_plpgsql`); what `EXECUTE` builds at run time is not in the text
//! and stays unseen, as does a `DO` in another language.

use pg_query::protobuf::DoStmt;
use pg_query::NodeEnum;
use serde_json::Value;

use crate::lock_analysis::Analyzer;

impl Analyzer<'_> {
    pub(crate) fn do_block(&mut self, stmt: &DoStmt) {
        for text in do_block_statements(stmt) {
            let Ok(parsed) = pg_query::parse(&text, 0) else {
                continue;
            };
            for raw in &parsed.protobuf.stmts {
                if let Some(node) = raw.stmt.as_ref().and_then(|node| node.node.as_ref()) {
                    if !matches!(node, NodeEnum::DoStmt(_)) {
                        self.statement(node);
                    }
                }
            }
        }
    }
}

/// The static SQL statements of a PL/pgSQL `DO` block, in the order written; none for
/// a block in another language or one that does not parse.
pub(crate) fn do_block_statements(stmt: &DoStmt) -> Vec<String> {
    let Some(body) = plpgsql_body(stmt) else {
        return Vec::new();
    };
    let mut tag = String::from("planrun_do");
    while body.contains(&format!("${tag}$")) {
        tag.push('_');
    }
    let function = format!(
        "CREATE FUNCTION planrun_do() RETURNS void LANGUAGE plpgsql AS ${tag}${body}${tag}$"
    );
    let Ok(tree) = pg_query::parse_plpgsql(&function) else {
        return Vec::new();
    };
    let mut statements = Vec::new();
    embedded_sql(&tree, &mut statements);
    statements
}

/// The body of a `DO` block written in PL/pgSQL (the default language), if it is one.
fn plpgsql_body(stmt: &DoStmt) -> Option<String> {
    let mut body = None;
    let mut language = "plpgsql".to_owned();
    for arg in &stmt.args {
        let Some(NodeEnum::DefElem(element)) = arg.node.as_ref() else {
            continue;
        };
        let Some(NodeEnum::String(value)) = element.arg.as_ref().and_then(|a| a.node.as_ref())
        else {
            continue;
        };
        match element.defname.as_str() {
            "as" => body = Some(value.sval.clone()),
            "language" => language = value.sval.to_lowercase(),
            _ => {}
        }
    }
    body.filter(|_| language == "plpgsql")
}

/// Every static SQL statement (`PLpgSQL_stmt_execsql`) of a PL/pgSQL parse tree, in
/// the order written, nested blocks, branches and loops included.
fn embedded_sql(tree: &Value, out: &mut Vec<String>) {
    match tree {
        Value::Object(object) => {
            for (key, value) in object {
                if key == "PLpgSQL_stmt_execsql" {
                    if let Some(query) = value
                        .pointer("/sqlstmt/PLpgSQL_expr/query")
                        .and_then(Value::as_str)
                    {
                        out.push(query.to_owned());
                    }
                } else {
                    embedded_sql(value, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| embedded_sql(item, out)),
        _ => {}
    }
}
