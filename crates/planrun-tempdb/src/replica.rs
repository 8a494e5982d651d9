//! [`TempReplica`]: a streaming standby of a [`TempCluster`], so that what planrun does
//! about replication lag is tested against real replication, not a mock of it.
//!
//! The standby's data directory is a `pg_basebackup -R -X stream` of the primary; from
//! there it is a cluster like any other (its own temporary directory, port, socket
//! directory, watchdog), started with `hot_standby = on`. It streams from the primary
//! over the primary's Unix socket, where initdb's `pg_hba.conf` trusts replication
//! connections whether or not the cluster has a password, and PostgreSQL 15's defaults
//! (`wal_level = replica`, `max_wal_senders = 10`) allow it: the primary needs no
//! option. By default no replication slot: a paused replay still receives and keeps
//! the WAL, so the primary need not hold it back. [`TempCluster::start_replica_on_slot`]
//! streams on a physical slot instead (`pg_basebackup -C -S`, which `-R` records as
//! `primary_slot_name`), as production standbys do: stopped, such a replica leaves its
//! slot on the primary, inactive and falling behind. Dropping the replica drops the
//! slot; should the owner die instead, the primary dies with it (its own watchdog), so
//! no slot outlives both.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::psql::ServerSocket;
use crate::{StopMode, TempCluster, TempDbError};

/// What a standby needs beyond its primary's settings. Feedback every second rather
/// than every ten, so that the primary's `pg_stat_replication` follows replay closely.
const STANDBY_SETTINGS: [(&str, &str); 2] = [
    ("hot_standby", "on"),
    ("wal_receiver_status_interval", "1s"),
];
const POLL: Duration = Duration::from_millis(20);
/// How long the startup process may take to act on a pause request.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Numbers the replicas of this process, for their application names.
static REPLICAS: AtomicU64 = AtomicU64::new(0);

/// A running hot standby streaming from a [`TempCluster`]; start one with
/// [`TempCluster::start_replica`].
///
/// It has the primary's settings, users and password (TLS and
/// [`socket_only`](crate::TempClusterBuilder::socket_only) included), its own port and
/// socket, and an [`application_name`](Self::application_name) that finds its row in
/// the primary's `pg_stat_replication`. It is read-only, as standbys are.
///
/// Dropping it stops its server (immediate shutdown) and deletes its files; should the
/// owning process die without dropping it, a watchdog process does the same. Dropping
/// the primary first is harmless: the replica keeps trying to reconnect until dropped.
#[derive(Debug)]
pub struct TempReplica {
    server: TempCluster,
    application_name: String,
    primary: ServerSocket,
    /// The physical slot it streams on, if any (named as the replica).
    slot: Option<String>,
}

