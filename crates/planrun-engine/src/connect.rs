//! Connecting to the target database: where the connection string comes from
//! (`--database-url`, `DATABASE_URL` from the environment or `./.env`, libpq's `PG*`
//! variables), TLS per `sslmode`, and redaction so that no password is ever printed.

use std::path::Path;
use std::str::FromStr;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres::config::SslMode;
use postgres::{Client, Config};
use postgres_openssl::MakeTlsConnector;

use crate::error::EngineError;

/// Where the connection settings came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Environment,
    DotEnv,
    Libpq,
}

/// How long a connection attempt may take when the target does not say
/// (`connect_timeout`).
const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A resolved connection target. Its `Display` never shows the password.
#[derive(Clone)]
pub struct Target {
    config: Config,
    tls: TlsMode,
    root_cert: Option<String>,
    pub source: Source,
    redacted: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.redacted)
            .finish()
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl Target {
    /// Resolves the target: an explicit URL wins, then `DATABASE_URL` from the
    /// environment, then `DATABASE_URL` in `<cwd>/.env`, then libpq's `PG*` variables.
    pub fn resolve(explicit: Option<&str>, cwd: &Path) -> Result<Target, EngineError> {
        if let Some(url) = explicit {
            return Target::parse(url, Source::Flag);
        }
        if let Some(url) = std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
        {
            return Target::parse(&url, Source::Environment);
        }
        if let Some(url) = dotenv_database_url(&cwd.join(".env")) {
            return Target::parse(&url, Source::DotEnv);
        }
        Target::from_libpq_env()
    }

    /// Parses a URL or key=value connection string.
    pub fn parse(text: &str, source: Source) -> Result<Target, EngineError> {
        let password = url_password(text);
        let redacted = scrub(&redact(text), password);
        let (rest, sslmode, root_cert) = take_tls_settings(text);
        let config = Config::from_str(&rest).map_err(|error| EngineError::BadConnectionString {
            target: redacted.clone(),
            reason: scrub(&redact(&error.to_string()), password),
        })?;
        let tls = parse_tls_mode(sslmode.as_deref().unwrap_or("prefer"), &redacted)?;
        Ok(Target {
            config,
            tls,
            root_cert,
            source,
            redacted,
        })
    }

    fn from_libpq_env() -> Result<Target, EngineError> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let mut config = Config::new();
        config.host(&var("PGHOST").unwrap_or_else(|| "/var/run/postgresql".into()));
        if let Some(port) = var("PGPORT") {
            let port = port.parse().map_err(|_| EngineError::BadConnectionString {
                target: "PG* environment".into(),
                reason: format!("PGPORT `{port}` is not a port number"),
            })?;
            config.port(port);
        }
        let user = var("PGUSER")
            .or_else(|| var("USER"))
            .unwrap_or_else(|| "postgres".into());
        config.user(&user);
        config.dbname(&var("PGDATABASE").unwrap_or_else(|| user.clone()));
        if let Some(password) = var("PGPASSWORD") {
            config.password(password);
        }
        if let Some(name) = var("PGAPPNAME") {
            config.application_name(&name);
        }
        let tls = parse_tls_mode(
            &var("PGSSLMODE").unwrap_or_else(|| "prefer".into()),
            "PG* environment",
        )?;
        let mut target = Target {
            config,
            tls,
            root_cert: var("PGSSLROOTCERT"),
            source: Source::Libpq,
            redacted: String::new(),
        };
        target.redacted = target.describe();
        Ok(target)
    }

    /// `user@host:port/dbname`, for messages and the ledger.
    pub fn describe(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .first()
            .map(|host| match host {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "postgresql://{}@{host}:{port}/{}",
            self.config.get_user().unwrap_or(""),
            self.config.get_dbname().unwrap_or("")
        )
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn password(&self) -> Option<String> {
        self.config
            .get_password()
            .map(|password| String::from_utf8_lossy(password).into_owned())
    }

    /// libpq's `sslmode` to hand to `pg_dump`.
    pub fn sslmode(&self) -> &'static str {
        match self.tls {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }

    pub fn root_cert(&self) -> Option<&str> {
        self.root_cert.as_deref()
    }

    /// Opens a connection named `application_name`. The attempt as a whole (TCP, TLS,
    /// startup, authentication) gives up after `connect_timeout` (default 10 s): the
    /// driver bounds only the TCP connect, and a server that accepts and never
    /// answers would otherwise hold planrun for ever.
    pub fn connect(&self, application_name: &str) -> Result<Client, EngineError> {
        let deadline = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let (sender, receiver) = std::sync::mpsc::channel();
        let target = self.clone();
        let name = application_name.to_owned();
        // The thread owns the attempt; one that never returns is left behind, blocked
        // on its socket, and goes with the process.
        std::thread::spawn(move || {
            let _ = sender.send(target.connect_now(&name));
        });
        match receiver.recv_timeout(deadline) {
            Ok(result) => result,
            Err(_) => Err(EngineError::CannotConnect {
                target: self.redacted.clone(),
                reason: format!(
                    "no answer within connect_timeout = {} s (TCP, TLS, startup and authentication together)",
                    deadline.as_secs_f64()
                ),
            }),
        }
    }

    fn connect_now(&self, application_name: &str) -> Result<Client, EngineError> {
        let mut config = self.config.clone();
        if config.get_application_name().is_none() {
            config.application_name(application_name);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        let password = self.password();
        let cannot_connect = |reason: String| EngineError::CannotConnect {
            target: self.redacted.clone(),
            reason: scrub(&redact(&reason), password.as_deref()),
        };
        let mut client = if self.tls == TlsMode::Disable {
            config.ssl_mode(SslMode::Disable);
            config
                .connect(postgres::NoTls)
                .map_err(|error| cannot_connect(error_chain(&error)))?
        } else {
            self.connect_tls(config, &cannot_connect)?
        };
        watch_for_vanished_client(&mut client)
            .map_err(|error| cannot_connect(error_chain(&error)))?;
        Ok(client)
    }

    fn connect_tls(
        &self,
        mut config: Config,
        cannot_connect: &dyn Fn(String) -> EngineError,
    ) -> Result<Client, EngineError> {
        let mut builder = SslConnector::builder(SslMethod::tls_client())
            .map_err(|error| cannot_connect(format!("cannot set up TLS: {error}")))?;
        // As in libpq, `require` with an explicit `sslrootcert` verifies the chain
        // like `verify-ca` (and `pg_dump`, handed the same settings, does so too).
        let verify_chain = match self.tls {
            TlsMode::VerifyCa | TlsMode::VerifyFull => true,
            TlsMode::Require => self.root_cert.is_some(),
            TlsMode::Disable | TlsMode::Prefer => false,
        };
        if verify_chain {
            builder.set_verify(SslVerifyMode::PEER);
            match &self.root_cert {
                Some(file) => builder.set_ca_file(file).map_err(|error| {
                    cannot_connect(format!("cannot read sslrootcert {file}: {error}"))
                })?,
                None => builder.set_default_verify_paths().map_err(|error| {
                    cannot_connect(format!("cannot load the system CA certificates: {error}"))
                })?,
            }
        } else {
            builder.set_verify(SslVerifyMode::NONE);
        }
        let mut connector = MakeTlsConnector::new(builder.build());
        let verify_hostname = self.tls == TlsMode::VerifyFull;
        connector.set_callback(move |connect, _| {
            connect.set_verify_hostname(verify_hostname);
            Ok(())
        });
        config.ssl_mode(match self.tls {
            TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        config
            .connect(connector)
            .map_err(|error| cannot_connect(error_chain(&error)))
    }
}

/// How often the server checks that a planrun session's client is still there.
const CLIENT_CHECK_INTERVAL: &str = "1s";

/// Asks the server to check, while a statement runs, that planrun is still connected.
/// Without it a killed planrun leaves its backend working through the rest of a long
/// statement, holding the stage's locks, before the rollback that must follow anyway.
/// The setting exists from PostgreSQL 14; on older servers this does nothing.
pub(crate) fn watch_for_vanished_client<C: postgres::GenericClient>(
    client: &mut C,
) -> Result<(), postgres::Error> {
    client.execute(
        "SELECT set_config(name, $1, false) FROM pg_settings \
         WHERE name = 'client_connection_check_interval'",
        &[&CLIENT_CHECK_INTERVAL],
    )?;
    Ok(())
}

/// An error with its sources, e.g. "error connecting to server: Connection refused".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn parse_tls_mode(mode: &str, target: &str) -> Result<TlsMode, EngineError> {
    match mode {
        "disable" => Ok(TlsMode::Disable),
        "allow" | "prefer" => Ok(TlsMode::Prefer),
        "require" => Ok(TlsMode::Require),
        "verify-ca" => Ok(TlsMode::VerifyCa),
        "verify-full" => Ok(TlsMode::VerifyFull),
        other => Err(EngineError::BadConnectionString {
            target: target.to_owned(),
            reason: format!("sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"),
        }),
    }
}

/// Removes `sslmode` and `sslrootcert` from a URL or key=value string, which the
/// `postgres` crate does not fully understand, and returns them.
fn take_tls_settings(text: &str) -> (String, Option<String>, Option<String>) {
    let mut sslmode = None;
    let mut root_cert = None;
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        // The query starts at the first `?` after the credentials, which run to the
        // first `@` and may hold an unencoded `?` in the password.
        let after_credentials = text.find('@').map_or(0, |at| at + 1);
        let Some(question) = text[after_credentials..].find('?') else {
            return (text.to_owned(), None, None);
        };
        let (base, query) = text.split_at(after_credentials + question);
        let query = &query[1..];
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let value = url::form_urlencoded::parse(format!("v={value}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned());
                match key {
                    "sslmode" => sslmode = value,
                    "sslrootcert" => root_cert = value,
                    _ => return true,
                }
                false
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rest, sslmode, root_cert);
    }
    // key=value: every other pair is kept byte for byte (a password may hold runs
    // of spaces inside its quotes).
    let mut kept = String::with_capacity(text.len());
    for (key, value, pair) in key_value_pairs(text) {
        match key {
            "sslmode" => sslmode = Some(value),
            "sslrootcert" => root_cert = Some(value),
            _ => {
                if !kept.is_empty() {
                    kept.push(' ');
                }
                kept.push_str(pair);
            }
        }
    }
    (kept, sslmode, root_cert)
}

/// The pairs of a libpq key=value string: key, unquoted value, and the pair's own text.
/// Spaces may surround `=`; a value is a run of non-space characters or a single-quoted
/// string, both with backslash escapes. A malformed tail is returned as one pair with
/// an empty key, for the `postgres` crate to reject with its own error.
fn key_value_pairs(text: &str) -> Vec<(&str, String, &str)> {
    let mut pairs = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let start = rest;
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let Some(after_equals) = rest[key_end..].trim_start().strip_prefix('=') else {
            pairs.push(("", String::new(), start.trim_end()));
            break;
        };
        let value_text = after_equals.trim_start();
        let mut value = String::new();
        let mut chars = value_text.char_indices().peekable();
        let quoted = value_text.starts_with('\'');
        if quoted {
            chars.next();
        }
        let mut end = value_text.len();
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '\'' if quoted => {
                    end = index + 1;
                    break;
                }
                c if !quoted && c.is_whitespace() => {
                    end = index;
                    break;
                }
                c => value.push(c),
            }
        }
        let consumed = start.len() - value_text.len() + end;
        pairs.push((key, value, &start[..consumed]));
        rest = start[consumed..].trim_start();
    }
    pairs
}

