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

/// What `ALTER COLUMN ... TYPE` does to the table's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeChange {
    /// Binary-coercible from the old type: only the catalog changes.
    NoRewrite,
    /// Every row is converted (and checked) into a new copy of the table.
    Rewrite,
    /// Free from some old types and a rewrite from others, and the old type is not
    /// known (offline, planrun cannot see the catalog).
    DependsOnOldType,
}

/// What changing a column from `old` (when known) to `target` does. The rules are
/// PostgreSQL's (`ATColumnChangeRequiresRewrite`): a relabelling is free, any
/// conversion function rewrites, and a length or precision limit is only free when
/// it does not shrink.
pub(crate) fn type_change(old: Option<&TypeName>, target: &TypeName, using: bool) -> TypeChange {
    if using {
        return TypeChange::Rewrite;
    }
    let (name, mods) = (type_name(target), type_modifiers(target));
    let Some(old) = old else {
        let free_from_some = matches!(
            (name.as_str(), mods.is_empty()),
            ("text", _) | ("varchar", _) | ("numeric", _) | ("citext", _) | ("varbit", _)
        );
        return if free_from_some {
            TypeChange::DependsOnOldType
        } else {
            TypeChange::Rewrite
        };
    };
    let (old_name, old_mods) = (type_name(old), type_modifiers(old));
    let relabels = |from: &str, to: &str| {
        matches!(
            (from, to),
            ("varchar", "text")
                | ("text", "varchar")
                | ("citext", "text")
                | ("text", "citext")
                | ("varchar", "citext")
                | ("citext", "varchar")
        )
    };
    let free = if old_name == name {
        mods.is_empty()
            || mods == old_mods
            || match (name.as_str(), old_mods.as_slice(), mods.as_slice()) {
                ("varchar" | "varbit", [old_length], [length]) => length >= old_length,
                ("numeric", [old_precision], [precision]) => precision >= old_precision,
                ("numeric", [old_precision, old_scale], [precision, scale]) => {
                    scale == old_scale && precision >= old_precision
                }
                _ => false,
            }
    } else {
        relabels(&old_name, &name) && (mods.is_empty() || name == "text")
    };
    if free {
        TypeChange::NoRewrite
    } else {
        TypeChange::Rewrite
    }
}

/// A type's modifiers as written (`varchar(20)`: 20, `numeric(10,2)`: 10, 2).
fn type_modifiers(type_name: &TypeName) -> Vec<i64> {
    type_name
        .typmods
        .iter()
        .filter_map(|node| match &node.node {
            Some(NodeEnum::AConst(constant)) => match &constant.val {
                Some(pg_query::protobuf::a_const::Val::Ival(int)) => Some(i64::from(int.ival)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// A type as `format_type` spells it in the catalog (`character varying(20)`), read
/// by the parser.
pub(crate) fn parse_type(text: &str) -> Option<TypeName> {
    let parsed = pg_query::parse(&format!("SELECT NULL::{text}"), 0).ok()?;
    let statement = parsed
        .protobuf
        .stmts
        .first()?
        .stmt
        .as_ref()?
        .node
        .as_ref()?;
    let NodeEnum::SelectStmt(select) = statement else {
        return None;
    };
    let target = select.target_list.first()?.node.as_ref()?;
    let NodeEnum::ResTarget(target) = target else {
        return None;
    };
    match target.val.as_ref()?.node.as_ref()? {
        NodeEnum::TypeCast(cast) => cast.type_name.clone(),
        _ => None,
    }
}

/// A type as a reader writes it: `varchar(20)`, `numeric(10,2)`.
pub(crate) fn type_display(type_name: &TypeName) -> String {
    let name = self::type_name(type_name);
    let mods = type_modifiers(type_name);
    if mods.is_empty() {
        name
    } else {
        let mods: Vec<String> = mods.iter().map(i64::to_string).collect();
        format!("{name}({})", mods.join(","))
    }
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
