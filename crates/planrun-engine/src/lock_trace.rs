//! Lock tracing for `planrun rehearse`: while the plan runs on the copy, a second
//! session samples every 10 ms which table locks planrun's apply session holds
//! (`pg_locks`), and notes each table's `relfilenode` when a stage starts and ends, so
//! that the rehearsal report can say, per stage and table, the strongest lock really
//! held, how long the application's reads and writes would have been blocked, and
//! whether the table was rewritten: what the offline analysis can only predict.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use postgres::Client;
use serde::Serialize;

use crate::connect::Target;
use crate::trusted_sql::pin_trusted_search_path;

const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// One table's locks during one stage, as measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MeasuredLock {
    pub table: String,
    /// The strongest mode seen, as `pg_locks` names it (`AccessExclusiveLock`).
    pub strongest: String,
    /// How long a lock that blocks the application's reads (ACCESS EXCLUSIVE) was held.
    pub blocked_reads_ms: u64,
    /// How long a lock that blocks its writes (SHARE and stronger) was held.
    pub blocked_writes_ms: u64,
    /// The table's storage was replaced (`relfilenode` changed): a rewrite.
    pub rewritten: bool,
}

#[derive(Default)]
struct TraceState {
    stage: Option<String>,
    /// Per stage, per table: first and last sample of each blocking class, strongest.
    seen: BTreeMap<String, BTreeMap<String, Seen>>,
    /// `relfilenode` of every user table when the current stage started.
    files_at_start: BTreeMap<String, String>,
    rewritten: BTreeMap<String, Vec<String>>,
}

#[derive(Default, Clone)]
struct Seen {
    strongest: String,
    strength: u8,
    reads: Option<(Instant, Instant)>,
    writes: Option<(Instant, Instant)>,
}

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

const HELD: &str = "SELECT l.relation::regclass::text, l.mode FROM pg_locks l \
     JOIN pg_stat_activity a ON a.pid = l.pid \
     JOIN pg_class c ON c.oid = l.relation \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE l.granted AND l.locktype = 'relation' AND c.relkind IN ('r', 'p', 'm') \
       AND a.application_name LIKE 'planrun apply %' \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'planrun') \
       AND n.nspname NOT LIKE 'pg\\_%'";

/// Strength of a table lock mode, and whether it blocks reads, writes.
fn strength(mode: &str) -> (u8, bool, bool) {
    match mode {
        "AccessShareLock" => (1, false, false),
        "RowShareLock" => (2, false, false),
        "RowExclusiveLock" => (3, false, false),
        "ShareUpdateExclusiveLock" => (4, false, false),
        "ShareLock" => (5, false, true),
        "ShareRowExclusiveLock" => (6, false, true),
        "ExclusiveLock" => (7, false, true),
        "AccessExclusiveLock" => (8, true, true),
        _ => (0, false, false),
    }
}

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
        state.stage = Some(stage.to_owned());
        state.files_at_start = files;
    }

    pub(crate) fn stage_finished(&self, stage: &str) {
        let files = self.relfilenodes();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.stage.as_deref() != Some(stage) {
            // A stage that did not run here (already applied, not selected).
            return;
        }
        let rewritten: Vec<String> = state
            .files_at_start
            .iter()
            .filter(|(table, node)| files.get(*table).is_some_and(|now| now != *node))
            .map(|(table, _)| table.clone())
            .collect();
        state.rewritten.insert(stage.to_owned(), rewritten);
        state.stage = None;
    }

    /// Stops sampling; per stage, the tables locked.
    pub(crate) fn finish(mut self) -> BTreeMap<String, Vec<MeasuredLock>> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
        let state = std::mem::take(&mut *self.state.lock().unwrap_or_else(PoisonError::into_inner));
        let ms = |span: Option<(Instant, Instant)>| {
            span.map_or(0, |(first, last)| {
                (last - first + SAMPLE_EVERY).as_millis() as u64
            })
        };
        state
            .seen
            .into_iter()
            .map(|(stage, tables)| {
                let rewritten = state.rewritten.get(&stage).cloned().unwrap_or_default();
                let locks = tables
                    .into_iter()
                    .map(|(table, seen)| MeasuredLock {
                        rewritten: rewritten.contains(&table),
                        table,
                        strongest: seen.strongest,
                        blocked_reads_ms: ms(seen.reads),
                        blocked_writes_ms: ms(seen.writes),
                    })
                    .collect();
                (stage, locks)
            })
            .collect()
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
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stage) = state.stage.clone() {
            let tables = state.seen.entry(stage).or_default();
            for row in rows {
                let (table, mode): (String, String) = (row.get(0), row.get(1));
                let (level, reads, writes) = strength(&mode);
                let seen = tables.entry(table).or_default();
                if level > seen.strength {
                    seen.strength = level;
                    seen.strongest = mode;
                }
                let extend = |span: &mut Option<(Instant, Instant)>| {
                    let first = span.map_or(now, |(first, _)| first);
                    *span = Some((first, now));
                };
                if reads {
                    extend(&mut seen.reads);
                }
                if writes {
                    extend(&mut seen.writes);
                }
            }
        }
        drop(state);
        std::thread::sleep(SAMPLE_EVERY);
    }
}
