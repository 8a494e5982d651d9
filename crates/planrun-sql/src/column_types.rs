//! What a column definition says about locks and rewrites: its type (to spot types
//! that are hard to change later), whether its default is volatile (which makes
//! `ADD COLUMN` rewrite the table), and whether a type change is binary-coercible.

use pg_query::protobuf::{ColumnDef, ConstrType, Constraint, Node, TypeName};
use pg_query::{NodeEnum, NodeRef};

/// Functions whose value is fixed for a statement (immutable or stable): a default
/// made of them is evaluated once and stored in the catalog, no rewrite (PostgreSQL 11+).
const NOT_VOLATILE: &[&str] = &[
    "now",
    "statement_timestamp",
    "transaction_timestamp",
    "current_date",
    "current_setting",
    "lower",
    "upper",
    "length",
    "md5",
    "abs",
    "round",
    "concat",
    "coalesce",
    "make_date",
    "make_interval",
    "to_jsonb",
    "to_json",
    "jsonb_build_object",
    "json_build_object",
    "jsonb_build_array",
    "array_fill",
    "to_timestamp",
    "timezone",
];

/// The last part of a type's name, as the parser spells it (`int4`, `varchar`, ...).
pub(crate) fn type_name(type_name: &TypeName) -> String {
    type_name
        .names
        .iter()
        .filter_map(|name| match &name.node {
            Some(NodeEnum::String(text)) => Some(text.sval.clone()),
            _ => None,
        })
        .next_back()
        .unwrap_or_default()
}

/// A 32- or 16-bit integer type, serial ones included.
pub(crate) fn is_small_integer(name: &str) -> bool {
    matches!(
        name,
        "int4"
            | "int2"
            | "int"
            | "integer"
            | "smallint"
            | "serial"
            | "serial4"
            | "smallserial"
            | "serial2"
    )
}

pub(crate) fn is_serial(name: &str) -> bool {
    matches!(
        name,
        "serial" | "serial4" | "serial8" | "bigserial" | "smallserial" | "serial2"
    )
}

/// Whether `ALTER COLUMN ... TYPE` to `target` rewrites the table. Without the catalog
/// planrun cannot see the old type: a change to `text`, `varchar` or unconstrained
/// `numeric` without `USING` is taken to come from a type in the same family (widening
/// `varchar(n)`, `varchar` to `text`), which PostgreSQL does without a rewrite.
pub(crate) fn type_change_rewrites(target: &TypeName, using: bool) -> bool {
    if using {
        return true;
    }
    let name = type_name(target);
    let unconstrained = target.typmods.is_empty();
    !matches!(
        (name.as_str(), unconstrained),
        ("text", _) | ("varchar", _) | ("numeric", true) | ("citext", _)
    )
}

/// The constraints of a column definition, as `(type, constraint)`.
pub(crate) fn column_constraints(column: &ColumnDef) -> Vec<(ConstrType, &Constraint)> {
    column
        .constraints
        .iter()
        .filter_map(|node| match &node.node {
            Some(NodeEnum::Constraint(constraint)) => Some((constraint.contype(), &**constraint)),
            _ => None,
        })
        .collect()
}

/// The default expression of a column definition, given inline or as a constraint.
pub(crate) fn column_default(column: &ColumnDef) -> Option<&Node> {
    column.raw_default.as_deref().or_else(|| {
        column_constraints(column)
            .into_iter()
            .find(|(kind, _)| *kind == ConstrType::ConstrDefault)
            .and_then(|(_, constraint)| constraint.raw_expr.as_deref())
    })
}

/// The first function in `expr` that may be volatile: one known to be, or one planrun
/// does not know (it cannot look up user functions offline).
pub(crate) fn volatile_function(expr: &Node) -> Option<String> {
    let node = expr.node.as_ref()?;
    node.nodes()
        .into_iter()
        .find_map(|(child, ..)| match child {
            NodeRef::FuncCall(call) => {
                let name = call
                    .funcname
                    .iter()
                    .filter_map(|part| match &part.node {
                        Some(NodeEnum::String(text)) => Some(text.sval.as_str()),
                        _ => None,
                    })
                    .next_back()
                    .unwrap_or_default();
                (!NOT_VOLATILE.contains(&name)).then(|| format!("{name}()"))
            }
            _ => None,
        })
}

/// The column `CHECK (column IS NOT NULL)` is about, if that is what `expr` says.
pub(crate) fn not_null_check_column(expr: &Node) -> Option<String> {
    let Some(NodeEnum::NullTest(test)) = &expr.node else {
        return None;
    };
    if test.nulltesttype() != pg_query::protobuf::NullTestType::IsNotNull {
        return None;
    }
    match test.arg.as_deref().and_then(|arg| arg.node.as_ref()) {
        Some(NodeEnum::ColumnRef(column)) => {
            column
                .fields
                .iter()
                .rev()
                .find_map(|field| match &field.node {
                    Some(NodeEnum::String(text)) => Some(text.sval.clone()),
                    _ => None,
                })
        }
        _ => None,
    }
}

/// The column names of a constraint's key list.
pub(crate) fn key_names(keys: &[Node]) -> Vec<String> {
    keys.iter()
        .filter_map(|key| match &key.node {
            Some(NodeEnum::String(text)) => Some(text.sval.clone()),
            _ => None,
        })
        .collect()
}
