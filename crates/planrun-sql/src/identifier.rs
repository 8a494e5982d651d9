//! Names written into SQL text: an identifier quoted so that PostgreSQL reads it
//! back as exactly that name.

/// `name` as a quoted SQL identifier: in double quotes, each double quote in it
/// doubled, so that any name (mixed case, spaces, quotes, a keyword) reads as itself.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_name_reads_as_itself() {
        assert_eq!(quote_identifier("orders"), r#""orders""#);
        assert_eq!(quote_identifier(r#"Odd "name""#), r#""Odd ""name""""#);
    }
}
