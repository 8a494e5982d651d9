//! What the lock trace's samples and the runner's statement reports add up to: per
//! stage and table, the strongest mode and how long reads and writes were blocked;
//! per statement, its running time and the locks first taken while it ran.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::rehearse::report::{MeasuredLock, MeasuredStatement};

/// How often the session's locks are sampled: a lock seen in one sample counts as held
/// for this long.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// Statements kept per stage; a transform's repeated batch statement counts once.
const STATEMENTS_KEPT: usize = 50;
/// The `strongest` of a table rewritten by a lock no sample caught.
const NOT_SAMPLED: &str = "not sampled";
/// Characters of a statement's text kept in the report.
const STATEMENT_CHARS: usize = 160;

/// Per stage, what the trace saw: the tables locked and the statements that took them.
#[derive(Debug, Clone, Default)]
pub(crate) struct StageTrace {
    pub locks: Vec<MeasuredLock>,
    pub statements: Vec<MeasuredStatement>,
}

#[derive(Default)]
pub(super) struct TraceState {
    stage: Option<String>,
    /// Per stage, per table: first and last sample of each blocking class, strongest.
    seen: BTreeMap<String, BTreeMap<String, Seen>>,
    /// Per stage, the statements seen running, in order of first sight.
    statements: BTreeMap<String, Vec<StatementSeen>>,
    /// The statement of the previous sample, and whether it was running then.
    last_statement: Option<(String, bool)>,
    /// When the previous sample was taken: a lock seen in it and again now was held
    /// in between.
    last_sample: Option<Instant>,
    /// `relfilenode` of every user table when the current stage started.
    files_at_start: BTreeMap<String, String>,
    rewritten: BTreeMap<String, Vec<String>>,
}

#[derive(Default, Clone)]
struct Seen {
    strongest: String,
    strength: u8,
    taken_by: Option<String>,
    /// Each mode seen, when it was first seen and the statement it was put down to.
    modes: Vec<(String, Instant, String)>,
    reads: Blocked,
    writes: Blocked,
}

/// How long one class of access (reads or writes) was blocked: the longest stretch of
/// samples in a row that saw a lock blocking it. A stage of several transactions (a
/// batched one) can block at its start and again at its cutover; what the
/// application waits for is each stretch, not the time between them.
#[derive(Default, Clone, Copy)]
struct Blocked {
    /// The stretch still going at the last sample that saw it: first and last sample.
    stretch: Option<(Instant, Instant)>,
    longest: Duration,
}

impl Blocked {
    /// Seen at `now`; `previous` is when the sample before this one was taken.
    fn seen(&mut self, now: Instant, previous: Option<Instant>) {
        self.stretch = match self.stretch {
            Some((first, last)) if Some(last) == previous => Some((first, now)),
            _ => {
                self.longest = self.longest_now();
                Some((now, now))
            }
        };
    }

    fn longest_now(&self) -> Duration {
        let current = self
            .stretch
            .map_or(Duration::ZERO, |(first, last)| last - first + SAMPLE_EVERY);
        self.longest.max(current)
    }

    fn ms(&self) -> u64 {
        self.longest_now().as_millis() as u64
    }
}

#[derive(Clone)]
struct StatementSeen {
    text: String,
    /// Timed by the runner itself (a SQL step's statement), not by sampling.
    exact: bool,
    running: Duration,
    executions: u64,
    /// `(strength, "table mode")` of the locks first seen while it ran.
    locks_taken: Vec<(u8, String)>,
}

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

impl TraceState {
    /// `stage` starts; `files` is each table's `relfilenode` now.
    pub(super) fn stage_started(&mut self, stage: &str, files: BTreeMap<String, String>) {
        self.stage = Some(stage.to_owned());
        self.files_at_start = files;
    }

    /// `stage` finished; a table whose `relfilenode` is not what it was at the start
    /// was rewritten.
    pub(super) fn stage_finished(&mut self, stage: &str, files: &BTreeMap<String, String>) {
        if self.stage.as_deref() != Some(stage) {
            // A stage that did not run here (already applied, not selected).
            return;
        }
        let rewritten: Vec<String> = self
            .files_at_start
            .iter()
            .filter(|(table, node)| files.get(*table).is_some_and(|now| now != *node))
            .map(|(table, _)| table.clone())
            .collect();
        self.rewritten.insert(stage.to_owned(), rewritten);
        self.stage = None;
    }

