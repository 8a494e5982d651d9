//! [`TempPooler`]: a throwaway PgBouncer in front of a [`TempCluster`], for testing
//! planrun and an application behind a connection pooler.
//!
//! It listens on a free loopback port, reaches the cluster over its Unix socket, and
//! lives in a private temporary directory (configuration, user list, log, pid file).
//! Dropping it kills PgBouncer and deletes the directory; should the owner die first,
//! a watchdog process does the same, as for clusters. PgBouncer refuses to run as
//! root, so it runs as the cluster's server user.

use std::fmt;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::cluster::TempCluster;
use crate::files::{log_tail, private_tempdir, write_private};
use crate::quote;
use crate::watchdog::Watchdog;
use crate::TempDbError;

/// Where PgBouncer is looked for after `$PGBOUNCER` and `PATH`: Debian installs it
/// in `/usr/sbin`, which is not on every user's `PATH`.
const KNOWN_PLACES: &[&str] = &["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"];
const HOST: &str = "127.0.0.1";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(5);
const PORT_ATTEMPTS: usize = 5;

/// When PgBouncer gives a client's server connection back to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolMode {
    /// When the client disconnects: a client has one server connection all its life.
    Session,
    /// After each transaction: consecutive transactions of one client may run on
    /// different server connections, and clients share them.
    Transaction,
    /// After each statement: transaction blocks are refused.
    Statement,
}

impl fmt::Display for PoolMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        })
    }
}

/// A running PgBouncer in front of a cluster; see the [module docs](self).
#[derive(Debug)]
pub struct TempPooler {
    port: u16,
    /// The cluster's superuser, the one role the pooler knows.
    user: String,
    password: Option<String>,
    log: PathBuf,
    child: Option<Child>,
    watchdog: Option<Watchdog>,
    dir: Option<tempfile::TempDir>,
}

impl TempPooler {
    /// PgBouncer in `mode` with its defaults (pool size 20, `DISCARD ALL` when a
    /// session-mode client leaves).
    pub fn start(cluster: &TempCluster, mode: PoolMode) -> Result<TempPooler, TempDbError> {
        Self::start_with(cluster, mode, &[])
    }

