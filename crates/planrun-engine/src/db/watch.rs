//! Who blocks a stage: while an apply runs, a second connection polls
//! `pg_blocking_pids()` for planrun's session, so that a stage failing on its
//! `lock_timeout` can name the session that held the lock, which PostgreSQL's own
//! message ("canceling statement due to lock timeout") does not.

use std::sync::atomic::{AtomicBool, Ordering};
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
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Blocker>>>,
    handle: Option<JoinHandle<()>>,
}

impl BlockerWatch {
    /// Starts watching `pid`; `None` when the second connection cannot be opened
    /// (the apply goes on, only without blocker names).
    pub(crate) fn start(target: &Target, plan: &str, pid: i32) -> Option<BlockerWatch> {
        let mut client = target.connect(&format!("planrun watch {plan}")).ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handle = {
            let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let rows = blockers_of(&mut client, pid);
                    match rows {
                        Ok(rows) if !rows.is_empty() => {
                            let blockers = rows.iter().map(blocker).collect();
                            if let Ok(mut slot) = seen.lock() {
                                *slot = blockers;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                    std::thread::sleep(POLL);
                }
            })
        };
        Some(BlockerWatch {
            stop,
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
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