    /// Per stage, the tables locked and the statements that locked them.
    pub(super) fn into_stage_traces(mut self) -> BTreeMap<String, StageTrace> {
        self.add_unsampled_rewrites();
        self.seen
            .into_iter()
            .map(|(stage, tables)| {
                let rewritten = self.rewritten.get(&stage).cloned().unwrap_or_default();
                let locks = tables
                    .into_iter()
                    .map(|(table, seen)| MeasuredLock {
                        rewritten: rewritten.contains(&table),
                        table,
                        strongest: seen.strongest,
                        blocked_reads_ms: seen.reads.ms(),
                        blocked_writes_ms: seen.writes.ms(),
                        taken_by: seen.taken_by,
                    })
                    .collect();
                let statements = self
                    .statements
                    .remove(&stage)
                    .unwrap_or_default()
                    .into_iter()
                    // Seen only idle (a savepoint's release between two samples),
                    // with no lock of its own: noise.
                    .filter(|seen| seen.executions > 0 || !seen.locks_taken.is_empty())
                    .map(|mut seen| {
                        seen.locks_taken
                            .sort_by_key(|taken| std::cmp::Reverse(taken.0));
                        MeasuredStatement {
                            statement: seen.text,
                            running_ms: seen.running.as_millis() as u64,
                            executions: seen.executions,
                            locks_taken: seen.locks_taken.into_iter().map(|(_, l)| l).collect(),
                        }
                    })
                    .collect();
                (stage, StageTrace { locks, statements })
            })
            .collect()
    }

    /// A rewrite is known from the table's files even when a short statement outside
    /// a transaction took and released its lock between two samples: such a table
    /// gets an entry too.
    pub(super) fn add_unsampled_rewrites(&mut self) {
        for (stage, tables) in &self.rewritten {
            let seen = self.seen.entry(stage.clone()).or_default();
            for table in tables {
                seen.entry(table.clone()).or_insert_with(|| Seen {
                    strongest: NOT_SAMPLED.to_owned(),
                    ..Seen::default()
                });
            }
        }
    }

    /// Takes one sample: `(table, mode, statement, running)` per lock held.
    pub(super) fn record(&mut self, now: Instant, held: &[(String, String, String, bool)]) {
        if self.stage.is_none() {
            return;
        }
        let current = held
            .first()
            .map(|(_, _, query, active)| (query.clone(), *active));
        let locks: Vec<(String, String)> = held
            .iter()
            .map(|(table, mode, _, _)| (table.clone(), mode.clone()))
            .collect();
        let taken = self.note_locks(&locks, current.as_ref().map(|(query, _)| query), Some(now));
        self.last_sample = Some(now);
        if let Some((query, active)) = current {
            let started = active && self.last_statement.as_ref() != Some(&(query.clone(), true));
            if let Some(seen) = self.statement(&query) {
                if !seen.exact {
                    if active {
                        seen.running += SAMPLE_EVERY;
                    }
                    if started {
                        seen.executions += 1;
                    }
                }
                seen.locks_taken.extend(taken);
            }
            self.last_statement = Some((query, active));
        }
    }

    /// The runner says `statement` finished after `elapsed`, and the session holds `held`.
    pub(super) fn statement_done(
        &mut self,
        statement: &str,
        elapsed: Duration,
        held: &[(String, String)],
    ) {
        if self.stage.is_none() {
            return;
        }
        let started = Instant::now().checked_sub(elapsed);
        let mut taken = self.note_locks(held, Some(&statement.to_owned()), None);
        if let Some(started) = started {
            taken.extend(self.claim_sampled(statement, started, held));
        }
        if let Some(seen) = self.statement(statement) {
            if !seen.exact {
                // Sampled before the runner's word came: the runner's timing replaces it.
                seen.exact = true;
                seen.running = Duration::ZERO;
                seen.executions = 0;
            }
            seen.running += elapsed;
            seen.executions += 1;
            seen.locks_taken.extend(taken);
        }
    }

    /// The locks of `held` that the samples first saw after `started`, put down then to
    /// whatever statement the session showed (a savepoint's release, a catalog query
    /// right after): `statement` took them, so they move to it, and so does the
    /// table's `taken_by` when the mode is its strongest.
    fn claim_sampled(
        &mut self,
        statement: &str,
        started: Instant,
        held: &[(String, String)],
    ) -> Vec<(u8, String)> {
        let Some(stage) = self.stage.clone() else {
            return Vec::new();
        };
        let mut claimed = Vec::new();
        let tables = self.seen.entry(stage.clone()).or_default();
        for (table, mode) in held {
            let Some(seen) = tables.get_mut(table) else {
                continue;
            };
            let Some(entry) = seen.modes.iter_mut().find(|(seen_mode, first, by)| {
                seen_mode == mode && *first >= started && by != statement
            }) else {
                continue;
            };
            let lock = format!("{table} {mode}");
            let before = std::mem::replace(&mut entry.2, statement.to_owned());
            if seen.strongest == *mode {
                seen.taken_by = Some(statement.to_owned());
            }
            if let Some(other) = self
                .statements
                .get_mut(&stage)
                .and_then(|list| list.iter_mut().find(|s| s.text == before))
            {
                other.locks_taken.retain(|(_, taken)| *taken != lock);
            }
            claimed.push((strength(mode).0, lock));
        }
        claimed
    }

