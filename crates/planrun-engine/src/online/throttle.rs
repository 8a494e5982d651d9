//! Throttling a batched stage on the server's health: before each batch and each
//! catch-up pass, planrun waits while a streaming replica's replay lags more than
//! `max_replica_lag` (`pg_stat_replication.replay_lag`) or a replication slot has no
//! standby connected (`pg_replication_slots`, unless `on_replica_gone = "continue"`),
//! while another session's transaction has been open longer than
//! `max_transaction_age`, or while the plan's `pause_while` query returns true; and it
//! adapts the batch size so that a batch takes about `batch_target`.
//!
//! Every health query runs in a transaction of its own, rolled back, under
//! [`HEALTH_QUERY_TIMEOUT`]: a `pause_while` query that blocks (say on a lock) is a bad
//! signal that is said, not a hang, and a signal's cancel ends it. How a wait is told
//! lives in `health_wait.rs`.

use std::time::Duration;

use planrun_transform::{BatchSettings, ReplicaGone};
use postgres::error::SqlState;
use postgres::GenericClient;

use crate::db::trusted_sql::TrustedSearchPath;

/// The longest one health query may run. Fixed rather than a plan setting: a health
/// check answers from catalogs or a small query, in milliseconds; one that takes
/// seconds is itself the sign of trouble.
pub(crate) const HEALTH_QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Batch sizes stay within these bounds, and change by at most this factor at a time.
const MIN_BATCH: u64 = 100;
const MAX_BATCH: u64 = 1_000_000;
const MAX_STEP: f64 = 2.0;

/// Why planrun is waiting, for the progress line and the report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Unhealthy {
    ReplicaLag {
        replica: String,
        lag: Duration,
    },
    /// A replication slot whose standby is not connected, `behind` bytes of WAL back.
    ReplicaGone {
        slot: String,
        behind: i64,
    },
    LongTransaction {
        pid: i32,
        age: Duration,
    },
    PauseWhile,
    /// A health query did not answer within [`HEALTH_QUERY_TIMEOUT`].
    CheckHangs {
        check: &'static str,
    },
}

impl Unhealthy {
    /// What stays the same while the reason does: its kind and subject, without the
    /// lag or age that change at every look.
    pub(crate) fn state(&self) -> (std::mem::Discriminant<Unhealthy>, String) {
        let subject = match self {
            Unhealthy::ReplicaLag { replica, .. } => replica.clone(),
            Unhealthy::ReplicaGone { slot, .. } => slot.clone(),
            Unhealthy::LongTransaction { pid, .. } => pid.to_string(),
            Unhealthy::PauseWhile => String::new(),
            Unhealthy::CheckHangs { check } => (*check).to_owned(),
        };
        (std::mem::discriminant(self), subject)
    }
}

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unhealthy::ReplicaLag { replica, lag } => {
                write!(
                    f,
                    "replica {replica} replays {:.1} s behind",
                    lag.as_secs_f64()
                )
            }
            Unhealthy::ReplicaGone { slot, behind } => write!(
                f,
                "replication slot {slot} has no standby connected and is {} behind; it counts \
                 as lagging (on_replica_gone = \"continue\" goes on without it)",
                megabytes(*behind)
            ),
            Unhealthy::LongTransaction { pid, age } => write!(
                f,
                "session {pid} has had a transaction open for {:.0} s",
                age.as_secs_f64()
            ),
            Unhealthy::PauseWhile => f.write_str("the plan's pause_while query returns true"),
            Unhealthy::CheckHangs { check } => write!(
                f,
                "the {check} check did not answer within {} s (cancelled; asked again)",
                HEALTH_QUERY_TIMEOUT.as_secs()
            ),
        }
    }
}

pub(crate) fn megabytes(bytes: i64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_048_576.0)
}

/// One look at the server's health.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// The first bad signal, if any.
    pub waiting: Option<Unhealthy>,
    /// Slots without a standby that `on_replica_gone = "continue"` lets planrun ignore,
    /// with how far behind they are.
    pub gone_ignored: Vec<(String, i64)>,
}

/// A health query that failed, named for the report.
struct Failed {
    check: &'static str,
    error: postgres::Error,
}

fn named(check: &'static str) -> impl FnOnce(postgres::Error) -> Failed {
    move |error| Failed { check, error }
}

/// Looks at the server's health once, each query bounded by
/// [`HEALTH_QUERY_TIMEOUT`]. A query that runs out of time is a bad signal; any other
/// error (a signal's cancel included) is returned.
pub(crate) fn look<C: GenericClient>(
    conn: &mut C,
    settings: &BatchSettings,
) -> Result<Health, postgres::Error> {
    let mut tx = conn.transaction()?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}",
        HEALTH_QUERY_TIMEOUT.as_millis()
    ))?;
    match check(&mut tx, settings) {
        Ok(health) => Ok(health),
        Err(Failed { check, error })
            if error.code() == Some(&SqlState::QUERY_CANCELED)
                && crate::db::interrupt::requested().is_none() =>
        {
            Ok(Health {
                waiting: Some(Unhealthy::CheckHangs { check }),
                ..Health::default()
            })
        }
        Err(Failed { error, .. }) => Err(error),
    }
}

