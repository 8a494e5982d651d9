//! Connecting to the target database. Where the settings come from
//! (`--database-url`, `DATABASE_URL` from the environment or `./.env`, libpq's `PG*`
//! variables, defaults, the password file) is decided once, by `planrun-conninfo`;
//! this module turns that decision into connections, and every message about the
//! target is redacted.

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use planrun_conninfo::{
    quote_value, ConnInfoError, Endpoint, Environment, Origin, ProcessEnvironment, Resolved,
};
use postgres::{Client, Config};

use crate::db::driver::{driver_config, endpoint_config};
use crate::db::tls::Tls;
use crate::error::{error_chain, EngineError};

pub(crate) use planrun_conninfo::{redact, scrub};

/// Where the connection string came from, named in every command's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Environment,
    DotEnv,
    Libpq,
    /// A throwaway cluster planrun made itself (the rehearsal's copy, the demo).
    Planrun,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Flag => "--database-url",
            Source::Environment => "DATABASE_URL",
            Source::DotEnv => "./.env",
            Source::Libpq => "the PG* variables",
            Source::Planrun => "planrun's throwaway cluster",
        })
    }
}

/// What planrun's last session under `sslmode` `allow` or `prefer` negotiated.
const TLS_UNKNOWN: u8 = 0;
const TLS_PLAINTEXT: u8 = 1;
const TLS_ENCRYPTED: u8 = 2;

/// How long a connection attempt may take when the target does not say
/// (`connect_timeout`). libpq would wait for ever; planrun never does unless told to
/// with `connect_timeout=0`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A resolved connection target. Its `Display` never shows the password.
#[derive(Clone)]
pub struct Target {
    resolved: Resolved,
    /// One driver configuration per endpoint, each with that server's password.
    configs: Vec<Config>,
    tls: Tls,
    /// Shared by clones, so a `pg_dump` started later gets the TLS that planrun's
    /// sessions got.
    negotiated: Arc<AtomicU8>,
    /// `None` when `connect_timeout` is zero or negative: wait as long as it takes.
    connect_timeout: Option<Duration>,
    pub source: Source,
    redacted: String,
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
    /// Resolves the target as libpq would: the connection string from `explicit`, else
    /// `DATABASE_URL` from the environment, else `DATABASE_URL` in `<cwd>/.env`; the
    /// `PG*` variables fill in whatever it leaves out; then defaults and the password
    /// file. With none of these set, it is an error rather than libpq's local default.
    pub fn resolve(explicit: Option<&str>, cwd: &Path) -> Result<Target, EngineError> {
        let (text, source) = if let Some(url) = explicit {
            (Some(url.to_owned()), Source::Flag)
        } else if let Some(url) = std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
        {
            (Some(url), Source::Environment)
        } else if let Some(url) = dotenv_database_url(&cwd.join(".env")) {
            (Some(url), Source::DotEnv)
        } else {
            (None, Source::Libpq)
        };
        let resolved = match (&text, source) {
            // A file in the working directory may be stale: it never takes a
            // password the environment holds for another server.
            (Some(text), Source::DotEnv) => {
                planrun_conninfo::resolve_from_file(text, "./.env", &ProcessEnvironment)
            }
            (text, _) => planrun_conninfo::resolve(text.as_deref(), &ProcessEnvironment),
        };
        Target::build(text.as_deref(), resolved, source)
    }

    /// A connection string planrun made itself (a throwaway cluster's), read without
    /// the caller's `PG*` variables or password file.
    pub fn parse(text: &str, source: Source) -> Result<Target, EngineError> {
        let bare = planrun_conninfo::FixedEnvironment {
            os_user: ProcessEnvironment.os_user(),
            ..Default::default()
        };
        Target::build(
            Some(text),
            planrun_conninfo::resolve(Some(text), &bare),
            source,
        )
    }

