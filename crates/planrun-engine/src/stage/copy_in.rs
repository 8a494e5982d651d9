//! What a SQL step sends for one statement: the statement alone, or a
//! `COPY ... FROM stdin` followed by the rows the file holds after it, sent through the
//! COPY protocol as psql sends them; and a COPY's failing row placed at its line in
//! the file.

use std::io::Write;

use planrun_sql::CopyRows;
use postgres::{GenericClient, SimpleQueryMessage};

use planrun_report::StageError;

/// Runs `text` (with its COPY rows, when it has some); the rows it affected.
pub(crate) fn send_statement<C: GenericClient>(
    conn: &mut C,
    text: &str,
    rows: Option<&CopyRows>,
) -> Result<u64, postgres::Error> {
    let Some(rows) = rows else {
        let messages = conn.simple_query(text)?;
        return Ok(messages
            .iter()
            .map(|message| match message {
                SimpleQueryMessage::CommandComplete(count) => *count,
                _ => 0,
            })
            .sum());
    };
    let mut writer = conn.copy_in(text)?;
    // A failed write means a broken connection or a server error, which `finish`
    // reports as the server's; a write error alone would only repeat it.
    let _ = writer.write_all(rows.data.as_bytes());
    writer.finish()
}

/// PostgreSQL names a COPY's failing row by its number among the rows ("COPY t, line
/// 3"); the report names the file's line and shows the row.
pub(crate) fn place_row_error(
    failure: &mut StageError,
    error: &postgres::Error,
    rows: Option<&CopyRows>,
) {
    let (Some(rows), Some(db)) = (rows, error.as_db_error()) else {
        return;
    };
    let Some(number) = db.where_().and_then(copy_row_number) else {
        return;
    };
    failure.line = Some(rows.first_line + number - 1);
    failure.column = None;
    failure.statement = rows.data.lines().nth(number - 1).map(str::to_owned);
}

/// N in a COPY error's context, `COPY t, line N[, column c: ...]`.
fn copy_row_number(context: &str) -> Option<usize> {
    let line = context.lines().find(|line| line.starts_with("COPY "))?;
    let after = &line[line.find(", line ")? + ", line ".len()..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|number| *number > 0)
}

#[cfg(test)]
mod tests {
    use super::copy_row_number;

    #[test]
    fn the_row_number_is_read_from_the_copy_context() {
        assert_eq!(
            copy_row_number("COPY actor, line 3, column actor_id: \"x\""),
            Some(3)
        );
        assert_eq!(copy_row_number("COPY t, line 12"), Some(12));
        assert_eq!(copy_row_number("SQL function \"f\""), None);
    }
}
