//! A target as a person reads it: a connection over a Unix socket is shown the way
//! psql's `\conninfo` puts it (`socket in /tmp/x, port 5432, database app`), not as a
//! URL whose host is a percent-encoded directory.

/// `url` (already redacted) as a person reads it: a socket target in psql's words,
/// anything else as it is.
pub fn display_target(url: &str) -> String {
    socket_target(url).unwrap_or_else(|| url.to_owned())
}

fn socket_target(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    // The user is left out, as psql's prompt leaves it out: the line stays short.
    let endpoint = authority
        .rsplit_once('@')
        .map_or(authority, |(_, endpoint)| endpoint);
    if endpoint.contains(',') {
        return None;
    }
    let (host, port) = match endpoint.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => (host, Some(port)),
        _ => (endpoint, None),
    };
    let host = percent_decode(host)?;
    if !host.starts_with('/') {
        return None;
    }
    let (database, query) = path.split_once('?').unwrap_or((path, ""));
    let mut shown = format!("socket in {host}");
    if let Some(port) = port {
        shown.push_str(&format!(", port {port}"));
    }
    if !database.is_empty() {
        shown.push_str(&format!(", database {}", percent_decode(database)?));
    }
    if !query.is_empty() {
        shown.push_str(&format!(" ({query})"));
    }
    Some(shown)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::display_target;

    #[test]
    fn a_socket_target_reads_as_psql_says_it() {
        assert_eq!(
            display_target(
                "postgresql://postgres@%2Ftmp%2Fplanrun-pg-x%2Fsocket:36839/memoir_demo"
            ),
            "socket in /tmp/planrun-pg-x/socket, port 36839, database memoir_demo"
        );
        assert_eq!(
            display_target("postgresql://%2Fvar%2Frun%2Fpostgresql/app"),
            "socket in /var/run/postgresql, database app"
        );
    }

    #[test]
    fn a_tcp_target_stays_a_url() {
        for url in [
            "postgresql://app:***@db.example.com:5432/app?sslmode=require",
            "postgresql://a,b/app",
            "host=/tmp dbname=app",
        ] {
            assert_eq!(display_target(url), url);
        }
    }
}
