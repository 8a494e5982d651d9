//! libpq's connection URIs:
//! `postgresql://[user[:password]@][host][:port][,...][/dbname][?key=value&...]`.
//!
//! As in libpq: the credentials end at the first `@` before any `/`; hosts may be
//! `[IPv6]` or a percent-encoded socket directory; every part, query keys included, is
//! percent-decoded (`+` stays a plus); `ssl=true` means `sslmode=require`; an unknown
//! query key is an error, as are a character after the hosts that is not `/` or `?`,
//! a second `=` in a query parameter and an empty one (`?&x=1`). Stricter than libpq
//! in one way: a host holding `@` (the rest of a password with an unencoded `@`) is
//! refused, and no error quotes text that may be part of a password.

use crate::{ConnInfoError, Settings};

/// Whether `text` is a URI rather than a key=value string.
pub fn is_uri(text: &str) -> bool {
    uri_body(text).is_some()
}

fn uri_body(text: &str) -> Option<&str> {
    text.strip_prefix("postgresql://")
        .or_else(|| text.strip_prefix("postgres://"))
}

/// Parses a connection URI into settings.
pub fn parse_uri(text: &str) -> Result<Settings, ConnInfoError> {
    let body = uri_body(text)
        .ok_or_else(|| ConnInfoError::Syntax("a URI starts with postgresql://".into()))?;
    let mut settings = Settings::default();
    let mut rest = body;
    if let Some(at) = credentials_end(body) {
        let credentials = &body[..at];
        let (user, password) = match credentials.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (credentials, None),
        };
        settings.set_given("user", decode(user, "user name")?)?;
        if let Some(password) = password {
            settings.set_given("password", decode(password, "password")?)?;
        }
        rest = &body[at + 1..];
    }
    let (hosts, ports, after_hosts) = host_list(rest)?;
    if hosts.iter().any(|host| !host.is_empty()) {
        settings.set_given("host", hosts.join(","))?;
    }
    if ports.iter().any(|port| !port.is_empty()) {
        settings.set_given("port", ports.join(","))?;
    }
    rest = after_hosts;
    if !rest.is_empty() && !rest.starts_with(['/', '?']) {
        return Err(ConnInfoError::Syntax(
            "unexpected character after the URI's hosts (expected \":\", \"/\" or \"?\")".into(),
        ));
    }
    if let Some(path) = rest.strip_prefix('/') {
        let end = path.find('?').unwrap_or(path.len());
        settings.set_given("dbname", decode(&path[..end], "database name")?)?;
        rest = &path[end..];
    }
    if let Some(query) = rest.strip_prefix('?') {
        query_parameters(query, &mut settings)?;
    }
    Ok(settings)
}

/// The `@` that ends the credentials: the first one before any `/`.
fn credentials_end(body: &str) -> Option<usize> {
    let stop = body.find(['@', '/']).unwrap_or(body.len());
    body[stop..].starts_with('@').then_some(stop)
}

/// The comma-separated `host[:port]` list, decoded, and what follows it.
fn host_list(mut rest: &str) -> Result<(Vec<String>, Vec<String>, &str), ConnInfoError> {
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    loop {
        let host_end = if rest.starts_with('[') {
            let close = rest.find(']').ok_or_else(|| {
                ConnInfoError::Syntax("an IPv6 host in the URI lacks its closing \"]\"".into())
            })?;
            hosts.push(rest[1..close].to_owned());
            close + 1
        } else {
            let end = rest.find([':', '/', '?', ',']).unwrap_or(rest.len());
            if rest[..end].contains('@') {
                // psql tries it as a host name and echoes it; it is the rest of
                // a password.
                return Err(ConnInfoError::Syntax(
                    "the URI's host holds \"@\" (percent-encode \"@\" in a password: %40)".into(),
                ));
            }
            hosts.push(decode(&rest[..end], "host")?);
            end
        };
        rest = &rest[host_end..];
        if let Some(after_colon) = rest.strip_prefix(':') {
            let end = after_colon
                .find(['/', '?', ','])
                .unwrap_or(after_colon.len());
            let port = decode(&after_colon[..end], "port")?;
            if !port.is_empty() && port.trim().parse::<i64>().is_err() {
                // The text may be part of a password holding an unencoded `/`; it
                // is never echoed.
                return Err(ConnInfoError::Syntax(
                    "the URI's port is not a number (percent-encode \"/\", \"@\" and \":\" in a password: %2F, %40, %3A)".into(),
                ));
            }
            ports.push(port);
            rest = &after_colon[end..];
        } else {
            ports.push(String::new());
        }
        match rest.strip_prefix(',') {
            Some(next) => rest = next,
            None => return Ok((hosts, ports, rest)),
        }
    }
}

fn query_parameters(query: &str, settings: &mut Settings) -> Result<(), ConnInfoError> {
    let mut after_password = false;
    let pairs: Vec<&str> = query.split('&').collect();
    for (index, pair) in pairs.iter().enumerate() {
        // As libpq: a trailing `&` ends the query; an empty parameter elsewhere is
        // an error.
        if pair.is_empty() && index + 1 == pairs.len() {
            break;
        }
        let key = query_parameter(pair, settings)
            .map_err(|error| crate::key_value::unechoed(error, after_password))?;
        after_password = key == "password";
    }
    Ok(())
}