    /// PgBouncer in `mode` with extra `[pgbouncer]` settings, e.g.
    /// `("default_pool_size", "1")` or `("server_reset_query", "")`.
    pub fn start_with(
        cluster: &TempCluster,
        mode: PoolMode,
        settings: &[(&str, &str)],
    ) -> Result<TempPooler, TempDbError> {
        let program = find_pgbouncer()?;
        let user = cluster.run_user();
        let dir = private_tempdir("planrun-pgbouncer-", user)?;
        let root = dir.path().to_path_buf();
        let pid_file = root.join("pgbouncer.pid");
        // Before PgBouncer can start: an owner dying halfway still gets cleaned up.
        let watchdog = Watchdog::spawn_for_pooler(&root, &pid_file)?;
        let mut pooler = TempPooler {
            port: 0,
            user: cluster.user().to_owned(),
            password: cluster.password().map(str::to_owned),
            log: root.join("pgbouncer.log"),
            child: None,
            watchdog: Some(watchdog),
            dir: Some(dir),
        };
        let users = root.join("userlist.txt");
        let password = pooler.password.as_deref().unwrap_or("");
        write_private(
            &users,
            &format!("{} {}\n", pgb_string(&pooler.user), pgb_string(password)),
            user,
        )?;
        write_private(&pooler.log, "", user)?;
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port()?;
            let ini = root.join("pgbouncer.ini");
            let config = Config {
                cluster,
                mode,
                port,
                users: &users,
                log: &pooler.log,
                pid_file: &pid_file,
                settings,
            };
            write_private(&ini, &config.render(), user)?;
            let log_start = std::fs::metadata(&pooler.log).map_or(0, |m| m.len());
            let child = user
                .command(&program, &root)
                .arg(&ini)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .map_err(|e| TempDbError::io_at("run", &program, e))?;
            pooler.child = Some(child);
            match pooler.wait_until_listening(port, &pid_file) {
                Ok(()) => {
                    pooler.port = port;
                    return Ok(pooler);
                }
                Err(reason) => {
                    pooler.kill();
                    let tail = log_tail(&pooler.log, log_start, 20);
                    if !tail.contains("Address already in use") || attempt == PORT_ATTEMPTS {
                        return Err(TempDbError::Start {
                            port,
                            reason: format!("PgBouncer: {reason}"),
                            log_tail: tail,
                        });
                    }
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Polls until PgBouncer accepts TCP connections and has written its pid file (what
    /// the watchdog kills should the owner die; PgBouncer may listen before writing
    /// it), or it exits.
    fn wait_until_listening(&mut self, port: u16, pid_file: &Path) -> Result<(), String> {
        let started = Instant::now();
        let child = self.child.as_mut().expect("just started");
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Err(format!("it exited ({status})")),
                Ok(None) => {}
                Err(e) => return Err(format!("could not check on it: {e}")),
            }
            if pid_file.exists() && TcpStream::connect((HOST, port)).is_ok() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "it did not listen within {} s",
                    START_TIMEOUT.as_secs()
                ));
            }
            sleep(POLL);
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgresql://SUPERUSER[:password]@127.0.0.1:PORT/dbname`: `dbname` on the
    /// cluster as its superuser, through the pooler.
    pub fn url(&self, dbname: &str) -> String {
        let password = match &self.password {
            Some(p) => format!(":{}", quote::percent_encode(p)),
            None => String::new(),
        };
        format!(
            "postgresql://{}{password}@{HOST}:{}/{}",
            quote::percent_encode(&self.user),
            self.port,
            quote::percent_encode(dbname)
        )
    }

    /// PgBouncer's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// PgBouncer's log, in the pooler's temporary directory.
    pub fn log_file(&self) -> &Path {
        &self.log
    }
}

impl Drop for TempPooler {
    fn drop(&mut self) {
        self.kill();
        // The pooler is gone; the watchdog only needs cancelling.
        self.watchdog = None;
        self.dir = None;
    }
}

/// The contents of `pgbouncer.ini`.
struct Config<'a> {
    cluster: &'a TempCluster,
    mode: PoolMode,
    port: u16,
    users: &'a Path,
    log: &'a Path,
    pid_file: &'a Path,
    settings: &'a [(&'a str, &'a str)],
}

impl Config<'_> {
    fn render(&self) -> String {
        // The socket is trusted by the cluster; clients of a cluster with a password
        // must give it to the pooler too.
        let auth = if self.cluster.password().is_some() {
            "scram-sha-256"
        } else {
            "trust"
        };
        let mut ini = format!(
            "[databases]\n\
             * = host={} port={}\n\
             [pgbouncer]\n\
             listen_addr = {HOST}\n\
             listen_port = {}\n\
             unix_socket_dir =\n\
             auth_type = {auth}\n\
             auth_file = {}\n\
             logfile = {}\n\
             pidfile = {}\n\
             pool_mode = {}\n",
            self.cluster.socket_dir().display(),
            self.cluster.port(),
            self.port,
            self.users.display(),
            self.log.display(),
            self.pid_file.display(),
            self.mode,
        );
        for (name, value) in self.settings {
            ini.push_str(&format!("{name} = {value}\n"));
        }
        ini
    }
}

/// A double-quoted string of PgBouncer's user list.
fn pgb_string(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// `$PGBOUNCER`, else `pgbouncer` on `PATH`, else Debian's places.
fn find_pgbouncer() -> Result<PathBuf, TempDbError> {
    let from_env = std::env::var_os("PGBOUNCER").map(PathBuf::from);
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("pgbouncer"));
    let known = KNOWN_PLACES.iter().map(PathBuf::from);
    let candidates: Vec<PathBuf> = from_env.into_iter().chain(on_path).chain(known).collect();
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or(TempDbError::PoolerNotFound {
            searched: candidates,
        })
}

/// A port nobody listens on right now.
fn free_port() -> Result<u16, TempDbError> {
    TcpListener::bind((HOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| TempDbError::io(format!("find a free TCP port on {HOST}"), e))
}
