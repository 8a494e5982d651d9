//! Lock tracing for `planrun rehearse`: while the plan runs on the copy, a second
//! session samples every 10 ms which table locks planrun's apply session holds
//! (`pg_locks`), and notes each table's `relfilenode` when a stage starts and ends, so
//! that the rehearsal report can say, per stage and table, the strongest lock really
//! held, how long the application's reads and writes would have been blocked, and
//! whether the table was rewritten: what the offline analysis can only predict.
//!
//! Per statement: after each statement of a SQL step the runner tells the trace
//! (`Observer::statement_finished`), which reads the session's locks at once, before
//! the next statement starts: the locks that statement took, exactly, and its running
//! time as the runner measured it. Inside native transforms, whose statements the
//! runner does not see, each sample reads the statement the session is running or
//! ran last (`pg_stat_activity.query`) and attributes new locks and running time to it.
//!
//! Here: the two sessions, their queries and the sampling thread; what the samples
//! add up to, without a database, in `attribution.rs`.

mod attribution;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use postgres::Client;

use crate::db::connect::Target;
use crate::db::trusted_sql::pin_trusted_search_path;
use attribution::{shortened, TraceState, SAMPLE_EVERY};

pub(crate) use attribution::StageTrace;

/// A running trace; [`LockTrace::finish`] stops it and returns what it saw.
pub(crate) struct LockTrace {
    state: Arc<Mutex<TraceState>>,
    stop: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<()>>,
    files: Mutex<Client>,
}

const FILES: &str = "SELECT c.oid::regclass::text, c.relfilenode::text FROM pg_class c \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p', 'm') \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'planrun') \
       AND n.nspname NOT LIKE 'pg\\_%'";

const HELD: &str = "SELECT l.relation::regclass::text, l.mode, a.query, a.state = 'active' \
     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
     JOIN pg_class c ON c.oid = l.relation \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE l.granted AND l.locktype = 'relation' AND c.relkind IN ('r', 'p', 'm') \
       AND a.application_name LIKE 'planrun apply %' \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'planrun') \
       AND n.nspname NOT LIKE 'pg\\_%'";

impl LockTrace {
    /// Starts sampling `target` (the copy) for planrun's apply session.
    pub(crate) fn start(target: &Target) -> Result<LockTrace, crate::EngineError> {
        let mut sampler_client = target.connect("planrun rehearse lock trace")?;
        let mut files = target.connect("planrun rehearse lock trace")?;
        for client in [&mut sampler_client, &mut files] {
            pin_trusted_search_path(client)
                .map_err(crate::EngineError::database("cannot start the lock trace"))?;
        }
        let state = Arc::new(Mutex::new(TraceState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || sample(sampler_client, &state, &stop))
        };
        Ok(LockTrace {
            state,
            stop,
            sampler: Some(sampler),
            files: Mutex::new(files),
        })
    }

    fn relfilenodes(&self) -> BTreeMap<String, String> {
        let mut client = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        client
            .query(FILES, &[])
            .map(|rows| rows.iter().map(|row| (row.get(0), row.get(1))).collect())
            .unwrap_or_default()
    }

    pub(crate) fn stage_started(&self, stage: &str) {
        let files = self.relfilenodes();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.stage_started(stage, files);
    }

    pub(crate) fn stage_finished(&self, stage: &str) {
        let files = self.relfilenodes();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.stage_finished(stage, &files);
    }

    /// A statement of a SQL step finished after `elapsed`: the locks the session holds
    /// now that the stage had not seen are the ones it took.
    pub(crate) fn statement_finished(&self, statement: &str, elapsed: Duration) {
        let held = {
            let mut client = self.files.lock().unwrap_or_else(PoisonError::into_inner);
            client.query(HELD, &[]).map(|rows| {
                rows.iter()
                    .map(|row| {
                        let (table, mode): (String, String) = (row.get(0), row.get(1));
                        (table, mode)
                    })
                    .collect::<Vec<_>>()
            })
        };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.statement_done(&shortened(statement), elapsed, &held.unwrap_or_default());
    }

    /// Stops sampling; per stage, the tables locked and the statements that locked them.
    pub(crate) fn finish(mut self) -> BTreeMap<String, StageTrace> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
        let state = std::mem::take(&mut *self.state.lock().unwrap_or_else(PoisonError::into_inner));
        state.into_stage_traces()
    }
}

/// Samples until told to stop; a failed sample ends the trace (the report then has
/// what was seen until then).
fn sample(mut client: Client, state: &Mutex<TraceState>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let Ok(rows) = client.query(HELD, &[]) else {
            return;
        };
        let now = Instant::now();
        let held: Vec<(String, String, String, bool)> = rows
            .iter()
            .map(|row| {
                let query: Option<String> = row.get(2);
                let active: Option<bool> = row.get(3);
                (
                    row.get(0),
                    row.get(1),
                    shortened(query.as_deref().unwrap_or_default()),
                    active.unwrap_or(false),
                )
            })
            .collect();
        state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(now, &held);
        std::thread::sleep(SAMPLE_EVERY);
    }
}