    /// Records `held` for the current stage, the strongest mode of each table taken by
    /// `statement`; returns the `(strength, "table mode")` not seen before. `now` (for
    /// samples) extends the blocked spans.
    fn note_locks(
        &mut self,
        held: &[(String, String)],
        statement: Option<&String>,
        now: Option<Instant>,
    ) -> Vec<(u8, String)> {
        let Some(stage) = self.stage.clone() else {
            return Vec::new();
        };
        let previous = self.last_sample;
        let tables = self.seen.entry(stage).or_default();
        let mut taken = Vec::new();
        for (table, mode) in held {
            let (level, reads, writes) = strength(mode);
            let seen = tables.entry(table.clone()).or_default();
            if !seen.modes.iter().any(|(seen_mode, _, _)| seen_mode == mode) {
                seen.modes.push((
                    mode.clone(),
                    now.unwrap_or_else(Instant::now),
                    statement.cloned().unwrap_or_default(),
                ));
                taken.push((level, format!("{table} {mode}")));
            }
            if level > seen.strength {
                seen.strength = level;
                seen.strongest = mode.clone();
                seen.taken_by = statement.cloned();
            }
            let Some(now) = now else { continue };
            if reads {
                seen.reads.seen(now, previous);
            }
            if writes {
                seen.writes.seen(now, previous);
            }
        }
        taken
    }

    /// The current stage's entry for `text`, made if there is room.
    fn statement(&mut self, text: &str) -> Option<&mut StatementSeen> {
        let stage = self.stage.clone()?;
        let statements = self.statements.entry(stage).or_default();
        let index = match statements.iter().position(|seen| seen.text == text) {
            Some(index) => index,
            None if statements.len() < STATEMENTS_KEPT => {
                statements.push(StatementSeen {
                    text: text.to_owned(),
                    exact: false,
                    running: Duration::ZERO,
                    executions: 0,
                    locks_taken: Vec::new(),
                });
                statements.len() - 1
            }
            None => statements.len() - 1,
        };
        statements.get_mut(index)
    }
}

