//! psql's meta-commands: the arguments of `\set` read with psql's rules, and for every
//! command planrun does not run, what it is and what to write instead.

/// The variable and value of `\set NAME [VALUE ...]` (the values concatenated, as psql
/// does), or `None` for a bare `\set`, which only lists psql's variables. `lookup`
/// resolves a variable reference at the start of its argument (`:NAME`, `:'NAME'`,
/// ...) to its text and length.
pub(crate) fn parse_set_arguments(
    arguments: &str,
    lookup: &dyn Fn(&str) -> Option<(String, usize)>,
) -> Result<Option<(String, String)>, String> {
    let words = arguments_of(arguments, lookup)?;
    let Some((name, values)) = words.split_first() else {
        return Ok(None);
    };
    if name.is_empty()
        || !name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte >= 0x80)
    {
        return Err(format!(
            "`\\set {name}`: a psql variable name is letters, digits and underscores"
        ));
    }
    Ok(Some((name.clone(), values.concat())))
}

/// The white-space separated arguments of a meta-command, as psql reads them: in
/// single quotes, `''` is a quote and `\n`, `\t`, `\NNN`, `\xHH` are escapes; double
/// quotes stay in the argument; variables are substituted outside quotes.
fn arguments_of(
    arguments: &str,
    lookup: &dyn Fn(&str) -> Option<(String, usize)>,
) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut rest = arguments.trim_start();
    while !rest.is_empty() {
        let mut word = String::new();
        while let Some(c) = rest.chars().next() {
            if c.is_whitespace() {
                break;
            }
            match c {
                '\'' => {
                    let (text, len) = single_quoted(rest);
                    word.push_str(&text);
                    rest = &rest[len..];
                }
                '"' => {
                    let len = rest[1..].find('"').map_or(rest.len(), |at| at + 2);
                    word.push_str(&rest[..len]);
                    rest = &rest[len..];
                }
                '`' => {
                    return Err(
                        "`\\set` with a backquoted shell command: planrun runs no shell commands"
                            .into(),
                    )
                }
                ':' => match lookup(rest) {
                    Some((value, len)) => {
                        word.push_str(&value);
                        rest = &rest[len..];
                    }
                    None => {
                        word.push(':');
                        rest = &rest[1..];
                    }
                },
                _ => {
                    word.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        words.push(word);
        rest = rest.trim_start();
    }
    Ok(words)
}

/// The text of the single-quoted argument that starts `rest`, and its length there.
fn single_quoted(rest: &str) -> (String, usize) {
    let mut text = String::new();
    let mut chars = rest.char_indices().skip(1).peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '\'' if chars.peek().map(|(_, next)| *next) == Some('\'') => {
                chars.next();
                text.push('\'');
            }
            '\'' => return (text, at + 1),
            '\\' => {
                let Some((_, escaped)) = chars.next() else {
                    break;
                };
                match escaped {
                    'n' => text.push('\n'),
                    't' => text.push('\t'),
                    'b' => text.push('\u{8}'),
                    'r' => text.push('\r'),
                    'f' => text.push('\u{c}'),
                    'x' => {
                        let mut code = 0u32;
                        for _ in 0..2 {
                            match chars.peek().and_then(|(_, c)| c.to_digit(16)) {
                                Some(digit) => {
                                    code = code * 16 + digit;
                                    chars.next();
                                }
                                None => break,
                            }
                        }
                        text.extend(char::from_u32(code));
                    }
                    '0'..='7' => {
                        let mut code = escaped.to_digit(8).unwrap_or(0);
                        for _ in 0..2 {
                            match chars.peek().and_then(|(_, c)| c.to_digit(8)) {
                                Some(digit) => {
                                    code = code * 8 + digit;
                                    chars.next();
                                }
                                None => break,
                            }
                        }
                        text.extend(char::from_u32(code));
                    }
                    other => text.push(other),
                }
            }
            other => text.push(other),
        }
    }
    (text, rest.len())
}

/// Why planrun refuses meta-command `\name`: what it does in psql, and what to write
/// instead.
pub(crate) fn meta_command_refusal(name: &str) -> (String, &'static str) {
    let (what, help) = match name {
        "if" | "elif" | "else" | "endif" => (
            "opens, continues or closes psql's conditional block",
            "make the condition a stage's `skip_if`, or write it in SQL (a DO block)",
        ),
        "gset" | "gexec" => (
            if name == "gset" {
                "stores a query's result in psql variables"
            } else {
                "runs each value of a query's result as a statement"
            },
            "compute the value in SQL, or use a stage's `capture`",
        ),
        "g" | "gx" | "gdesc" | "crosstabview" | "watch" | "bind" | "bind_named" | "parse"
        | "close" | "close_prepared" | "sendpipeline" | "startpipeline" | "endpipeline"
        | "syncpipeline" | "flushrequest" | "flush" | "getresults" => (
            "sends the query in a way only psql does",
            "end the statement with `;`",
        ),
        "i" | "include" | "ir" | "include_relative" => (
            "includes another file",
            "list that file as another step of the stage",
        ),
        "c" | "connect" => (
            "connects to another database",
            "a plan runs against one database; make another plan for the other",
        ),
        "copy" => (
            "copies between a file on the client and a table",
            "write `COPY ... FROM stdin;` with the rows after it, ended by `\\.`",
        ),
        "echo" | "qecho" | "warn" | "o" | "out" | "pset" | "a" | "t" | "x" | "f" | "H" | "C"
        | "T" | "timing" | "prompt" | "encoding" | "conninfo" | "errverbose" | "p" | "print"
        | "r" | "reset" | "w" | "write" | "e" | "edit" | "ef" | "ev" | "s" | "h" | "help" | "?"
        | "q" | "quit" | "setenv" | "getenv" | "cd" | "restrict" | "unrestrict" => (
            "changes or prints what psql shows",
            "leave it out: planrun sends SQL to the server and prints its own report",
        ),
        "!" => ("runs a shell command", "planrun runs no shell commands"),
        "." => (
            "ends COPY rows, but no `COPY ... FROM stdin;` comes before it",
            "put the rows right after a `COPY ... FROM stdin;` line",
        ),
        name if name.starts_with('d') || name.starts_with('l') || name.starts_with('s') => (
            "describes or edits objects in psql",
            "leave it out: planrun sends SQL to the server",
        ),
        _ => (
            "planrun does not run",
            "write it as SQL; planrun runs `\\set` and `\\unset` and no other meta-command",
        ),
    };
    (
        format!("`\\{name}` is a psql meta-command that {what}; planrun sends SQL to the server, not psql commands"),
        help,
    )
}
