//! The application's dump of the copy, read as statements, and what differs between
//! two of them. Each statement of `pg_dump --inserts` is folded onto one line, so a
//! difference names its table (`INSERT INTO public.customers VALUES (...)`, `CREATE
//! TABLE public.notes (...)`). A row is known by its table and its first column's
//! value (the primary key, by the usual convention): the key by which the rows a
//! rehearsal's writes touched are allowed to differ after the revert.
//!
//! Column order is the one difference forgiven: a revert that adds a dropped column
//! back can only add it last (PostgreSQL has no way to place it), so each `CREATE
//! TABLE` and each row (`--column-inserts`, which names the columns) is written with
//! its first column first and the others in name order. A value, a type, a column
//! missing or extra still differs.

use std::collections::BTreeSet;

use crate::db::connect::Target;
use crate::db::pg_tools::{libpq_command, pg_tool};

/// A row: its table as the dump names it, and its first column's value as written.
pub(crate) type RowKey = (String, String);

/// The application's schema and data on `target` (planrun's schema and sequence
/// positions left out), one statement a line.
pub(crate) fn application_dump(target: &Target) -> Result<String, String> {
    let output = libpq_command(&pg_tool("pg_dump"), target)
        .args([
            "--no-owner",
            "--no-privileges",
            "--column-inserts",
            "--exclude-schema=planrun",
        ])
        .output()
        .map_err(|error| format!("cannot run pg_dump: {error}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("--") {
            continue;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(line);
        if line.ends_with(';') || line.starts_with('\\') {
            statements.push(std::mem::take(&mut current));
        }
    }
    statements.push(current);
    Ok(statements
        .into_iter()
        .filter(|statement| {
            !statement.is_empty()
                && !statement.starts_with("\\restrict")
                && !statement.starts_with("\\unrestrict")
                && !statement.starts_with("SELECT pg_catalog.setval(")
        })
        .map(|statement| in_column_name_order(&statement))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// `statement` with the columns after the first in name order, if it is a `CREATE
/// TABLE` or an `INSERT` that names its columns; else as it is.
fn in_column_name_order(statement: &str) -> String {
    if let Some(rest) = statement.strip_prefix("CREATE TABLE ") {
        let Some((table, body)) = rest.split_once(" (") else {
            return statement.to_owned();
        };
        let Some(body) = body.strip_suffix(");") else {
            return statement.to_owned();
        };
        let mut parts = split_top_level(body);
        if parts.len() > 1 {
            parts[1..].sort();
        }
        return format!("CREATE TABLE {table} ({});", parts.join(", "));
    }
    if let Some(rest) = statement.strip_prefix("INSERT INTO ") {
        let Some((head, values)) = rest.split_once(") VALUES (") else {
            return statement.to_owned();
        };
        let (Some((table, columns)), Some(values)) =
            (head.split_once(" ("), values.strip_suffix(");"))
        else {
            return statement.to_owned();
        };
        let (columns, values) = (split_top_level(columns), split_top_level(values));
        if columns.len() != values.len() || columns.is_empty() {
            return statement.to_owned();
        }
        let mut pairs: Vec<(String, String)> = columns.into_iter().zip(values).collect();
        pairs[1..].sort();
        let (columns, values): (Vec<String>, Vec<String>) = pairs.into_iter().unzip();
        return format!(
            "INSERT INTO {table} ({}) VALUES ({});",
            columns.join(", "),
            values.join(", ")
        );
    }
    statement.to_owned()
}

/// `text` split at the commas outside quotes (`'...'`, `"..."`) and parentheses,
/// each part trimmed.
fn split_top_level(text: &str) -> Vec<String> {
    let (mut parts, mut current) = (Vec::new(), String::new());
    let (mut depth, mut quote) = (0usize, None::<char>);
    for c in text.chars() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth = depth.saturating_sub(1),
            (None, ',') if depth == 0 => {
                parts.push(std::mem::take(&mut current).trim().to_owned());
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current.trim().to_owned());
    parts
}

/// The statements only one dump has, `- ` before and `+ ` after, leaving out the
/// rows whose key is `allowed`.
pub(crate) fn differing_statements(
    before: &str,
    after: &str,
    allowed: &BTreeSet<RowKey>,
) -> Vec<String> {
    let (old, new): (BTreeSet<&str>, BTreeSet<&str>) =
        (before.lines().collect(), after.lines().collect());
    let kept = |statement: &&&str| row_key(statement).is_none_or(|key| !allowed.contains(&key));
    old.difference(&new)
        .filter(kept)
        .map(|statement| format!("- {statement}"))
        .chain(
            new.difference(&old)
                .filter(kept)
                .map(|statement| format!("+ {statement}")),
        )
        .collect()
}

/// The rows that differ between two dumps: what writes made between them touched.
pub(crate) fn touched_rows(before: &str, after: &str) -> BTreeSet<RowKey> {
    let (old, new): (BTreeSet<&str>, BTreeSet<&str>) =
        (before.lines().collect(), after.lines().collect());
    old.symmetric_difference(&new)
        .filter_map(|statement| row_key(statement))
        .collect()
}

/// The key of an `INSERT INTO table VALUES (first, ...)` statement.
pub(crate) fn row_key(statement: &str) -> Option<RowKey> {
    let rest = statement.strip_prefix("INSERT INTO ")?;
    let (table, rest) = rest.split_once(' ')?;
    let values = rest.split_once("VALUES (")?.1;
    let mut quoted = false;
    let end = values
        .char_indices()
        .find(|&(_, c)| {
            if c == '\'' {
                quoted = !quoted;
            }
            !quoted && (c == ',' || c == ')')
        })
        .map(|(at, _)| at)?;
    Some((table.to_owned(), values[..end].trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_known_by_its_table_and_first_value() {
        assert_eq!(
            row_key("INSERT INTO public.customers VALUES (3, 'Zed', NULL);"),
            Some(("public.customers".into(), "3".into()))
        );
        assert_eq!(
            row_key("INSERT INTO public.tags VALUES ('a, b', 1);"),
            Some(("public.tags".into(), "'a, b'".into()))
        );
        assert_eq!(row_key("CREATE TABLE public.t (id bigint);"), None);
    }

    #[test]
    fn column_order_is_forgiven_and_nothing_else() {
        let before = [
            "CREATE TABLE public.c (id bigint NOT NULL, content text, n numeric(10,2), memoir_id bigint);",
            "INSERT INTO public.c (id, content, n, memoir_id) VALUES (1, 'a, (b)', 1.50, 7);",
        ]
        .map(in_column_name_order)
        .join("\n");
        let moved = [
            "CREATE TABLE public.c (id bigint NOT NULL, memoir_id bigint, n numeric(10,2), content text);",
            "INSERT INTO public.c (id, memoir_id, n, content) VALUES (1, 7, 1.50, 'a, (b)');",
        ]
        .map(in_column_name_order)
        .join("\n");
        assert!(differing_statements(&before, &moved, &BTreeSet::new()).is_empty());
        let changed = moved.replace("'a, (b)'", "'a, (c)'");
        assert_eq!(
            differing_statements(&before, &changed, &BTreeSet::new()).len(),
            2
        );
        let retyped = moved.replace("numeric(10,2)", "numeric(12,2)");
        assert_eq!(
            differing_statements(&before, &retyped, &BTreeSet::new()).len(),
            2
        );
        assert_eq!(
            row_key(&in_column_name_order(
                "INSERT INTO public.c (id, z, a) VALUES (3, 'z', 'a');"
            )),
            Some(("public.c".into(), "3".into()))
        );
    }

    #[test]
    fn allowed_rows_do_not_differ_and_others_do() {
        let before = "CREATE TABLE public.c (id bigint, name text);\nINSERT INTO public.c VALUES (1, 'Ann');";
        let after = "CREATE TABLE public.c (id bigint, name text);\nINSERT INTO public.c VALUES (1, 'Ann!');\nINSERT INTO public.c VALUES (2, 'Zed');";
        let allowed = BTreeSet::from([("public.c".to_owned(), "2".to_owned())]);
        assert_eq!(
            differing_statements(before, after, &allowed),
            [
                "- INSERT INTO public.c VALUES (1, 'Ann');",
                "+ INSERT INTO public.c VALUES (1, 'Ann!');"
            ]
        );
        assert_eq!(touched_rows(before, after).len(), 2);
    }
}
