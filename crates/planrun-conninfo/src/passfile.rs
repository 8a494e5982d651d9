//! The password file (`~/.pgpass`, `PGPASSFILE`, `passfile=`), read as libpq reads it.
//!
//! Lines are `hostname:port:database:username:password`; `*` matches anything; a
//! backslash escapes `:` and `\`; `#` starts a comment line. The first matching line
//! wins. A file that is not a plain file, or that the group or others may read or
//! write, is ignored with a warning (libpq's rule: u=rw (0600) or less).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// libpq's name for the local host in the password file: a connection over the
/// default socket directory, or without a host, looks up `localhost`.
const LOCALHOST: &str = "localhost";

/// What a lookup is for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lookup<'a> {
    pub host: &'a str,
    pub port: &'a str,
    pub dbname: &'a str,
    pub user: &'a str,
}

/// The outcome of reading the password file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PassFileResult {
    Found(String),
    /// No file, or no matching line.
    NotFound,
    /// The file was ignored; the text says why, as libpq's warning does.
    Ignored(String),
}

/// Looks `lookup` up in `path`. `default_socket_dir` is libpq's compiled-in socket
/// directory, which counts as `localhost`.
pub(crate) fn look_up(path: &Path, lookup: Lookup<'_>, default_socket_dir: &str) -> PassFileResult {
    let Ok(metadata) = std::fs::metadata(path) else {
        return PassFileResult::NotFound;
    };
    if !metadata.is_file() {
        return PassFileResult::Ignored(format!(
            "password file \"{}\" is not a plain file",
            path.display()
        ));
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        return PassFileResult::Ignored(format!(
            "password file \"{}\" has group or world access; permissions should be u=rw (0600) or less",
            path.display()
        ));
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return PassFileResult::NotFound;
    };
    let host = if lookup.host.is_empty() || lookup.host == default_socket_dir {
        LOCALHOST
    } else {
        lookup.host
    };
    let wanted = [host, lookup.port, lookup.dbname, lookup.user];
    text.lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .find_map(|line| matching_password(line, &wanted))
        .map_or(PassFileResult::NotFound, PassFileResult::Found)
}

/// The password of `line` if its first four fields match `wanted`.
fn matching_password(line: &str, wanted: &[&str; 4]) -> Option<String> {
    let mut rest = line;
    for want in wanted {
        rest = match_field(rest, want)?;
    }
    Some(unescape(rest))
}

/// Matches one field (and its `:`) at the start of `text`; returns what follows.
fn match_field<'a>(text: &'a str, wanted: &str) -> Option<&'a str> {
    if let Some(rest) = text.strip_prefix("*:") {
        return Some(rest);
    }
    let mut field = String::new();
    let mut chars = text.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '\\' => field.push(chars.next()?.1),
            ':' => return (field == wanted).then(|| &text[index + 1..]),
            c => field.push(c),
        }
    }
    None
}

/// The password field: unescaped, up to the next unescaped `:` (libpq ignores any
/// further fields).
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            ':' => break,
            c => out.push(c),
        }
    }
    out
}

/// libpq's default password file: `~/.pgpass`.
pub(crate) fn default_path(home: &Path) -> PathBuf {
    home.join(".pgpass")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str, mode: u32) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        file
    }

    const LOOKUP: Lookup<'static> = Lookup {
        host: "db",
        port: "5432",
        dbname: "app",
        user: "migrator",
    };

    #[test]
    fn the_first_matching_line_wins_with_wildcards_and_escapes() {
        let pgpass = file(
            "# comment\nother:5432:app:migrator:no\ndb:*:app:migrator:s3\\:cr\\\\et\ndb:5432:*:*:later\n",
            0o600,
        );
        assert_eq!(
            look_up(pgpass.path(), LOOKUP, "/var/run/postgresql"),
            PassFileResult::Found(r"s3:cr\et".into())
        );
        let escaped_host = file("d\\b:5432:app:migrator:x\n", 0o600);
        assert_eq!(
            look_up(escaped_host.path(), LOOKUP, "/var/run/postgresql"),
            PassFileResult::Found("x".into())
        );
    }

    #[test]
    fn the_default_socket_directory_is_localhost() {
        let pgpass = file("localhost:5432:app:migrator:local\n", 0o600);
        let over_socket = Lookup {
            host: "/var/run/postgresql",
            ..LOOKUP
        };
        assert_eq!(
            look_up(pgpass.path(), over_socket, "/var/run/postgresql"),
            PassFileResult::Found("local".into())
        );
        let other_socket = Lookup {
            host: "/tmp",
            ..LOOKUP
        };
        assert_eq!(
            look_up(pgpass.path(), other_socket, "/var/run/postgresql"),
            PassFileResult::NotFound
        );
    }

    #[test]
    fn a_file_others_may_read_is_ignored() {
        let pgpass = file("*:*:*:*:secret\n", 0o640);
        let PassFileResult::Ignored(why) = look_up(pgpass.path(), LOOKUP, "/x") else {
            panic!("a group-readable password file was used");
        };
        assert!(why.contains("0600"), "{why}");
        assert_eq!(
            look_up(Path::new("/nonexistent/.pgpass"), LOOKUP, "/x"),
            PassFileResult::NotFound
        );
    }

    /// Issue 26, item 7: the password ends at the next unescaped `:`, as in libpq.
    #[test]
    fn the_password_ends_at_an_unescaped_colon() {
        let pgpass = file("db:5432:app:migrator:Ab:cd\n", 0o600);
        assert_eq!(
            look_up(pgpass.path(), LOOKUP, "/x"),
            PassFileResult::Found("Ab".into())
        );
    }
}
