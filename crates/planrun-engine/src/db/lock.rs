//! The per-plan lock: a PostgreSQL session advisory lock held for the whole apply.
//! It dies with the session, so a killed planrun never leaves it behind. Being a
//! session's, it guards nothing behind a pooler that shares server connections
//! between clients, which is why the session is checked for one before the lock is
//! taken (`Target::connect_own_session`).

use std::time::{Duration, Instant};

use planrun_report::LockHolder;
use postgres::Client;
use sha2::{Digest, Sha256};

use crate::db::trusted_sql::TrustedSearchPath;
use crate::error::EngineError;

/// First key of planrun's advisory locks ("plan" in ASCII), so they are easy to find
/// in `pg_locks` and unlikely to collide with an application's own.
const LOCK_CLASS: i32 = 0x706c_616e;

/// The second lock key for a plan name.
pub fn plan_lock_key(plan: &str) -> i32 {
    let digest = Sha256::digest(format!("planrun:{plan}").as_bytes());
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Takes the plan's lock on `client`, waiting up to `wait`.
pub fn acquire(client: &mut Client, plan: &str, wait: Duration) -> Result<(), EngineError> {
    let key = plan_lock_key(plan);
    let started = Instant::now();
    loop {
        if try_lock(client, key)? {
            return Ok(());
        }
        if started.elapsed() >= wait {
            let holder = holder(client, plan).ok().flatten();
            return Err(EngineError::Locked {
                plan: plan.to_owned(),
                holder,
                waited_ms: started.elapsed().as_millis() as u64,
            });
        }
        let pause = Duration::from_millis(100).min(wait.saturating_sub(started.elapsed()));
        if !crate::db::interrupt::sleep(pause) {
            let signal = crate::db::interrupt::requested().map_or("a signal", |i| i.name());
            return Err(EngineError::Interrupted(format!(
                "{signal} while waiting for the plan lock; nothing ran"
            )));
        }
    }
}

/// One attempt, in a transaction of its own; a session lock outlives it by design.
fn try_lock(client: &mut Client, key: i32) -> Result<bool, EngineError> {
    let mut client = TrustedSearchPath::enter(client).map_err(EngineError::database(
        "cannot set planrun's own search_path",
    ))?;
    let row = client
        .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK_CLASS, &key])
        .map_err(EngineError::database("cannot take the plan lock"))?;
    Ok(row.get(0))
}

/// Releases the lock (it would also go with the session).
pub fn release(client: &mut Client, plan: &str) {
    let Ok(mut client) = TrustedSearchPath::enter(client) else {
        return;
    };
    let _ = client.execute(
        "SELECT pg_advisory_unlock($1, $2)",
        &[&LOCK_CLASS, &plan_lock_key(plan)],
    );
}

/// The session holding the plan's lock, if any.
pub fn holder(client: &mut Client, plan: &str) -> Result<Option<LockHolder>, postgres::Error> {
    let key = plan_lock_key(plan);
    let mut client = TrustedSearchPath::enter(client)?;
    let row = client.query_opt(
        "SELECT a.pid, coalesce(a.application_name, ''), \
                coalesce(to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'), '?'), \
                coalesce(host(a.client_addr), 'local socket') \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted \
           AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 2 \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         LIMIT 1",
        &[&(LOCK_CLASS as u32 as i64), &(key as u32 as i64)],
    )?;
    Ok(row.map(|row| LockHolder {
        pid: row.get(0),
        application_name: row.get(1),
        since: row.get(2),
        client: row.get(3),
    }))
}
