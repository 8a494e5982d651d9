//! `apply --fleet`, as an orchestration that reads top to bottom: wave by wave, the
//! wave's targets started by workers within the limits (`queue.rs`), each a full
//! single-database apply (`target_run.rs`), each judged by the wave's gate as it
//! finishes (`gate.rs`). A failed gate, or a signal, stops anything new from
//! starting; the targets already running finish (or, on a signal, roll their stage
//! back as a single apply does). No state of our own: each target's plan lock and
//! ledger are the only coordination, so any number of processes can share a fleet.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use planrun_engine::{
    exit_codes, interrupt, ApplyOptions, FleetReport, Runner, TargetRun, WaveReport,
};

use crate::eta::{estimate, Eta, Pace};
use crate::gate::{canary_of, gate_checks, gate_failures, Canary};
use crate::model::{Fleet, OnDrift, Wave};
use crate::queue::WaveQueue;
use crate::resolve::ResolvedTarget;
use crate::target_run::{apply_target, not_started, refused, replica_lag, Attempt};

/// Hears about the rollout while it happens (the CLI's progress view on stderr).
pub trait FleetProgress: Sync {
    fn wave_started(&self, _wave: &Wave, _targets: usize) {}
    fn target_started(&self, _name: &str, _host: &str) {}
    fn target_finished(&self, _run: &TargetRun, _wave: &WaveTally) {}
    fn target_locked_elsewhere(&self, _name: &str) {}
    fn halted(&self, _why: &str) {}
}

/// A progress that hears nothing.
pub struct Quiet;
impl FleetProgress for Quiet {}

/// Where a wave stands, and the fleet's time left: for the progress view.
#[derive(Debug, Clone, Default)]
pub struct WaveTally {
    pub wave: String,
    pub total: usize,
    pub done: usize,
    pub running: usize,
    pub failed: usize,
    /// The whole rollout's time left (this wave's targets and the later waves'),
    /// from the targets finished so far in this run (`eta.rs`).
    pub eta: Eta,
}

/// How the rollout runs.
#[derive(Debug, Clone)]
pub struct RolloutOptions {
    /// What each target's apply is given (its `lock_wait` is ignored: a target locked
    /// by another process is revisited instead of waited for).
    pub apply: ApplyOptions,
    /// How long a target may stay locked by another process before it counts as
    /// failed (`locked`).
    pub locked_for_at_most: Duration,
    /// Targets refused before the rollout (by `--require-rehearsal`), with why: each
    /// is `refused` when its turn comes, without being touched, and fails its wave's
    /// gate as a drifted target does (`on_drift`).
    pub refused: BTreeMap<String, String>,
}

/// Rolls the plan out to `fleet`; the report and the exit code of the whole.
pub fn apply_fleet(
    fleet: &Fleet,
    runner: &Runner<'_>,
    targets: &[ResolvedTarget],
    options: &RolloutOptions,
    progress: &dyn FleetProgress,
) -> (FleetReport, i32) {
    let mut report = FleetReport {
        plan: String::new(),
        fleet: fleet.path.display().to_string(),
        dry_run: options.apply.dry_run,
        waves: Vec::new(),
        halted: None,
        counts: BTreeMap::new(),
    };
    let rollout = Rollout {
        fleet,
        runner,
        targets,
        options,
        progress,
        pace: Mutex::new(Pace::new(fleet.max_parallel, Instant::now())),
    };
    let mut canary: Option<Canary> = None;
    for (position, wave) in fleet.waves.iter().enumerate() {
        if report.halted.is_some() {
            report.waves.push(wave_not_started(wave, targets));
            continue;
        }
        progress.wave_started(wave, wave.targets.len());
        let later = fleet.waves[position + 1..]
            .iter()
            .map(|wave| wave.targets.len())
            .sum();
        let mut done = run_wave(&rollout, wave, canary.as_ref(), later);
        if canary.is_none() {
            canary = Some(canary_of(&done.runs));
        }
        if let Some(signal) = interrupt::requested() {
            report.halted = Some(format!("{}: no target started after it", signal.name()));
        } else if !done.failures.is_empty() {
            report.halted = Some(format!(
                "wave `{}`'s gate failed: {}",
                wave.name,
                done.failures.join("; ")
            ));
        }
        if let Some(why) = &report.halted {
            progress.halted(why);
        }
        done.runs
            .sort_by_key(|run| targets.iter().position(|t| t.name == run.name));
        report.waves.push(WaveReport {
            name: wave.name.clone(),
            gate: if done.failures.is_empty() {
                "passed"
            } else {
                "failed"
            }
            .into(),
            gate_failures: std::mem::take(&mut done.failures),
            limits: wave.gate.limits(),
            targets: done.runs,
        });
    }
    for run in report.waves.iter().flat_map(|wave| &wave.targets) {
        *report.counts.entry(run.state.clone()).or_default() += 1;
    }
    let code = exit_code(&report, fleet.on_drift);
    (report, code)
}