fn dotenv_database_url(path: &Path) -> Option<String> {
    let entries = dotenvy::from_path_iter(path).ok()?;
    entries
        .filter_map(Result::ok)
        .find(|(key, _)| key == "DATABASE_URL")
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// Replaces the password in a URL (`postgres://user:secret@host`) or key=value string
/// (`password=secret`, `password = 'a b'`) with `***`. Text without a password is
/// returned unchanged.
///
/// The credentials of a URL run to its first `@`, as the `postgres` crate (and libpq)
/// read them, so a password holding an unencoded `/`, `?`, `#` or space is still
/// hidden. When unsure (an `@` later on the same line after a URL without user), this
/// hides too much rather than too little.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_at) = rest.find("://") {
        let (head, tail) = rest.split_at(scheme_at + 3);
        out.push_str(head);
        // The credentials end at the first `@` on this line, unless another URL
        // starts first.
        let line_end = tail.find(['\n', '\r']).unwrap_or(tail.len());
        let next_url = tail[..line_end].find("://").unwrap_or(line_end);
        let credentials_end = tail[..next_url].find('@');
        match credentials_end {
            Some(at) if tail[..at].contains(':') => {
                let colon = tail[..at].find(':').expect("checked above");
                out.push_str(&tail[..colon]);
                out.push_str(":***");
                rest = &tail[at..];
            }
            Some(at) => {
                out.push_str(&tail[..at]);
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    redact_key_value(&out)
}

fn redact_key_value(text: &str) -> String {
    const KEY: &str = "password";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        let before = &rest[..at];
        let starts_word = before.is_empty()
            || before.ends_with(|c: char| c.is_whitespace() || c == '&' || c == '?');
        let in_query = before.ends_with(['&', '?']);
        let (head, tail) = rest.split_at(at + KEY.len());
        out.push_str(head);
        let after_key = tail.trim_start();
        let Some(after_equals) = after_key.strip_prefix('=').filter(|_| starts_word) else {
            rest = tail;
            continue;
        };
        let value = after_equals.trim_start();
        out.push_str(&tail[..tail.len() - value.len()]);
        let value_end = if let Some(quoted) = value.strip_prefix('\'') {
            // A quoted value, with backslash escapes as libpq reads them.
            let mut end = value.len();
            let mut chars = quoted.char_indices();
            while let Some((index, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '\'' => {
                        end = index + 2;
                        break;
                    }
                    _ => {}
                }
            }
            end
        } else if in_query {
            value
                .find(|c: char| c == '&' || c.is_whitespace())
                .unwrap_or(value.len())
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        out.push_str("***");
        rest = &value[value_end..];
    }
    out.push_str(rest);
    out
}

/// Replaces every occurrence of `secret` (as given and percent-decoded) in `text` with
/// `***`: the last line of defence for messages that echo the connection string.
fn scrub(text: &str, secret: Option<&str>) -> String {
    let Some(secret) = secret.filter(|secret| !secret.is_empty()) else {
        return text.to_owned();
    };
    let mut out = text.replace(secret, "***");
    let decoded =
        url::form_urlencoded::parse(format!("v={}", secret.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, value)| value.into_owned());
    if let Some(decoded) = decoded.filter(|decoded| !decoded.is_empty() && decoded != secret) {
        out = out.replace(&decoded, "***");
    }
    out
}

/// The password of a URL as the `postgres` crate reads it: after the first `:` of the
/// text before the first `@`.
fn url_password(text: &str) -> Option<&str> {
    let rest = text
        .strip_prefix("postgresql://")
        .or_else(|| text.strip_prefix("postgres://"))?;
    let credentials = &rest[..rest.find('@')?];
    credentials.split_once(':').map(|(_, password)| password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_urls_and_key_values() {
        assert_eq!(
            redact("postgresql://app:s3cr%40t@db:5432/prod?sslmode=require"),
            "postgresql://app:***@db:5432/prod?sslmode=require"
        );
        assert_eq!(redact("postgres://app@db/prod"), "postgres://app@db/prod");
        assert_eq!(
            redact("host=db password=s3cret user=app"),
            "host=db password=*** user=app"
        );
        assert_eq!(redact("password='a b' x=1"), "password=*** x=1");
        assert_eq!(
            redact("error at postgres://u:pw@h/d and postgres://v:pw2@h/d"),
            "error at postgres://u:***@h/d and postgres://v:***@h/d"
        );
    }

    #[test]
    fn passwords_with_url_delimiters_are_still_redacted() {
        for (url, shown) in [
            (
                "postgresql://app:pa/ss@db/prod",
                "postgresql://app:***@db/prod",
            ),
            (
                "postgresql://app:p?w#x@db/prod",
                "postgresql://app:***@db/prod",
            ),
            (
                "postgresql://app:my secret@db/prod",
                "postgresql://app:***@db/prod",
            ),
            ("postgres://app:a:b@db", "postgres://app:***@db"),
        ] {
            assert_eq!(redact(url), shown);
            let target = Target::parse(url, Source::Flag).unwrap();
            assert_eq!(target.to_string(), shown);
        }
        assert_eq!(
            redact("host=db password = 's3 cr\\'et' user=app"),
            "host=db password = *** user=app"
        );
        assert_eq!(
            redact("postgresql://db/prod?password=s3cret&sslmode=require"),
            "postgresql://db/prod?password=***&sslmode=require"
        );
        assert_eq!(
            redact("no_password=1 xpassword=2"),
            "no_password=1 xpassword=2"
        );
        assert_eq!(
            scrub("pw is s3%2Fcret or s3/cret", Some("s3%2Fcret")),
            "pw is *** or ***"
        );
    }

    #[test]
    fn a_bad_url_does_not_echo_its_password() {
        let error = Target::parse("postgresql://app:s3cret@db:notaport/prod", Source::Flag)
            .unwrap_err()
            .to_string();
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn tls_settings_are_taken_out_of_the_url() {
        let (rest, mode, cert) = take_tls_settings(
            "postgresql://u@h/d?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x",
        );
        assert_eq!(rest, "postgresql://u@h/d?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(cert.as_deref(), Some("/tmp/ca.pem"));
        let (rest, mode, _) = take_tls_settings("postgresql://u:p?w@h/d?sslmode=require");
        assert_eq!(rest, "postgresql://u:p?w@h/d");
        assert_eq!(mode.as_deref(), Some("require"));
        let target =
            Target::parse("postgresql://u:pw@h/d?sslmode=verify-full", Source::Flag).unwrap();
        assert_eq!(target.sslmode(), "verify-full");
        assert!(!format!("{target} {target:?}").contains("pw"));
    }

    #[test]
    fn tls_settings_are_taken_out_of_a_key_value_string_as_libpq_reads_it() {
        let (rest, mode, cert) = take_tls_settings(
            r"host=db  password='two  spaces \' quote' sslmode = verify-ca sslrootcert='/etc/my certs/ca.pem' dbname=app",
        );
        assert_eq!(rest, r"host=db password='two  spaces \' quote' dbname=app");
        assert_eq!(mode.as_deref(), Some("verify-ca"));
        assert_eq!(cert.as_deref(), Some("/etc/my certs/ca.pem"));
        let (rest, _, cert) = take_tls_settings(r"sslrootcert=/a\ b/ca.pem host=h");
        assert_eq!(rest, "host=h");
        assert_eq!(cert.as_deref(), Some("/a b/ca.pem"));

        let target = Target::parse(
            "host=db port=5433 user=app password='a  b' sslmode=require sslrootcert='/x y/ca.pem'",
            Source::Flag,
        )
        .unwrap();
        assert_eq!(target.sslmode(), "require");
        assert_eq!(target.root_cert(), Some("/x y/ca.pem"));
        assert_eq!(target.config().get_password(), Some(&b"a  b"[..]));
        assert_eq!(target.config().get_ports(), [5433]);
    }

    #[test]
    fn an_unknown_sslmode_is_an_error() {
        let error =
            Target::parse("postgresql://u@h/d?sslmode=sometimes", Source::Flag).unwrap_err();
        assert!(error.to_string().contains("sometimes"));
    }
}
