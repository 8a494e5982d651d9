//! Throttling a batched stage on the server's health: before each batch and each
//! catch-up pass, planrun waits while a streaming replica's replay lags more than
//! `max_replica_lag` (`pg_stat_replication.replay_lag`), while another session's
//! transaction has been open longer than `max_transaction_age`, or while the plan's
//! `pause_while` query returns true; and it adapts the batch size so that a batch takes
//! about `batch_target`.

use std::time::Duration;

use planrun_transform::BatchSettings;
use postgres::GenericClient;

use crate::trusted_sql::TrustedSearchPath;

/// How often a bad signal is looked at again.
const RECHECK: Duration = Duration::from_millis(250);
/// Batch sizes stay within these bounds, and change by at most this factor at a time.
const MIN_BATCH: u64 = 100;
const MAX_BATCH: u64 = 1_000_000;
const MAX_STEP: f64 = 2.0;

/// Why planrun is waiting, for the progress line and the report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Unhealthy {
    ReplicaLag { replica: String, lag: Duration },
    LongTransaction { pid: i32, age: Duration },
    PauseWhile,
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
            Unhealthy::LongTransaction { pid, age } => write!(
                f,
                "session {pid} has had a transaction open for {:.0} s",
                age.as_secs_f64()
            ),
            Unhealthy::PauseWhile => f.write_str("the plan's pause_while query returns true"),
        }
    }
}

/// The first bad health signal, if any.
pub(crate) fn check<C: GenericClient>(
    conn: &mut C,
    settings: &BatchSettings,
) -> Result<Option<Unhealthy>, postgres::Error> {
    if let Some(limit) = settings.max_replica_lag {
        let trusted = &mut *TrustedSearchPath::enter(conn)?;
        let worst = trusted.query_opt(
            "SELECT coalesce(application_name, client_addr::text, pid::text),
                    extract(epoch FROM replay_lag)::float8
             FROM pg_stat_replication WHERE replay_lag IS NOT NULL
             ORDER BY replay_lag DESC LIMIT 1",
            &[],
        )?;
        if let Some(row) = worst {
            let lag = Duration::from_secs_f64(row.get::<_, f64>(1).max(0.0));
            if lag > limit {
                return Ok(Some(Unhealthy::ReplicaLag {
                    replica: row.get(0),
                    lag,
                }));
            }
        }
    }
    if let Some(limit) = settings.max_transaction_age {
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
        if let Some(row) = oldest {
            let age = Duration::from_secs_f64(row.get::<_, f64>(1).max(0.0));
            if age > limit {
                return Ok(Some(Unhealthy::LongTransaction {
                    pid: row.get(0),
                    age,
                }));
            }
        }
    }
    if let Some(sql) = &settings.pause_while {
        let wait: Option<bool> = conn.query_one(sql.as_str(), &[])?.get(0);
        if wait == Some(true) {
            return Ok(Some(Unhealthy::PauseWhile));
        }
    }
    Ok(None)
}

/// Waits until every health signal is good, telling `on_wait` each new reason;
/// returns how long it waited, or `None` when a signal interrupted the wait.
pub(crate) fn wait_until_healthy<C: GenericClient>(
    conn: &mut C,
    settings: &BatchSettings,
    mut on_wait: impl FnMut(&Unhealthy),
) -> Result<Option<Duration>, postgres::Error> {
    let mut started = None;
    let mut last: Option<Unhealthy> = None;
    while let Some(reason) = check(conn, settings)? {
        started.get_or_insert_with(std::time::Instant::now);
        if last.as_ref() != Some(&reason) {
            on_wait(&reason);
        }
        last = Some(reason);
        if !crate::interrupt::sleep(RECHECK) {
            return Ok(None);
        }
    }
    Ok(Some(
        started.map_or(Duration::ZERO, |started| started.elapsed()),
    ))
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
}