fn exit_code(report: &FleetReport, on_drift: OnDrift) -> i32 {
    let any = |state: &str| report.counts.get(state).is_some_and(|&count| count > 0);
    if interrupt::requested().is_some() {
        exit_codes::INTERRUPTED
    } else if any("refused") {
        exit_codes::REHEARSAL_REQUIRED
    } else if report.halted.is_some() {
        exit_codes::FLEET_HALTED
    } else if any("drifted") && on_drift == OnDrift::Skip {
        exit_codes::DRIFT
    } else {
        exit_codes::SUCCESS
    }
}

fn wave_not_started(wave: &Wave, targets: &[ResolvedTarget]) -> WaveReport {
    WaveReport {
        name: wave.name.clone(),
        gate: "not_started".into(),
        gate_failures: Vec::new(),
        limits: wave.gate.limits(),
        targets: wave
            .targets
            .iter()
            .map(|&i| not_started(&targets[i]))
            .collect(),
    }
}

/// What stays the same for every wave of a rollout.
struct Rollout<'w, 'r> {
    fleet: &'w Fleet,
    runner: &'w Runner<'r>,
    targets: &'w [ResolvedTarget],
    options: &'w RolloutOptions,
    progress: &'w dyn FleetProgress,
    /// The whole rollout's readings for the estimate of its time left.
    pace: Mutex<Pace>,
}

/// What a wave's workers share.
struct WaveState {
    queue: WaveQueue,
    runs: Vec<TargetRun>,
    failures: Vec<String>,
    halted: bool,
    /// Per target: how often it was found locked, and since when.
    locked: BTreeMap<usize, (u32, Instant)>,
    tally: WaveTally,
}

struct WaveDone {
    runs: Vec<TargetRun>,
    failures: Vec<String>,
}

struct WaveRun<'w, 'r> {
    rollout: &'w Rollout<'w, 'r>,
    fleet: &'w Fleet,
    wave: &'w Wave,
    runner: &'w Runner<'r>,
    targets: &'w [ResolvedTarget],
    options: &'w RolloutOptions,
    canary: Option<&'w Canary>,
    progress: &'w dyn FleetProgress,
    /// The targets of the waves after this one.
    later: usize,
    state: Mutex<WaveState>,
    changed: Condvar,
}

fn run_wave(
    rollout: &Rollout<'_, '_>,
    wave: &Wave,
    canary: Option<&Canary>,
    later: usize,
) -> WaveDone {
    let (fleet, targets) = (rollout.fleet, rollout.targets);
    let run = WaveRun {
        rollout,
        fleet,
        wave,
        runner: rollout.runner,
        targets,
        options: rollout.options,
        canary,
        progress: rollout.progress,
        later,
        state: Mutex::new(WaveState {
            queue: WaveQueue::new(
                &wave.targets,
                fleet.max_parallel,
                fleet.max_parallel_per_host,
            ),
            runs: Vec::new(),
            failures: Vec::new(),
            halted: false,
            locked: BTreeMap::new(),
            tally: WaveTally {
                wave: wave.name.clone(),
                total: wave.targets.len(),
                ..WaveTally::default()
            },
        }),
        changed: Condvar::new(),
    };
    let workers = fleet.max_parallel.min(wave.targets.len()).max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| run.work());
        }
    });
    let mut state = run
        .state
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    for index in state.queue.drain() {
        state.runs.push(not_started(&targets[index]));
    }
    WaveDone {
        runs: state.runs,
        failures: state.failures,
    }
}

