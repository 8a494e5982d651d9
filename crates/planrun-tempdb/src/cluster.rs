//! [`TempCluster`]: a private PostgreSQL server in a temporary directory, gone when
//! the value is dropped (or, via the watchdog, when its owner process dies).

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;

use crate::bin::find_bin_dir;
use crate::builder::TempClusterBuilder;
use crate::files::{private_tempdir, write_private, DIR_ENV};
use crate::psql::ServerSocket;
use crate::quote;
use crate::replica::TempReplica;
use crate::server::{self, ServerFiles, StopMode};
use crate::template::{self, TemplateKey};
use crate::user::RunUser;
use crate::watchdog::Watchdog;
use crate::TempDbError;

/// The address the server listens on unless socket-only; loopback only, these are
/// throwaway clusters.
const HOST: &str = "127.0.0.1";
/// The superuser `initdb` creates unless [`TempClusterBuilder::superuser`] names another.
const DEFAULT_SUPERUSER: &str = "postgres";
/// A port found free can be taken by a parallel test before the server binds it.
const PORT_ATTEMPTS: usize = 5;

/// A running throwaway PostgreSQL server with its own data directory, port and
/// socket directory.
///
/// Dropping it stops the server (immediate shutdown) and deletes every file. Should
/// the owning process die without dropping it, a watchdog process does the same.
#[derive(Debug)]
pub struct TempCluster {
    bin_dir: PathBuf,
    user: RunUser,
    password: Option<String>,
    /// The bootstrap superuser's name.
    superuser: String,
    /// [`HOST`], or the socket directory of a socket-only cluster.
    host: String,
    socket_only: bool,
    /// The builder's settings, which a replica applies again after its own.
    settings: Vec<(String, String)>,
    port: u16,
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    /// `None` while stopped.
    server: Option<Child>,
    /// Both `None` once kept.
    watchdog: Option<Watchdog>,
    dir: Option<tempfile::TempDir>,
}

/// A cluster released by [`TempCluster::keep`]: still running, no longer cleaned up.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KeptCluster {
    /// Connection URL of the `postgres` database; a socket URL for a socket-only
    /// cluster, which `psql` takes as it is.
    pub url: String,
    /// As [`TempCluster::host`].
    pub host: String,
    /// As [`TempCluster::port`].
    pub port: u16,
    /// The temporary directory holding data, socket and log; remove it when done.
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub log_file: PathBuf,
    /// A shell command that stops the server and removes [`dir`](Self::dir).
    pub stop_command: String,
}

impl TempCluster {
    /// A cluster with the defaults: trust authentication, no TLS.
    pub fn start() -> Result<TempCluster, TempDbError> {
        Self::builder().start()
    }

    pub fn builder() -> TempClusterBuilder {
        TempClusterBuilder::default()
    }

    pub(crate) fn create(options: TempClusterBuilder) -> Result<TempCluster, TempDbError> {
        options.check()?;
        let TempClusterBuilder {
            bin_dir,
            password,
            settings,
            ssl,
            socket_only,
            superuser,
        } = options;
        let superuser = superuser.unwrap_or_else(|| DEFAULT_SUPERUSER.to_owned());
        let bin_dir = match bin_dir {
            Some(dir) => dir,
            None => find_bin_dir()?,
        };
        let user = RunUser::detect()?;
        let template = template::get(&TemplateKey {
            bin_dir: bin_dir.clone(),
            password: password.clone(),
            user: user.clone(),
            superuser: superuser.clone(),
        })?;
        let mut cluster = Self::prepare(
            "planrun-pg-",
            bin_dir,
            user,
            password,
            socket_only,
            superuser,
        )?;
        // From here on errors drop `cluster`, which removes everything again.
        template.copy_to(&cluster.data_dir, &cluster.user)?;
        cluster.configure(&settings, ssl.as_ref())?;
        cluster.settings = settings;
        cluster.launch_on_a_free_port()
    }

