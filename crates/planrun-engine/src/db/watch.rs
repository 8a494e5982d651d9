//! Who blocks a stage: while an apply runs, a second connection polls
//! `pg_blocking_pids()` for planrun's session, so that a stage failing on its
//! `lock_timeout` can name the session that held the lock, which PostgreSQL's own
//! message ("canceling statement due to lock timeout") does not.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use planrun_report::Blocker;
use postgres::Client;

use crate::db::connect::Target;

/// The columns of `pg_stat_activity a` that [`blocker`] reads, in order.
pub(crate) const SESSION_COLUMNS: &str = "a.pid, coalesce(a.application_name, ''), \
    coalesce(a.usename::text, ''), coalesce(a.state, ''), \
    coalesce(to_char(a.xact_start, 'YYYY-MM-DD\"T\"HH24:MI:SSTZH:TZM'), '-'), \
    left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 200)";

/// The session of a row selected with [`SESSION_COLUMNS`].
pub(crate) fn blocker(row: &postgres::Row) -> Blocker {
    Blocker {
        pid: row.get(0),
        application_name: row.get(1),
        user: row.get(2),
        state: row.get(3),
        since: row.get(4),
        query: row.get(5),
    }
}

const POLL: Duration = Duration::from_millis(100);

/// Polls for sessions blocking `pid` until dropped.
pub(crate) struct BlockerWatch {
    /// Dropped to stop the poller: it waits on this between polls, so it stops at
    /// once rather than after its pause (a no-op apply of a fleet target would
    /// otherwise spend most of its time waiting for the poller to wake up).
    stop: Option<mpsc::Sender<()>>,
    seen: Arc<Mutex<Vec<Blocker>>>,
    handle: Option<JoinHandle<()>>,
}

impl BlockerWatch {
    /// Starts polling on a connection of its own; `None` when it cannot connect (the
    /// apply goes on without naming blockers).
    pub(crate) fn start(target: &Target, plan: &str, pid: i32) -> Option<BlockerWatch> {
        let mut client = target.connect(&format!("planrun watch {plan}")).ok()?;
        let (stop, stopped) = mpsc::channel::<()>();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handle = {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || loop {
                match blockers_of(&mut client, pid) {
                    Ok(rows) if !rows.is_empty() => {
                        let blockers = rows.iter().map(blocker).collect();
                        if let Ok(mut slot) = seen.lock() {
                            *slot = blockers;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
                if stopped.recv_timeout(POLL) != Err(RecvTimeoutError::Timeout) {
                    return;
                }
            })
        };
        Some(BlockerWatch {
            stop: Some(stop),
            seen,
            handle: Some(handle),
        })
    }

    /// The sessions last seen blocking, and forgets them (so the next stage starts clean).
    pub(crate) fn take(&self) -> Vec<Blocker> {
        self.seen
            .lock()
            .map(|mut slot| std::mem::take(&mut *slot))
            .unwrap_or_default()
    }
}

/// The sessions blocking `pid`, read in a transaction with planrun's own search_path.
fn blockers_of(client: &mut Client, pid: i32) -> Result<Vec<postgres::Row>, postgres::Error> {
    let mut tx = client.transaction()?;
    crate::db::trusted_sql::trust_for_transaction(&mut tx)?;
    let rows = tx.query(
        &format!(
            "SELECT {SESSION_COLUMNS} FROM pg_stat_activity a \
             WHERE a.pid = ANY(pg_blocking_pids($1)) ORDER BY a.pid"
        ),
        &[&pid],
    )?;
    tx.commit()?;
    Ok(rows)
}

impl Drop for BlockerWatch {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