impl TempReplica {
    pub(crate) fn start(primary: &TempCluster, on_slot: bool) -> Result<TempReplica, TempDbError> {
        let application_name = format!(
            "planrun_replica_{}_{}",
            std::process::id(),
            REPLICAS.fetch_add(1, Ordering::Relaxed)
        );
        let server = TempCluster::prepare(
            "planrun-pg-replica-",
            primary.bin_dir().to_path_buf(),
            primary.run_user().clone(),
            primary.password().map(str::to_owned),
            primary.is_socket_only(),
            primary.user().to_owned(),
        )?;
        let slot = on_slot.then(|| application_name.clone());
        base_backup(primary, &server, &application_name, slot.as_deref())?;
        // The caller's settings win over our defaults again, as on the primary; the
        // standby's own come last, for without them it would not be one.
        let mut settings = primary.settings().to_vec();
        settings.extend(
            STANDBY_SETTINGS
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string())),
        );
        server.configure(&settings, None)?;
        Ok(TempReplica {
            server: server.launch_on_a_free_port()?,
            application_name,
            primary: primary.socket(),
            slot,
        })
    }

    /// The physical replication slot it streams on, when started with
    /// [`TempCluster::start_replica_on_slot`].
    pub fn slot_name(&self) -> Option<&str> {
        self.slot.as_deref()
    }

    /// The name the replica streams under: its `application_name` in the primary's
    /// `pg_stat_replication`, `planrun_replica_<pid>_<n>`.
    pub fn application_name(&self) -> &str {
        &self.application_name
    }

    /// As [`TempCluster::url`]: the superuser in `dbname` on the replica.
    pub fn url(&self, dbname: &str) -> String {
        self.server.url(dbname)
    }

    /// As [`TempCluster::host`].
    pub fn host(&self) -> &str {
        self.server.host()
    }

    /// As [`TempCluster::port`]; not the primary's.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The replica's postmaster, or `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    pub fn data_dir(&self) -> &Path {
        self.server.data_dir()
    }

    /// The replica's server log, appended to across restarts.
    pub fn log_file(&self) -> &Path {
        self.server.log_file()
    }

    /// As [`TempCluster::psql`], on the replica: reading works, writing fails.
    pub fn psql(&self, dbname: &str, sql: &str) -> Result<String, TempDbError> {
        self.server.psql(dbname, sql)
    }

    /// Stop replaying WAL (`pg_wal_replay_pause()`), returning once the replica
    /// confirms the pause. It still receives WAL, so the primary's
    /// `pg_stat_replication` shows `replay_lsn` and `replay_lag` falling behind while
    /// `flush_lsn` keeps up: replication lag, made on purpose.
    pub fn pause_replay(&self) -> Result<(), TempDbError> {
        self.psql("postgres", "SELECT pg_wal_replay_pause()")?;
        let what = || format!("replay on replica {} to pause", self.application_name);
        wait_for(what, PAUSE_TIMEOUT, || {
            let state = self.psql("postgres", "SELECT pg_get_wal_replay_pause_state()")?;
            Ok(match state.trim() {
                "paused" => Look::Done,
                other => Look::NotYet(format!("pause state {other:?}")),
            })
        })
    }

    /// Replay again what arrived meanwhile and what comes (`pg_wal_replay_resume()`).
    pub fn resume_replay(&self) -> Result<(), TempDbError> {
        self.psql("postgres", "SELECT pg_wal_replay_resume()")
            .map(drop)
    }

    /// Wait until the primary's `pg_stat_replication` shows this replica `streaming`,
    /// which takes a moment after the start (state `startup`, then `catchup`).
    pub fn wait_until_streaming(&self, timeout: Duration) -> Result<(), TempDbError> {
        let what = || {
            format!(
                "replica {} to stream from its primary",
                self.application_name
            )
        };
        let sql = format!(
            "SELECT state FROM pg_stat_replication WHERE application_name = '{}'",
            self.application_name
        );
        wait_for(what, timeout, || {
            let state = self.on_primary(&sql)?;
            Ok(match state.trim() {
                "streaming" => Look::Done,
                "" => Look::NotYet("no row in pg_stat_replication".into()),
                other => Look::NotYet(format!("state {other}")),
            })
        })
    }

    /// Wait until the replica has replayed all the primary had written at the call
    /// (`pg_current_wal_lsn()`), by the `replay_lsn` the primary's
    /// `pg_stat_replication` shows: then both the replica's data and the primary's
    /// view of it are current. While replay is paused, this times out.
    pub fn wait_until_caught_up(&self, timeout: Duration) -> Result<(), TempDbError> {
        let target = self.on_primary("SELECT pg_current_wal_lsn()")?;
        let target = target.trim();
        let what = || {
            format!(
                "replica {} to replay its primary's WAL up to {target}",
                self.application_name
            )
        };
        let sql = format!(
            "SELECT state, replay_lsn, replay_lsn >= '{target}' \
             FROM pg_stat_replication WHERE application_name = '{}'",
            self.application_name
        );
        wait_for(what, timeout, || {
            let row = self.on_primary(&sql)?;
            Ok(match row.trim().split('|').collect::<Vec<_>>()[..] {
                [_, _, "t"] => Look::Done,
                [state, replay_lsn, _] => {
                    Look::NotYet(format!("state {state}, replay_lsn {replay_lsn:?}"))
                }
                _ => Look::NotYet("no row in pg_stat_replication".into()),
            })
        })
    }

    /// As [`TempCluster::stop`], for the replica; its row in the primary's
    /// `pg_stat_replication` goes away a moment later.
    pub fn stop(&mut self, mode: StopMode) -> Result<(), TempDbError> {
        self.server.stop(mode)
    }

    /// As [`TempCluster::restart`]: the replica resumes streaming where it stopped.
    pub fn restart(&mut self) -> Result<(), TempDbError> {
        self.server.restart()
    }

    fn on_primary(&self, sql: &str) -> Result<String, TempDbError> {
        self.primary.psql("postgres", sql, || {
            format!("watch replica {} from its primary", self.application_name)
        })
    }
}