/// Every configured signal, in order; the first bad one is the reason to wait.
fn check<C: GenericClient>(conn: &mut C, settings: &BatchSettings) -> Result<Health, Failed> {
    let mut health = Health::default();
    if let Some(limit) = settings.max_replica_lag {
        health.waiting = replica_lag(conn, limit).map_err(named("max_replica_lag"))?;
        if health.waiting.is_none() {
            let gone = slots_without_standby(conn).map_err(named("max_replica_lag"))?;
            match settings.on_replica_gone {
                ReplicaGone::Wait => {
                    health.waiting = gone
                        .into_iter()
                        .next()
                        .map(|(slot, behind)| Unhealthy::ReplicaGone { slot, behind });
                }
                ReplicaGone::Continue => health.gone_ignored = gone,
            }
        }
    }
    if health.waiting.is_none() {
        if let Some(limit) = settings.max_transaction_age {
            health.waiting = long_transaction(conn, limit).map_err(named("max_transaction_age"))?;
        }
    }
    if health.waiting.is_none() {
        if let Some(sql) = &settings.pause_while {
            let wait: Option<bool> = conn
                .query_one(sql.as_str(), &[])
                .map_err(named("pause_while"))?
                .get(0);
            if wait == Some(true) {
                health.waiting = Some(Unhealthy::PauseWhile);
            }
        }
    }
    Ok(health)
}

fn replica_lag<C: GenericClient>(
    conn: &mut C,
    limit: Duration,
) -> Result<Option<Unhealthy>, postgres::Error> {
    let trusted = &mut *TrustedSearchPath::enter(conn)?;
    let worst = trusted.query_opt(
        "SELECT coalesce(application_name, client_addr::text, pid::text),
                extract(epoch FROM replay_lag)::float8
         FROM pg_stat_replication WHERE replay_lag IS NOT NULL
         ORDER BY replay_lag DESC LIMIT 1",
        &[],
    )?;
    Ok(worst.and_then(|row| {
        let lag = Duration::from_secs_f64(row.get::<_, f64>(1).max(0.0));
        (lag > limit).then(|| Unhealthy::ReplicaLag {
            replica: row.get(0),
            lag,
        })
    }))
}

/// Slots that hold WAL for a consumer not connected now (a standby that went away, a
/// subscriber that stopped), furthest behind first. A connected one is judged by
/// its replay lag instead; a slot that never reserved WAL holds nothing back.
fn slots_without_standby<C: GenericClient>(
    conn: &mut C,
) -> Result<Vec<(String, i64)>, postgres::Error> {
    let trusted = &mut *TrustedSearchPath::enter(conn)?;
    let rows = trusted.query(
        "SELECT slot_name::text,
                greatest(pg_wal_lsn_diff(pg_current_wal_lsn(),
                                         coalesce(confirmed_flush_lsn, restart_lsn)), 0)::int8
         FROM pg_replication_slots
         WHERE NOT active AND coalesce(confirmed_flush_lsn, restart_lsn) IS NOT NULL
         ORDER BY 2 DESC, 1",
        &[],
    )?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

fn long_transaction<C: GenericClient>(
    conn: &mut C,
    limit: Duration,
) -> Result<Option<Unhealthy>, postgres::Error> {
    let trusted = &mut *TrustedSearchPath::enter(conn)?;
    let oldest = trusted.query_opt(
        "SELECT pid, extract(epoch FROM clock_timestamp() - xact_start)::float8
         FROM pg_stat_activity
         WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
           AND backend_type = 'client backend'
           AND application_name NOT LIKE 'planrun%'
         ORDER BY xact_start LIMIT 1",
        &[],
    )?;
    Ok(oldest.and_then(|row| {
        let age = Duration::from_secs_f64(row.get::<_, f64>(1).max(0.0));
        (age > limit).then(|| Unhealthy::LongTransaction {
            pid: row.get(0),
            age,
        })
    }))
}

/// The next batch size: toward `target` from how long a batch of `size` took.
pub(crate) fn next_batch_size(size: u64, took: Duration, target: Option<Duration>) -> u64 {
    let Some(target) = target else {
        return size;
    };
    let took = took.as_secs_f64().max(0.001);
    let factor = (target.as_secs_f64() / took).clamp(1.0 / MAX_STEP, MAX_STEP);
    ((size as f64 * factor) as u64).clamp(MIN_BATCH, MAX_BATCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_size_moves_toward_the_target_by_at_most_a_factor_of_two() {
        let target = Some(Duration::from_millis(500));
        assert_eq!(
            next_batch_size(1000, Duration::from_millis(250), target),
            2000
        );
        assert_eq!(
            next_batch_size(1000, Duration::from_millis(100), target),
            2000
        );
        assert_eq!(
            next_batch_size(1000, Duration::from_millis(1000), target),
            500
        );
        assert_eq!(next_batch_size(1000, Duration::from_secs(10), target), 500);
        assert_eq!(
            next_batch_size(150, Duration::from_secs(10), target),
            MIN_BATCH
        );
        assert_eq!(next_batch_size(1000, Duration::from_secs(10), None), 1000);
    }

    #[test]
    fn a_reason_keeps_its_state_while_its_lag_or_age_changes() {
        let age = |secs, pid| Unhealthy::LongTransaction {
            pid,
            age: Duration::from_secs(secs),
        };
        assert_eq!(age(2, 7).state(), age(9, 7).state());
        assert_ne!(age(2, 7).state(), age(2, 8).state());
        assert_ne!(age(2, 7).state(), Unhealthy::PauseWhile.state());
    }
}