    fn build(
        text: Option<&str>,
        resolved: Result<Resolved, ConnInfoError>,
        source: Source,
    ) -> Result<Target, EngineError> {
        let shown_text = text.map(redact);
        let resolved = resolved.map_err(|error| match error {
            ConnInfoError::NothingConfigured => EngineError::NoTarget(error.to_string()),
            error => EngineError::BadConnectionString {
                target: shown_text
                    .clone()
                    .unwrap_or_else(|| "from the PG* variables".into()),
                reason: redact(&error.to_string()),
            },
        })?;
        let redacted = shown_text.unwrap_or_else(|| resolved.describe());
        let redacted = scrub_all(&redacted, &resolved);
        let bad = |reason: String| EngineError::BadConnectionString {
            target: redacted.clone(),
            reason: scrub_all(&reason, &resolved),
        };
        let base = driver_config(&resolved).map_err(&bad)?;
        let configs = resolved
            .endpoints()
            .iter()
            .map(|endpoint| endpoint_config(&base, endpoint))
            .collect::<Result<_, _>>()
            .map_err(&bad)?;
        let tls = Tls::from_settings(&resolved).map_err(bad)?;
        let connect_timeout = match resolved.get("connect_timeout") {
            None => Some(DEFAULT_CONNECT_TIMEOUT),
            // As libpq: zero or negative waits for ever; the minimum is 2 s.
            Some(seconds) => seconds
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|seconds| *seconds > 0)
                .map(|seconds| Duration::from_secs(seconds.max(2) as u64)),
        };
        Ok(Target {
            resolved,
            configs,
            tls,
            negotiated: Arc::new(AtomicU8::new(TLS_UNKNOWN)),
            connect_timeout,
            source,
            redacted,
        })
    }

    /// `user@host:port/dbname`, for messages and the ledger.
    pub fn describe(&self) -> String {
        self.resolved.describe()
    }

    /// The driver's configuration for each server of the host list, in order.
    pub fn configs(&self) -> &[Config] {
        &self.configs
    }

    /// The settings planrun connects with; a libpq tool gets exactly these.
    pub fn settings(&self) -> &Resolved {
        &self.resolved
    }

    /// Why the password file was not used, if libpq would warn about it.
    pub fn warning(&self) -> Option<&str> {
        self.resolved.warning.as_deref()
    }

    /// The database name (libpq's default is the user name).
    pub fn database(&self) -> &str {
        self.resolved.get("dbname").unwrap_or_default()
    }

    /// The environment for a libpq tool (`pg_dump`) connecting to this target, and
    /// the `--dbname` connection string to give it: the caller's `PG*` variables are
    /// to be removed, a password given for every host travels in `PGPASSWORD` (never
    /// on the command line), a password file's stays in the file, which the tool
    /// reads per host as planrun does; everything else goes in the string, so the
    /// tool connects with what planrun connects with. Its TLS is at least what
    /// planrun's sessions negotiated: `allow` and `prefer` become `require` once a
    /// session was encrypted, and `allow` (plaintext first) is never passed on.
    /// `sslrootcert=system` becomes the system's roots file, for a `pg_dump` older
    /// than libpq 16.
    pub fn libpq_tool_settings(&self) -> (String, Vec<(&'static str, String)>) {
        let mut env = Vec::new();
        if let Some(password) = self.resolved.password() {
            env.push(("PGPASSWORD", password.to_owned()));
        }
        let sslmode = match (
            self.resolved.get("sslmode"),
            self.negotiated.load(Ordering::SeqCst),
        ) {
            (Some("allow" | "prefer"), TLS_ENCRYPTED) => Some("require"),
            (Some("allow"), _) => Some("prefer"),
            (sslmode, _) => sslmode,
        };
        let conninfo = self
            .resolved
            .settings()
            .iter()
            .filter(|(name, _)| *name != "password")
            .map(|(name, value)| match (name, value) {
                ("sslmode", _) => (name, sslmode.unwrap_or(value).to_owned()),
                // libpq 16's word; an older pg_dump reads it as a file name.
                ("sslrootcert", "system") => (
                    name,
                    crate::db::tls::system_roots_file()
                        .map_or(value.to_owned(), |file| file.display().to_string()),
                ),
                _ => (name, value.to_owned()),
            })
            .map(|(name, value)| format!("{name}={}", quote_value(&value)))
            .collect::<Vec<_>>()
            .join(" ");
        (conninfo, env)
    }

    /// Opens a connection named `application_name` (unless the settings name it);
    /// each server of the list gets `connect_timeout` for the whole attempt.
    ///
    /// Nothing is set on the session: through a session-mode pooler its server
    /// connection goes to another client afterwards.
    pub fn connect(&self, application_name: &str) -> Result<Client, EngineError> {
        self.open(application_name)
    }

    /// The session of a command that changes the database. First, before anything is
    /// set on it, refuses a pooler that shares server connections between clients
    /// (see [`crate::db::pooling`]; a second connection is opened and closed to find out).
    /// Then asks the server to watch for a vanished client, until the session is
    /// dropped ([`OwnSession`]).
    pub fn connect_own_session(&self, application_name: &str) -> Result<OwnSession, EngineError> {
        let mut client = self.open(application_name)?;
        let second = self.open(application_name)?;
        crate::db::pooling::refuse_shared_server_connections(&mut client, second, &self.redacted)?;
        let mut session = OwnSession { client };
        watch_for_vanished_client(&mut session.client)
            .map_err(|error| self.cannot_connect(error_chain(&error)))?;
        Ok(session)
    }

    /// A connection on which nothing has been set yet: each server of the list in
    /// turn, each with its own password, until one accepts. Under
    /// `target_session_attrs=prefer-standby`, a first round takes standbys only.
    fn open(&self, application_name: &str) -> Result<Client, EngineError> {
        let rounds: &[Option<Recovery>] = match self.resolved.get("target_session_attrs") {
            Some("primary") => &[Some(Recovery::Primary)],
            Some("standby") => &[Some(Recovery::Standby)],
            Some("prefer-standby") => &[Some(Recovery::Standby), None],
            _ => &[None],
        };
        let mut failures = Vec::new();
        for wanted in rounds {
            for (config, endpoint) in self.configs.iter().zip(self.resolved.endpoints()) {
                match self.attempt(config, endpoint, application_name, *wanted) {
                    Ok(client) => return Ok(client),
                    Err(reason) => failures.push((endpoint, reason)),
                }
            }
        }
        let reason = match failures.as_slice() {
            [(endpoint, reason)] => self.explain(endpoint, reason),
            failures => failures
                .iter()
                .map(|(endpoint, reason)| {
                    format!(
                        "{}: {}",
                        endpoint.describe(),
                        self.explain(endpoint, reason)
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        };
        Err(self.cannot_connect(reason))
    }

    /// One server of the list, given the whole `connect_timeout`, as libpq gives each.
    /// The attempt as a whole (TCP, TLS, startup, authentication) is bounded: the
    /// driver bounds only the TCP connect, and a server that accepts and never
    /// answers would otherwise hold planrun for ever. The thread owns the attempt; one
    /// that never returns is left behind, blocked on its socket, and goes with the
    /// process.
    fn attempt(
        &self,
        config: &Config,
        endpoint: &Endpoint,
        application_name: &str,
        wanted: Option<Recovery>,
    ) -> Result<Client, String> {
        let (sender, receiver) = std::sync::mpsc::channel();
        let target = self.clone();
        let (config, endpoint) = (config.clone(), endpoint.clone());
        let name = application_name.to_owned();
        std::thread::spawn(move || {
            let _ = sender.send(target.connect_to(config, &endpoint, &name, wanted));
        });
        let no_answer = |deadline: Duration| {
            format!(
                "no answer within connect_timeout = {} s (TCP, TLS, startup and authentication together)",
                deadline.as_secs_f64()
            )
        };
        match self.connect_timeout {
            Some(deadline) => receiver
                .recv_timeout(deadline)
                .unwrap_or_else(|_| Err(no_answer(deadline))),
            None => receiver
                .recv()
                .unwrap_or_else(|_| Err("the connection attempt ended without an answer".into())),
        }
    }

    /// Connects to one server and checks it is what `target_session_attrs` wants.
    fn connect_to(
        &self,
        mut config: Config,
        endpoint: &Endpoint,
        application_name: &str,
        wanted: Option<Recovery>,
    ) -> Result<Client, String> {
        if config.get_application_name().is_none() {
            config.application_name(application_name);
        }
        if let Some(timeout) = self.connect_timeout {
            config.connect_timeout(timeout);
        }
        let mut client = self.tls.connect(config, endpoint)?;
        self.note_negotiated_tls(&mut client)
            .map_err(|error| error_chain(&error))?;
        if let Some(wanted) = wanted {
            wanted.check(&mut client)?;
        }
        Ok(client)
    }

    fn cannot_connect(&self, reason: String) -> EngineError {
        EngineError::CannotConnect {
            target: self.redacted.clone(),
            reason: scrub_all(&redact(&reason), &self.resolved),
        }
    }

    /// Under `sslmode` `allow` or `prefer`, records whether the session is encrypted,
    /// for the libpq tools planrun starts later.
    fn note_negotiated_tls(&self, client: &mut Client) -> Result<(), postgres::Error> {
        if !matches!(self.resolved.get("sslmode"), Some("allow" | "prefer")) {
            return Ok(());
        }
        // A simple query: nothing prepared, so a transaction-mode pooler is refused
        // by the pooler check rather than failing here on a lost prepared statement.
        let rows = client.simple_query(
            "SELECT ssl FROM pg_catalog.pg_stat_ssl \
             WHERE pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()",
        )?;
        let encrypted = rows.iter().any(|message| {
            matches!(message, postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t"))
        });
        self.negotiated.store(
            if encrypted {
                TLS_ENCRYPTED
            } else {
                TLS_PLAINTEXT
            },
            Ordering::SeqCst,
        );
        Ok(())
    }

    /// Asks the server to cancel the statement running on `token`'s session.
    pub fn cancel(&self, token: &postgres::CancelToken) -> Result<(), String> {
        self.tls.cancel(token)
    }

    /// Adds where the password came from to an authentication failure, as libpq
    /// does, and why the environment's password was not sent, if it was not.
    fn explain(&self, endpoint: &Endpoint, reason: &str) -> String {
        let mut reason = reason.to_owned();
        match &endpoint.password_origin {
            Some(origin @ (Origin::PassFile(_) | Origin::Environment(_)))
                if reason.contains("password authentication failed") =>
            {
                reason.push_str(&format!(" (the password came from {origin})"));
            }
            _ => {}
        }
        if let Some(note) = &self.resolved.note {
            reason.push_str(&format!(" ({note})"));
        }
        reason
    }
}

/// What `target_session_attrs` `primary`, `standby` and `prefer-standby` ask of a
/// server, checked as libpq checks it: whether it is in recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    Primary,
    Standby,
}

impl Recovery {
    fn check(self, client: &mut Client) -> Result<(), String> {
        let rows = client
            .simple_query("SELECT pg_catalog.pg_is_in_recovery()")
            .map_err(|error| error_chain(&error))?;
        let in_recovery = rows.iter().any(|message| {
            matches!(message, postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("t"))
        });
        match (self, in_recovery) {
            (Recovery::Primary, true) => Err("server is in hot standby mode".into()),
            (Recovery::Standby, false) => Err("server is not in hot standby mode".into()),
            _ => Ok(()),
        }
    }
}

/// `text` without any password the target's servers get.
fn scrub_all(text: &str, resolved: &Resolved) -> String {
    resolved
        .passwords()
        .fold(text.to_owned(), |text, password| {
            scrub(&text, Some(password))
        })
}

/// The session of a command that changes the database ([`Target::connect_own_session`]).
/// Dropped, on every path, it resets what planrun and the plan set on it (`RESET ALL`),
/// so that a session-mode pooler hands its server connection to the next client as it
/// was.
pub struct OwnSession {
    client: Client,
}

impl std::ops::Deref for OwnSession {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for OwnSession {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Drop for OwnSession {
    fn drop(&mut self) {
        // A failure means a broken connection, which takes its settings along, or
        // an aborted transaction, whose session the server ends with the connection.
        let _ = self.client.batch_execute("RESET ALL");
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

fn dotenv_database_url(path: &Path) -> Option<String> {
    let entries = dotenvy::from_path_iter(path).ok()?;
    entries
        .filter_map(Result::ok)
        .find(|(key, _)| key == "DATABASE_URL")
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_does_not_echo_its_password() {
        for url in [
            "postgresql://app:s3cret@db:notaport/prod",
            "postgresql://app:s3/cret@db/prod",
            "host=db password=s3cret sslmode=sometimes",
        ] {
            let error = Target::parse(url, Source::Flag).unwrap_err().to_string();
            assert!(
                !error.contains("s3cret") && !error.contains("cret"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_target_is_shown_without_its_password() {
        for (text, shown) in [
            (
                "postgresql://app:p?w#x@db/prod",
                "postgresql://app:***@db/prod",
            ),
            (
                "postgresql://app:my%20secret@db/prod",
                "postgresql://app:***@db/prod",
            ),
            (
                r"host=db password=Tr0ub4dor\ horse\ battery user=app",
                "host=db password=*** user=app",
            ),
        ] {
            let target = Target::parse(text, Source::Flag).unwrap();
            assert_eq!(target.to_string(), shown);
            assert!(!format!("{target:?}").contains("horse"));
        }
    }

    #[test]
    fn the_driver_gets_libpq_meanings() {
        let target = Target::parse(
            "host=db,db2 port=5433, user=app password='a  b' tcp_user_timeout=1500 connect_timeout=1",
            Source::Flag,
        )
        .unwrap();
        let [first, second] = target.configs() else {
            panic!("two hosts, two configurations");
        };
        for config in [first, second] {
            assert_eq!(config.get_password(), Some(&b"a  b"[..]));
            assert_eq!(
                config.get_tcp_user_timeout(),
                Some(&Duration::from_millis(1500))
            );
        }
        assert_eq!(first.get_ports(), [5433]);
        assert_eq!(second.get_ports(), [5432]);
        assert_eq!(target.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(target.database(), "app");
    }
}