/// Sets one `key=value` of the query; returns the key.
fn query_parameter(pair: &str, settings: &mut Settings) -> Result<String, ConnInfoError> {
    let key_text = pair.split('=').next().unwrap_or(pair);
    let (key, value) = pair.split_once('=').ok_or_else(|| {
        ConnInfoError::Syntax(format!(
            "missing \"=\" in the URI query parameter \"{key_text}\""
        ))
    })?;
    if value.contains('=') {
        return Err(ConnInfoError::Syntax(format!(
            "extra \"=\" in the URI query parameter \"{key_text}\" (percent-encode it: %3D)"
        )));
    }
    let key = decode(key, "query parameter name")?;
    let value = decode(value, "query parameter value")?;
    // libpq's JDBC compatibility.
    if key == "ssl" && value == "true" {
        settings.set_given("sslmode", "require".into())?;
    } else {
        settings
            .set_given(&key, value)
            .map_err(|_| ConnInfoError::UnknownKeyword(key.clone()))?;
    }
    Ok(key)
}

/// Percent-decodes `text` as libpq does: `%XX` only, never `%00`; `+` stays.
pub(crate) fn decode(text: &str, what: &str) -> Result<String, ConnInfoError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .filter(|&byte| byte != 0)
                .ok_or_else(|| {
                    ConnInfoError::Syntax(format!("invalid percent-encoding in the URI's {what}"))
                })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ConnInfoError::Syntax(format!("the URI's {what} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_is_percent_decoded_query_keys_included() {
        let settings = parse_uri(
            "postgresql://app:s3%40cr%2Ft+x@db.example:6432/my%20db?ssl%6Dode=verify-full&application_name=a%26b",
        )
        .unwrap();
        assert_eq!(settings.get("user"), Some("app"));
        assert_eq!(settings.get("password"), Some("s3@cr/t+x"));
        assert_eq!(settings.get("host"), Some("db.example"));
        assert_eq!(settings.get("port"), Some("6432"));
        assert_eq!(settings.get("dbname"), Some("my db"));
        assert_eq!(settings.get("sslmode"), Some("verify-full"));
        assert_eq!(settings.get("application_name"), Some("a&b"));
    }

    #[test]
    fn hosts_sockets_and_ipv6() {
        let settings = parse_uri("postgresql://%2Fvar%2Frun%2Fpostgresql:5433/app").unwrap();
        assert_eq!(settings.get("host"), Some("/var/run/postgresql"));
        let settings = parse_uri("postgres://[::1]:5432,db2:5433/x").unwrap();
        assert_eq!(settings.get("host"), Some("::1,db2"));
        assert_eq!(settings.get("port"), Some("5432,5433"));
        let settings = parse_uri("postgresql:///app?host=/tmp/sock").unwrap();
        assert_eq!(settings.get("host"), Some("/tmp/sock"));
        assert_eq!(settings.get("dbname"), Some("app"));
        assert_eq!(settings.get("user"), None);
    }

    #[test]
    fn jdbc_ssl_true_means_require() {
        let settings = parse_uri("postgresql://h/d?ssl=true").unwrap();
        assert_eq!(settings.get("sslmode"), Some("require"));
    }

    #[test]
    fn mistakes_are_errors_that_never_echo_a_password() {
        for uri in [
            "postgresql://h/d?sslmod=require",
            "postgresql://h/d?sslmode",
            "postgresql://u:pa%zz@h/d",
            "postgresql://u:p%00@h/d",
        ] {
            assert!(parse_uri(uri).is_err(), "{uri}");
        }
        let error = parse_uri("postgresql://app:se/cret@db/prod").unwrap_err();
        let error = error.to_string();
        assert!(
            !error.contains("\"se\"") && !error.contains("cret"),
            "{error}"
        );
    }

    /// Issue 26, item 6: what libpq rejects.
    #[test]
    fn malformed_uris_are_rejected_as_libpq_rejects_them() {
        for uri in [
            "postgresql://[::1]x:5432/db",
            "postgresql://h/d?options=-c%20x=1",
            "postgresql://h/d?&sslmode=disable",
            "postgresql://h/d?sslmode=disable&&x=1",
            "postgresql://h:5432x/d",
        ] {
            assert!(parse_uri(uri).is_err(), "{uri}");
        }
        for uri in [
            "postgresql://h/d?sslmode=disable&",
            "postgresql://h/d?",
            "postgresql://h:5432?sslmode=disable",
        ] {
            assert!(parse_uri(uri).is_ok(), "{uri}");
        }
        let port = parse_uri("postgresql://h:%35432/d").unwrap();
        assert_eq!(port.get("port"), Some("5432"));
    }

    /// Issue 26, item 9: a password with an unencoded `@` leaves a host holding the
    /// rest of it; it is refused without echoing any of it.
    #[test]
    fn a_host_holding_a_password_fragment_is_refused_unechoed() {
        let error = parse_uri("postgresql://u:pw@Secret@db/prod").unwrap_err();
        assert!(!error.to_string().contains("Secret"), "{error}");
        let error = parse_uri("postgresql://h/d?password=a&b=c").unwrap_err();
        assert!(!error.to_string().contains("\"b\""), "{error}");
    }
}