impl Drop for TempReplica {
    /// The slot, if any, goes with the replica: stopped first, so that the slot is
    /// inactive and can be dropped. Best effort, as Drop must be; a primary already
    /// gone took its slots with it.
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        let _ = self.server.stop(StopMode::Immediate);
        let sql = format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = '{slot}' AND NOT active"
        );
        let _ = self.on_primary(&sql);
    }
}

/// Copy `primary`'s data directory into `replica`'s with `pg_basebackup`, as the user
/// the servers run as. `-R` writes `standby.signal` and a `primary_conninfo` that
/// names the primary's socket and `application_name`.
fn base_backup(
    primary: &TempCluster,
    replica: &TempCluster,
    application_name: &str,
    slot: Option<&str>,
) -> Result<(), TempDbError> {
    let program = primary.bin_dir().join("pg_basebackup");
    let conninfo = format!(
        "{} application_name={application_name}",
        primary.socket().conninfo("postgres")
    );
    let mut cmd = replica.run_user().command(&program, replica.root());
    cmd.arg("-D")
        .arg(replica.data_dir())
        // A fast checkpoint: a spread one takes minutes on an idle server.
        .args([
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
            "--no-manifest",
        ])
        .args(["-w", "-d"])
        .arg(conninfo)
        .args(slot.map(|slot| ["-C", "-S", slot]).into_iter().flatten())
        .stdin(Stdio::null());
    // `-R` records every setting of the connection, including those libpq took from
    // the environment: the caller's PG* variables must not end up in the replica.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            cmd.env_remove(name);
        }
    }
    let output = cmd
        .output()
        .map_err(|e| TempDbError::io_at("run", &program, e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(TempDbError::BaseBackup {
        program,
        output: format!(
            "{} ({})",
            String::from_utf8_lossy(&output.stderr).trim(),
            output.status
        ),
    })
}

/// One look at what is being waited for.
enum Look {
    Done,
    /// Not yet; what was seen instead, for the error should time run out.
    NotYet(String),
}

/// Look every [`POLL`] until `look` says done, or fail once `timeout` has passed.
fn wait_for(
    what: impl Fn() -> String,
    timeout: Duration,
    mut look: impl FnMut() -> Result<Look, TempDbError>,
) -> Result<(), TempDbError> {
    let started = Instant::now();
    loop {
        let last_seen = match look()? {
            Look::Done => return Ok(()),
            Look::NotYet(seen) => seen,
        };
        if started.elapsed() >= timeout {
            return Err(TempDbError::Timeout {
                what: what(),
                waited: timeout,
                last_seen,
            });
        }
        sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_that_runs_out_says_what_it_saw_last() {
        let mut looks = 0;
        let err = wait_for(
            || "the moon".into(),
            Duration::ZERO,
            || {
                looks += 1;
                Ok(Look::NotYet(format!("look {looks}")))
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "wait for the moon: gave up after 0ns; last seen: look 1"
        );
        let mut looks = 0;
        wait_for(
            || "the sun".into(),
            Duration::from_secs(10),
            || {
                looks += 1;
                Ok(if looks < 3 {
                    Look::NotYet(String::new())
                } else {
                    Look::Done
                })
            },
        )
        .unwrap();
        assert_eq!(looks, 3);
    }
}