    /// A cluster without data directory or server yet: its temporary directory (named
    /// `prefix...`), watchdog, socket directory and empty log. Dropping it removes them.
    pub(crate) fn prepare(
        prefix: &str,
        bin_dir: PathBuf,
        user: RunUser,
        password: Option<String>,
        socket_only: bool,
        superuser: String,
    ) -> Result<TempCluster, TempDbError> {
        let dir = private_tempdir(prefix, &user)?;
        let root = dir.path().to_path_buf();
        let data_dir = root.join("data");
        let socket_dir = root.join("socket");
        let host = if socket_only {
            socket_host(&socket_dir)?
        } else {
            HOST.to_owned()
        };
        // Before anything can start: an owner dying halfway still gets cleaned up.
        let watchdog = Watchdog::spawn(&root, Some(&data_dir))?;
        let cluster = TempCluster {
            bin_dir,
            user,
            password,
            superuser,
            host,
            socket_only,
            settings: Vec::new(),
            port: 0,
            socket_dir,
            log: root.join("postgres.log"),
            root,
            data_dir,
            server: None,
            watchdog: Some(watchdog),
            dir: Some(dir),
        };
        fs::create_dir(&cluster.socket_dir)
            .and_then(|()| {
                fs::set_permissions(&cluster.socket_dir, fs::Permissions::from_mode(0o700))
            })
            .map_err(|e| TempDbError::io_at("create directory", &cluster.socket_dir, e))?;
        cluster.user.chown(&cluster.socket_dir)?;
        write_private(&cluster.log, "", &cluster.user)?;
        Ok(cluster)
    }

    /// Append our settings to `postgresql.conf`, installing the TLS files if asked.
    /// Appended, they win over what is already there, such as the settings a
    /// replica's base backup copied from its primary.
    pub(crate) fn configure(
        &self,
        settings: &[(String, String)],
        ssl: Option<&(PathBuf, PathBuf)>,
    ) -> Result<(), TempDbError> {
        // fsync and full-page writes only protect against an operating-system crash,
        // which a throwaway cluster need not survive. synchronous_commit stays on:
        // with fsync off it costs a write() per commit, while off it would lose
        // acknowledged commits on StopMode::Immediate and mislead crash tests.
        let listen = if self.socket_only { "" } else { HOST };
        let mut conf = format!(
            "\n# Added by planrun-tempdb: a throwaway cluster need not survive an OS crash.\n\
             listen_addresses = '{listen}'\n\
             unix_socket_directories = {}\n\
             fsync = off\n\
             full_page_writes = off\n",
            quote::conf_value(&self.socket_dir.to_string_lossy()),
        );
        if self.socket_only {
            // The directories alone keep others out; this holds should one be opened.
            conf.push_str("unix_socket_permissions = 0700\n");
        }
        if let Some((cert, key)) = ssl {
            self.install_ssl(cert, key)?;
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        for (name, value) in settings {
            conf.push_str(&format!("{name} = {}\n", quote::conf_value(value)));
        }
        let conf_file = self.data_dir.join("postgresql.conf");
        fs::OpenOptions::new()
            .append(true)
            .open(&conf_file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
            .map_err(|e| TempDbError::io_at("write", &conf_file, e))
    }

    /// Start the server on a free port; a parallel test may take the port first, so
    /// another is tried then.
    pub(crate) fn launch_on_a_free_port(mut self) -> Result<TempCluster, TempDbError> {
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            match server::launch(&self.files(), port) {
                Ok(child) => {
                    self.port = port;
                    self.server = Some(child);
                    return Ok(self);
                }
                Err(failed) if failed.port_taken && attempt < PORT_ATTEMPTS => attempt += 1,
                Err(failed) => return Err(failed.error),
            }
        }
    }

    /// The server insists the key belongs to it and is private.
    fn install_ssl(&self, cert: &Path, key: &Path) -> Result<(), TempDbError> {
        for (from, name, mode) in [(cert, "server.crt", 0o644), (key, "server.key", 0o600)] {
            let to = self.data_dir.join(name);
            fs::copy(from, &to).map_err(|e| {
                TempDbError::io(format!("copy {} to {}", from.display(), to.display()), e)
            })?;
            fs::set_permissions(&to, fs::Permissions::from_mode(mode))
                .map_err(|e| TempDbError::io_at("set the mode of", &to, e))?;
            self.user.chown(&to)?;
        }
        Ok(())
    }

    /// Start a streaming standby of this cluster; see [`TempReplica`].
    pub fn start_replica(&self) -> Result<TempReplica, TempDbError> {
        TempReplica::start(self, false)
    }

    /// As [`start_replica`](Self::start_replica), streaming on a physical replication
    /// slot of the primary named as the replica ([`TempReplica::slot_name`]); dropping
    /// the replica drops the slot.
    pub fn start_replica_on_slot(&self) -> Result<TempReplica, TempDbError> {
        TempReplica::start(self, true)
    }

    /// Whether the server listens on its Unix socket only.
    pub(crate) fn is_socket_only(&self) -> bool {
        self.socket_only
    }

    /// The settings it was built with.
    pub(crate) fn settings(&self) -> &[(String, String)] {
        &self.settings
    }

    pub(crate) fn run_user(&self) -> &RunUser {
        &self.user
    }

    /// The temporary directory holding data directory, socket directory and log.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn socket(&self) -> ServerSocket {
        ServerSocket {
            bin_dir: self.bin_dir.clone(),
            socket_dir: self.socket_dir.clone(),
            port: self.port,
            superuser: self.superuser.clone(),
        }
    }

