//! A wave's gate, judged per target as each finishes: applied (or nothing to do),
//! and within the wave's declared limits against what the canary (the first wave)
//! measured. A target that fails it halts the rollout at once: nothing new starts.

use std::collections::BTreeMap;
use std::time::Duration;

use planrun_report::{GateCheck, GateLimits, TargetRun};

use crate::model::{Gate, OnDrift};

/// A stage never fails the duration gate under this: a canary's 40 ms stage taking
/// 130 ms elsewhere is noise, not a regression.
pub const DURATION_FLOOR: Duration = Duration::from_secs(1);

/// The slowest duration of each stage on the canary wave (ms).
pub(crate) type Canary = BTreeMap<String, u64>;

/// `run` measured against each limit `gate` declares (none for a target that never
/// reached its database: nothing was measured, its state fails the gate alone).
pub(crate) fn gate_checks(run: &TargetRun, gate: &Gate, canary: Option<&Canary>) -> Vec<GateCheck> {
    let check = |limit: &str, stage: Option<&str>, measured_ms: u64, limit_ms: u64| GateCheck {
        limit: limit.into(),
        stage: stage.map(str::to_owned),
        measured_ms,
        limit_ms,
        canary_ms: None,
        passed: measured_ms <= limit_ms,
    };
    let mut checks = Vec::new();
    if matches!(
        run.state.as_str(),
        "error" | "refused" | "locked" | "not_started"
    ) {
        return checks;
    }
    if let Some(limit) = gate.max_lock_wait {
        let limit = limit.as_millis() as u64;
        checks.push(check(
            "max_lock_wait",
            None,
            run.longest_lock_wait_ms,
            limit,
        ));
    }
    if let (Some(limit), Some(lag)) = (gate.max_replica_lag, run.replica_lag_ms) {
        checks.push(check(
            "max_replica_lag",
            None,
            lag,
            limit.as_millis() as u64,
        ));
    }
    if let (Some(factor), Some(canary)) = (gate.max_duration_factor, canary) {
        for (stage, &took) in &run.stage_durations_ms {
            let Some(&on_canary) = canary.get(stage) else {
                continue;
            };
            let limit = ((on_canary as f64 * factor) as u64).max(DURATION_FLOOR.as_millis() as u64);
            let mut measured = check("max_duration_factor", Some(stage), took, limit);
            measured.canary_ms = Some(on_canary);
            checks.push(measured);
        }
    }
    checks
}

/// Why `run` fails `gate`, one line per reason, from its state and its
/// [`TargetRun::gate_checks`]; empty when it passes.
pub(crate) fn gate_failures(run: &TargetRun, gate: &Gate, on_drift: OnDrift) -> Vec<String> {
    let mut failures = Vec::new();
    match run.state.as_str() {
        "applied" | "nothing_to_do" | "would_apply" => {}
        "drifted" | "refused" if on_drift == OnDrift::Skip => {}
        state => failures.push(format!(
            "{}: {state}{}",
            run.name,
            run.message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        )),
    }
    for check in run.gate_checks.iter().filter(|check| !check.passed) {
        let (name, measured, limit) = (&run.name, check.measured_ms, check.limit_ms);
        failures.push(match check.limit.as_str() {
            "max_lock_wait" => format!(
                "{name}: waited {measured} ms for a stage's locks, over the gate's max_lock_wait of {limit} ms"
            ),
            "max_replica_lag" => format!(
                "{name}: a standby of its server replayed {measured} ms behind, over the gate's max_replica_lag of {limit} ms"
            ),
            _ => format!(
                "{name}: stage `{}` took {measured} ms, over {} x the canary's {} ms",
                check.stage.as_deref().unwrap_or_default(),
                gate.max_duration_factor.unwrap_or_default(),
                check.canary_ms.unwrap_or_default()
            ),
        });
    }
    failures
}

impl Gate {
    /// The limits as the report states them.
    pub(crate) fn limits(&self) -> GateLimits {
        GateLimits {
            max_lock_wait_ms: self.max_lock_wait.map(|limit| limit.as_millis() as u64),
            max_duration_factor: self.max_duration_factor,
            max_replica_lag_ms: self.max_replica_lag.map(|limit| limit.as_millis() as u64),
        }
    }
}

/// The canary's measure: the slowest run of each stage across the first wave.
pub(crate) fn canary_of(runs: &[TargetRun]) -> Canary {
    let mut canary = Canary::new();
    for run in runs {
        for (stage, &took) in &run.stage_durations_ms {
            let slowest = canary.entry(stage.clone()).or_default();
            *slowest = (*slowest).max(took);
        }
    }
    canary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(state: &str, stage_ms: u64, lock_ms: u64) -> TargetRun {
        TargetRun {
            name: "t1".into(),
            host: "h:5432".into(),
            state: state.into(),
            outcome: None,
            exit_code: None,
            run_id: None,
            duration_ms: stage_ms,
            revisits: 0,
            message: None,
            stage_durations_ms: [("split".to_owned(), stage_ms)].into(),
            longest_lock_wait_ms: lock_ms,
            replica_lag_ms: None,
            gate_checks: Vec::new(),
            report: None,
        }
    }

    fn judged(
        run: &TargetRun,
        gate: &Gate,
        canary: Option<&Canary>,
        on_drift: OnDrift,
    ) -> Vec<String> {
        let mut run = run.clone();
        run.gate_checks = gate_checks(&run, gate, canary);
        gate_failures(&run, gate, on_drift)
    }

    #[test]
    fn a_target_passes_only_applied_and_within_the_limits() {
        let gate = Gate {
            max_lock_wait: Some(Duration::from_millis(500)),
            max_duration_factor: Some(2.0),
            max_replica_lag: None,
        };
        let canary = canary_of(&[run("applied", 3_000, 0), run("applied", 1_000, 0)]);
        assert!(judged(
            &run("applied", 5_000, 10),
            &gate,
            Some(&canary),
            OnDrift::Halt
        )
        .is_empty());
        assert_eq!(
            judged(
                &run("applied", 7_000, 10),
                &gate,
                Some(&canary),
                OnDrift::Halt
            )
            .len(),
            1
        );
        assert_eq!(
            judged(
                &run("applied", 10, 900),
                &gate,
                Some(&canary),
                OnDrift::Halt
            )
            .len(),
            1
        );
        assert_eq!(
            judged(&run("failed", 10, 0), &gate, Some(&canary), OnDrift::Halt).len(),
            1
        );
        assert!(judged(&run("drifted", 0, 0), &gate, None, OnDrift::Skip).is_empty());
        assert_eq!(
            judged(&run("drifted", 0, 0), &gate, None, OnDrift::Halt).len(),
            1
        );
    }

    #[test]
    fn short_stages_never_fail_the_duration_gate() {
        let gate = Gate {
            max_lock_wait: None,
            max_duration_factor: Some(1.5),
            max_replica_lag: None,
        };
        let canary = canary_of(&[run("applied", 40, 0)]);
        assert!(judged(&run("applied", 900, 0), &gate, Some(&canary), OnDrift::Halt).is_empty());
    }
}
