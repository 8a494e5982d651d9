//! Throwaway PostgreSQL clusters for tests, `planrun demo` and `planrun rehearse`.
//!
//! [`TempCluster::start`] gives a server on a free loopback port, with its own data
//! directory, Unix socket and log in a temporary directory. Any local account can
//! reach that port, so a cluster holding data others must not read is built with
//! [`TempClusterBuilder::socket_only`]: no TCP listener, only a socket in a directory
//! of the server's user, mode 0700. A cluster is fast enough to give every test its
//! own: `initdb` runs once per process and configuration, and each cluster starts
//! from a copy. Durability is traded for speed (`fsync = off`, ...).
//!
//! Nothing outlives its owner: dropping the cluster stops the server and deletes its
//! files, and a watchdog process does the same should the owner die without dropping
//! it (SIGKILL, `process::exit`, a cluster in a `static`). When running as root, the
//! server runs as the `postgres` user (or `nobody`), since PostgreSQL refuses root.
//!
//! Clusters live under `$PLANRUN_TEMPDB_DIR` if set, else the system temporary
//! directory. Copying a template is about a thousand file creations, which a busy
//! disk makes slow (hundreds of milliseconds); on a tmpfs such as `/dev/shm` a cluster
//! starts in under 0.1 s. It is not the default because `planrun rehearse` may restore
//! a large database, which would then live in memory.
//!
//! ```no_run
//! let cluster = planrun_tempdb::TempCluster::start()?;
//! let url = cluster.create_database("app")?;
//! # Ok::<(), planrun_tempdb::TempDbError>(())
//! ```
//!
//! [`TempCluster::start_replica`] adds a [`TempReplica`]: a hot standby streaming from
//! the cluster, made with `pg_basebackup -R` and cleaned up the same way, for testing
//! against real replication lag. Pausing its replay makes lag on purpose, which the
//! primary's `pg_stat_replication` then shows; a base backup is about as many file
//! creations as a template copy, so a replica takes a second or two to start on a
//! disk and much less on a tmpfs.
//!
//! ```no_run
//! # use std::time::Duration;
//! let primary = planrun_tempdb::TempCluster::start()?;
//! let replica = primary.start_replica()?;
//! replica.wait_until_streaming(Duration::from_secs(30))?;
//! replica.pause_replay()?; // from here on, writes on the primary are lag
//! # Ok::<(), planrun_tempdb::TempDbError>(())
//! ```

//!
//! [`TempPooler`] puts a throwaway PgBouncer in front of a cluster, in session or
//! transaction [`PoolMode`], cleaned up the same way, to test what a pooler does to
//! planrun and to an application beside it. It needs the `pgbouncer` binary
//! (`$PGBOUNCER`, `PATH`, or Debian's `/usr/sbin`; `.ci/install` installs it).
//!
//! ```no_run
//! # use planrun_tempdb::{PoolMode, TempCluster, TempPooler};
//! let cluster = TempCluster::start()?;
//! cluster.create_database("app")?;
//! let pooler = TempPooler::start_with(&cluster, PoolMode::Transaction, &[("default_pool_size", "1")])?;
//! let url = pooler.url("app");
//! # Ok::<(), planrun_tempdb::TempDbError>(())
//! ```

mod bin;
mod builder;
mod cluster;
mod error;
mod files;
mod pooler;
mod psql;
mod quote;
mod replica;
mod server;
mod template;
mod user;
mod watchdog;

pub use bin::find_bin_dir;
pub use builder::TempClusterBuilder;
pub use cluster::{KeptCluster, TempCluster};
pub use error::TempDbError;
pub use files::DIR_ENV;
pub use pooler::{PoolMode, TempPooler};
pub use replica::TempReplica;
pub use server::StopMode;