    fn files(&self) -> ServerFiles<'_> {
        ServerFiles {
            bin_dir: &self.bin_dir,
            data_dir: &self.data_dir,
            log: &self.log,
            cwd: &self.root,
            user: &self.user,
        }
    }

    /// The TCP port on [`host`](Self::host), or for a socket-only cluster the number
    /// that names its socket (`.s.PGSQL.PORT`); it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1`, or for a socket-only cluster the socket directory (libpq and the
    /// `postgres` crate read a host starting with `/` as one).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The bootstrap superuser: `postgres` unless the builder named another.
    pub fn user(&self) -> &str {
        &self.superuser
    }

    /// The operating-system account the server, and so every program or file a
    /// superuser's `COPY ... PROGRAM` reaches, runs as.
    pub fn os_user(&self) -> &str {
        &self.user.name
    }

    /// The superuser's password, if the cluster was built with one.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The directory of the server's Unix socket, for `psql -h`.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory of the server binaries, so callers can use the `pg_dump`,
    /// `pg_restore` and `psql` of the same version.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The server's stdout and stderr, appended to across restarts.
    pub fn log_file(&self) -> &Path {
        &self.log
    }

    /// The postmaster's process id, or `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// `postgresql://postgres[:password]@127.0.0.1:PORT/dbname`, or for a socket-only
    /// cluster `postgresql://postgres@%2Fpath%2Fto%2Fsocket:PORT/dbname`.
    pub fn url(&self, dbname: &str) -> String {
        let password = match &self.password {
            Some(p) => format!(":{}", quote::percent_encode(p)),
            None => String::new(),
        };
        format!(
            "postgresql://{}{password}@{}:{}/{}",
            quote::percent_encode(&self.superuser),
            quote::percent_encode(&self.host),
            self.port,
            quote::percent_encode(dbname)
        )
    }

    /// The URL of `role` in `dbname`, without password: for a role the caller created,
    /// which over the Unix socket is trusted like the superuser.
    pub fn url_as(&self, role: &str, dbname: &str) -> String {
        format!(
            "postgresql://{}@{}:{}/{}",
            quote::percent_encode(role),
            quote::percent_encode(&self.host),
            self.port,
            quote::percent_encode(dbname)
        )
    }

    /// Run `sql` in `dbname` as the superuser over the Unix socket with `psql`
    /// (unaligned, tuples only), returning its standard output.
    pub fn psql(&self, dbname: &str, sql: &str) -> Result<String, TempDbError> {
        self.socket().psql(dbname, sql, || {
            format!("run SQL in database {}", quote::ident(dbname))
        })
    }

    /// `CREATE DATABASE name` and its URL.
    pub fn create_database(&self, name: &str) -> Result<String, TempDbError> {
        let sql = format!("CREATE DATABASE {}", quote::ident(name));
        self.socket().psql("postgres", &sql, || {
            format!("create database {}", quote::ident(name))
        })?;
        Ok(self.url(name))
    }

    /// Stop the server, e.g. to simulate a crash with [`StopMode::Immediate`]. The
    /// data directory stays; [`restart`](Self::restart) brings the server back.
    pub fn stop(&mut self, mode: StopMode) -> Result<(), TempDbError> {
        let Some(mut child) = self.server.take() else {
            return Ok(());
        };
        server::stop(&mut child, mode, &self.files())
    }

    /// Start the server again on the same port and data directory, stopping it
    /// first (fast) if it is running.
    pub fn restart(&mut self) -> Result<(), TempDbError> {
        self.stop(StopMode::Fast)?;
        let child = server::launch(&self.files(), self.port).map_err(|failed| failed.error)?;
        self.server = Some(child);
        Ok(())
    }

    /// Leave the cluster running beyond this process (for `planrun demo --keep`).
    /// Nothing cleans it up any more; the returned stop command does.
    pub fn keep(mut self) -> KeptCluster {
        // Dropping a `Child` neither kills nor waits for it.
        self.server = None;
        self.watchdog = None;
        let dir = self
            .dir
            .take()
            .map_or_else(|| self.root.clone(), tempfile::TempDir::keep);
        let pg_ctl = self.bin_dir.join("pg_ctl");
        let stop = format!(
            "{} stop -m fast -D {}",
            quote::shell(&pg_ctl.to_string_lossy()),
            quote::shell(&self.data_dir.to_string_lossy())
        );
        let stop = match self.user.switch_to {
            // pg_ctl refuses to run as root; the run user may have no login shell.
            Some(_) => format!(
                "su -s /bin/sh {} -c {}",
                self.user.name,
                quote::shell(&stop)
            ),
            None => stop,
        };
        KeptCluster {
            url: self.url("postgres"),
            host: self.host.clone(),
            port: self.port,
            stop_command: format!("{stop} && rm -rf {}", quote::shell(&dir.to_string_lossy())),
            dir,
            data_dir: self.data_dir.clone(),
            log_file: self.log.clone(),
        }
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let stopped = match self.server.take() {
            Some(mut child) => server::stop(&mut child, StopMode::Immediate, &self.files()).is_ok(),
            None => true,
        };
        if let Some(watchdog) = self.watchdog.take() {
            if stopped {
                drop(watchdog);
            } else {
                // Our way failed; the watchdog's (signal by pid file) may still work.
                watchdog.fire();
            }
        }
        // TempDir's drop removes the directory and ignores errors, as Drop must.
        self.dir = None;
    }
}

/// The socket directory as a host name; it must be text to go into a URL.
fn socket_host(socket_dir: &Path) -> Result<String, TempDbError> {
    socket_dir
        .to_str()
        .map(str::to_owned)
        .ok_or_else(|| TempDbError::Invalid {
            what: format!("{} as a socket directory", socket_dir.display()),
            reason: format!("a URL cannot name it: set {DIR_ENV} to a UTF-8 path"),
        })
}

/// A port nobody listens on right now.
fn free_port() -> Result<u16, TempDbError> {
    TcpListener::bind((HOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| TempDbError::io(format!("find a free TCP port on {HOST}"), e))
}