/// `text` on one line, at most [`STATEMENT_CHARS`] characters, cut in the middle.
pub(super) fn shortened(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= STATEMENT_CHARS {
        return line;
    }
    let half = (STATEMENT_CHARS - 3) / 2;
    let head: String = chars[..half].iter().collect();
    let tail: String = chars[chars.len() - half..].iter().collect();
    format!("{head} … {tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(table: &str, mode: &str, query: &str, active: bool) -> (String, String, String, bool) {
        (table.into(), mode.into(), query.into(), active)
    }

    #[test]
    fn each_lock_is_attributed_to_the_statement_that_took_it() {
        let mut state = TraceState {
            stage: Some("s".into()),
            ..TraceState::default()
        };
        let t0 = Instant::now();
        let update = "UPDATE chapters SET x = 1";
        let alter = "ALTER TABLE chapters ADD COLUMN y int";
        state.record(t0, &[lock("chapters", "RowExclusiveLock", update, true)]);
        state.record(t0, &[lock("chapters", "RowExclusiveLock", update, true)]);
        state.record(
            t0,
            &[
                lock("chapters", "RowExclusiveLock", alter, true),
                lock("chapters", "AccessExclusiveLock", alter, true),
            ],
        );
        let stage = &state.statements["s"];
        assert_eq!(stage.len(), 2);
        assert_eq!(stage[0].locks_taken.len(), 1);
        assert_eq!(stage[0].running, SAMPLE_EVERY * 2);
        assert_eq!(stage[0].executions, 1);
        assert_eq!(
            stage[1].locks_taken,
            vec![(8, "chapters AccessExclusiveLock".to_owned())]
        );
        assert_eq!(state.seen["s"]["chapters"].taken_by.as_deref(), Some(alter));
    }

    /// A batched stage holds ACCESS EXCLUSIVE in its first transaction and again at
    /// its cutover, with a minute of batches between that block nobody: the report
    /// gives the longest of the two stretches, not the minute (seen in a rehearsal of
    /// the memoir plan at 100k chapters: "reads blocked 60.6 s" for stage 5).
    #[test]
    fn a_lock_taken_twice_with_samples_between_blocks_for_the_longer_stretch_only() {
        let mut state = TraceState {
            stage: Some("s".into()),
            ..TraceState::default()
        };
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let alter = "ALTER TABLE sections ADD COLUMN y int";
        let batch = "UPDATE sections SET y = 1 WHERE id = ANY($1)";
        let drop = "ALTER TABLE sections DROP COLUMN x";
        for ms in [0, 10, 20] {
            state.record(
                at(ms),
                &[lock("sections", "AccessExclusiveLock", alter, true)],
            );
        }
        for ms in (30..60_000).step_by(10) {
            state.record(at(ms), &[lock("sections", "RowExclusiveLock", batch, true)]);
        }
        for ms in (60_000..60_050).step_by(10) {
            state.record(
                at(ms),
                &[lock("sections", "AccessExclusiveLock", drop, true)],
            );
        }
        let traces = state.into_stage_traces();
        let sections = &traces["s"].locks[0];
        assert_eq!(
            sections.blocked_reads_ms, 50,
            "the cutover's stretch, five samples"
        );
        assert_eq!(sections.blocked_writes_ms, 50);
    }

    #[test]
    fn a_batch_statement_run_again_counts_its_executions_once_listed() {
        let mut state = TraceState {
            stage: Some("s".into()),
            ..TraceState::default()
        };
        let t0 = Instant::now();
        let batch = "INSERT INTO sections SELECT $1";
        for _ in 0..3 {
            state.record(t0, &[lock("sections", "RowExclusiveLock", batch, true)]);
            state.record(t0, &[lock("sections", "RowExclusiveLock", batch, false)]);
        }
        let stage = &state.statements["s"];
        assert_eq!(stage.len(), 1);
        assert_eq!(stage[0].executions, 3);
        assert_eq!(stage[0].running, SAMPLE_EVERY * 3);
    }

    #[test]
    fn a_statement_the_runner_reports_owns_the_locks_it_took_and_its_own_timing() {
        let mut state = TraceState {
            stage: Some("s".into()),
            ..TraceState::default()
        };
        let t0 = Instant::now();
        let alter = "ALTER TABLE customers ALTER COLUMN name TYPE varchar(200)";
        let sleep = "SELECT pg_sleep(0.3)";
        let held = [
            ("customers".to_owned(), "AccessExclusiveLock".to_owned()),
            ("customers".to_owned(), "ShareLock".to_owned()),
        ];
        state.record(t0, &[lock("customers", "AccessExclusiveLock", alter, true)]);
        state.statement_done(alter, Duration::from_millis(7), &held);
        state.record(t0, &[lock("customers", "ShareLock", sleep, true)]);
        let stage = &state.statements["s"];
        assert_eq!(stage[0].running, Duration::from_millis(7));
        assert_eq!(stage[0].executions, 1);
        assert_eq!(stage[0].locks_taken.len(), 2, "{:?}", stage[0].locks_taken);
        assert!(
            stage[1].locks_taken.is_empty(),
            "{:?}",
            stage[1].locks_taken
        );
    }

    #[test]
    fn a_lock_sampled_during_the_savepoint_release_is_claimed_by_its_statement() {
        let mut state = TraceState {
            stage: Some("s".into()),
            ..TraceState::default()
        };
        let alter = "ALTER TABLE orders ADD FOREIGN KEY (c) REFERENCES customers (id)";
        state.record(
            Instant::now(),
            &[lock(
                "orders",
                "ShareRowExclusiveLock",
                "RELEASE sp_1",
                false,
            )],
        );
        let held = [("orders".to_owned(), "ShareRowExclusiveLock".to_owned())];
        state.statement_done(alter, Duration::from_millis(50), &held);
        assert_eq!(state.seen["s"]["orders"].taken_by.as_deref(), Some(alter));
        let statements = &state.statements["s"];
        let release = statements
            .iter()
            .find(|s| s.text == "RELEASE sp_1")
            .unwrap();
        assert!(release.locks_taken.is_empty(), "{:?}", release.locks_taken);
        let by_alter = statements.iter().find(|s| s.text == alter).unwrap();
        assert_eq!(
            by_alter.locks_taken,
            vec![(6, "orders ShareRowExclusiveLock".to_owned())]
        );
    }

    #[test]
    fn a_rewrite_no_sample_caught_is_still_reported() {
        let mut state = TraceState::default();
        state
            .rewritten
            .insert("vacuum".into(), vec!["public.orders".into()]);
        state.add_unsampled_rewrites();
        let seen = &state.seen["vacuum"]["public.orders"];
        assert_eq!(seen.strongest, NOT_SAMPLED);
    }

    #[test]
    fn long_statements_are_cut_in_the_middle() {
        let long = format!("SELECT {} FROM t", "a, ".repeat(200));
        let short = shortened(&long);
        assert!(short.chars().count() <= STATEMENT_CHARS);
        assert!(short.starts_with("SELECT a,") && short.ends_with("FROM t"));
    }
}