impl WaveRun<'_, '_> {
    /// One worker: takes the next target that may start, runs it, until the wave is
    /// done or halted.
    fn work(&self) {
        let host_of = |index: usize| self.targets[index].host.clone();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if interrupt::requested().is_some() {
                state.halted = true;
            }
            if state.halted && state.queue.running() == 0 || state.queue.is_done() {
                self.changed.notify_all();
                return;
            }
            let next = if state.halted {
                None
            } else {
                state.queue.start_next(host_of, Instant::now())
            };
            let Some(index) = next else {
                state = self
                    .changed
                    .wait_timeout(state, Duration::from_millis(50))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            };
            state.tally.running += 1;
            self.pace().started_one(Instant::now());
            drop(state);
            let resolved = &self.targets[index];
            self.progress.target_started(&resolved.name, &resolved.host);
            let attempt = match self.options.refused.get(&resolved.name) {
                Some(why) => Attempt::Done(Box::new(refused(resolved, why))),
                None => apply_target(self.runner, resolved, &self.options.apply),
            };
            let attempt = self.with_replica_lag(resolved, attempt);
            state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.tally.running -= 1;
            self.settle(&mut state, index, attempt);
            self.changed.notify_all();
        }
    }

    /// With `max_replica_lag` in the wave's gate, a target that finished applied (or
    /// with nothing to do) gets its server's replica lag read now; one whose lag
    /// cannot be read is an `error`, failing the gate closed.
    fn with_replica_lag(&self, resolved: &ResolvedTarget, attempt: Attempt) -> Attempt {
        let Attempt::Done(mut run) = attempt else {
            return attempt;
        };
        if self.wave.gate.max_replica_lag.is_some()
            && matches!(run.state.as_str(), "applied" | "nothing_to_do")
        {
            match replica_lag(resolved) {
                Ok(lag) => run.replica_lag_ms = lag,
                Err(error) => {
                    run.state = "error".into();
                    run.message = Some(planrun_engine::redact(&format!(
                        "applied, but its replica lag could not be read: {error}"
                    )));
                }
            }
        }
        Attempt::Done(run)
    }

    fn pace(&self) -> std::sync::MutexGuard<'_, Pace> {
        self.rollout
            .pace
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The rollout's time left: the targets still running once halted, else this
    /// wave's unfinished targets and the later waves'.
    fn eta(&self, state: &WaveState, now: Instant) -> Eta {
        let left = if state.halted {
            state.queue.running()
        } else {
            state.tally.total.saturating_sub(state.tally.done) + self.later
        };
        estimate(&self.pace().reading(left, now))
    }

    fn settle(&self, state: &mut WaveState, index: usize, attempt: Attempt) {
        let resolved = &self.targets[index];
        let now = Instant::now();
        let took = match &attempt {
            Attempt::Done(run) => Some(Duration::from_millis(run.duration_ms)),
            Attempt::LockedElsewhere => None,
        };
        self.pace().stopped_one(took, now);
        let mut run = match attempt {
            Attempt::LockedElsewhere => {
                let (count, since) = *state.locked.entry(index).or_insert((0, now));
                if now.duration_since(since) < self.options.locked_for_at_most {
                    state.locked.insert(index, (count + 1, since));
                    state.queue.revisit(index, &resolved.host, now);
                    self.progress.target_locked_elsewhere(&resolved.name);
                    return;
                }
                let mut run = not_started(resolved);
                run.state = "locked".into();
                run.message = Some(format!(
                    "another process held its plan lock for over {} s",
                    self.options.locked_for_at_most.as_secs()
                ));
                run
            }
            Attempt::Done(run) => *run,
        };
        state.queue.finished(&resolved.host);
        run.revisits = state.locked.get(&index).map_or(0, |(count, _)| *count);
        run.gate_checks = gate_checks(&run, &self.wave.gate, self.canary);
        let failures = gate_failures(&run, &self.wave.gate, self.fleet.on_drift);
        if !failures.is_empty() {
            state.halted = true;
            state.tally.failed += 1;
            state.failures.extend(failures);
        }
        state.tally.done += 1;
        state.tally.eta = self.eta(state, now);
        self.progress.target_finished(&run, &state.tally);
        state.runs.push(run);
    }
}
