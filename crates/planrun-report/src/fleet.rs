//! The fleet documents: `planrun.fleet-apply` (a plan rolled out to many databases in
//! waves: each target's state, and why the rollout stopped if it did) and
//! `planrun.fleet-status` (each target's ledger, grouped by schema fingerprint) and
//! `planrun.fleet-plan` (what `plan` says of each target, by wave).

use serde::Serialize;

use crate::run::RunReport;
use crate::status::StageStatusLine;

/// `apply --fleet`: the rollout, wave by wave.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct FleetReport {
    pub plan: String,
    /// The fleet file, as given on the command line.
    pub fleet: String,
    pub dry_run: bool,
    pub waves: Vec<WaveReport>,
    /// Why no later wave started: the wave whose gate failed and the targets that
    /// failed it, or the signal; `None` when every wave ran.
    pub halted: Option<String>,
    /// Counts of `waves[].targets[].state`, e.g. `{"applied": 28, "failed": 1}`.
    pub counts: std::collections::BTreeMap<String, usize>,
}

/// One wave: its targets in file order and whether its gate passed.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct WaveReport {
    pub name: String,
    /// `passed`, `failed` (the rollout halted here), or `not_started`.
    pub gate: String,
    /// What failed the gate, one line per target or limit.
    pub gate_failures: Vec<String>,
    /// The limits the wave's gate declares (`[wave.gate]`), besides every target
    /// applied.
    pub limits: GateLimits,
    pub targets: Vec<TargetRun>,
}

/// A wave's declared limits; `null` where the gate declares none.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct GateLimits {
    pub max_lock_wait_ms: Option<u64>,
    /// A stage may take at most this many times its slowest run on the first wave.
    pub max_duration_factor: Option<f64>,
    pub max_replica_lag_ms: Option<u64>,
}

/// One of a wave's limits as measured on one target when it finished.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct GateCheck {
    /// `max_lock_wait`, `max_replica_lag`, or `max_duration_factor` (per stage).
    pub limit: String,
    /// The stage measured, for `max_duration_factor`.
    pub stage: Option<String>,
    pub measured_ms: u64,
    /// The limit in ms; for `max_duration_factor`, the factor times the canary's
    /// slowest run of the stage (`canary_ms`), never under one second.
    pub limit_ms: u64,
    pub canary_ms: Option<u64>,
    pub passed: bool,
}

/// One target's part in the rollout.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TargetRun {
    pub name: String,
    /// The server, `host:port`, whose `max_parallel_per_host` it counts against.
    pub host: String,
    /// `applied`, `nothing_to_do`, `would_apply` (dry run), `failed`, `drifted`,
    /// `interrupted`, `error` (could not connect, locked for too long, ...),
    /// `refused` (`--require-rehearsal`: no passing rehearsal of its schema; not
    /// touched), or `not_started`.
    pub state: String,
    /// The single-database run's outcome code (`applied`, `verification_failed`, ...),
    /// when it ran.
    pub outcome: Option<String>,
    /// The exit code `planrun apply` would have ended with on this target alone.
    pub exit_code: Option<i32>,
    /// The ledger's run id on the target.
    pub run_id: Option<i64>,
    pub duration_ms: u64,
    /// How many times the target was found locked by another process and revisited.
    pub revisits: u32,
    /// The stage that stopped the run and why, or the error, in one line.
    pub message: Option<String>,
    /// Per stage that ran: its duration (ms), for the gate against the canary.
    pub stage_durations_ms: std::collections::BTreeMap<String, u64>,
    /// The longest wait for a stage's declared locks (ms).
    pub longest_lock_wait_ms: u64,
    /// The worst standby's replay lag (ms) on the target's server as soon as it
    /// finished, read only when its wave's gate has `max_replica_lag`; `None` when
    /// not read or no standby reports one.
    pub replica_lag_ms: Option<u64>,
    /// Its wave's limits as measured on it; empty when the gate declares none or
    /// it did not run.
    pub gate_checks: Vec<GateCheck>,
    /// Its own run's report, for the HTML page's stage details; not in the JSON
    /// document (each target's ledger keeps the run).
    #[serde(skip)]
    pub report: Option<Box<RunReport>>,
}

/// `status --fleet`: each target's ledger, and the targets grouped by schema.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct FleetStatus {
    pub plan: String,
    pub fleet: String,
    pub targets: Vec<TargetStatus>,
    /// Targets with the same fingerprint, largest group first.
    pub groups: Vec<FingerprintGroup>,
    /// Targets whose fingerprint is shared by fewer than the largest group: the names
    /// to look at first.
    pub outliers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TargetStatus {
    pub name: String,
    pub host: String,
    /// `ok`, or `error` with `error` saying why (could not connect, ...).
    pub reachable: bool,
    pub error: Option<String>,
    /// A SHA-256 (first 16 hex digits) of the definition (columns, types, nullability)
    /// of the tables the plan touches, as the target's catalog has them now.
    pub fingerprint: Option<String>,
    pub stages: Vec<StageStatusLine>,
    /// The latest run's outcome as the ledger records it, and when it started.
    pub last_run: Option<String>,
    pub last_run_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct FingerprintGroup {
    pub fingerprint: String,
    pub targets: Vec<String>,
}

/// `plan --fleet`: what `planrun plan` says of each target, wave by wave; nothing
/// was written.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct FleetPlan {
    pub plan: String,
    pub fleet: String,
    pub waves: Vec<WavePlan>,
    /// Counts of `waves[].targets[].state`, e.g. `{"would_apply": 29, "drifted": 1}`.
    pub counts: std::collections::BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct WavePlan {
    pub name: String,
    pub targets: Vec<TargetPlan>,
}

/// One target's preview.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TargetPlan {
    pub name: String,
    pub host: String,
    /// `would_apply`, `nothing_to_do`, `drifted` (an applied stage changed since),
    /// `blocked` (a precondition refuses now) or `error` (could not be previewed).
    pub state: String,
    /// The single-database `plan`'s outcome code, when it ran.
    pub outcome: Option<String>,
    /// The stages `apply` would run on this target now, in order (those waiting for
    /// an earlier one included).
    pub would_run: Vec<String>,
    /// The stages whose skip rule holds now.
    pub would_skip: Vec<String>,
    /// Per drifted stage: `stage: what changed`.
    pub drift: Vec<String>,
    /// Why it is blocked or could not be previewed, in one line.
    pub message: Option<String>,
}

/// `rehearse --fleet`: one rehearsal per schema-fingerprint group; also the fleet's
/// record `<plan>-fleet.json` in the report directory, which
/// `apply --fleet --require-rehearsal DIR` reads.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct FleetRehearsal {
    pub plan: String,
    /// The plan's checksum when it was rehearsed.
    pub plan_checksum: String,
    pub fleet: String,
    /// Largest group first.
    pub groups: Vec<RehearsedGroup>,
    /// The targets whose schema could not be fingerprinted, `name: why`: in no group,
    /// so `apply --require-rehearsal` refuses them.
    pub unreachable: Vec<String>,
}

/// One fingerprint group and the rehearsal of its representative.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct RehearsedGroup {
    pub fingerprint: String,
    /// The group's first target in file order: the one rehearsed.
    pub representative: String,
    /// The representative's database name, as its rehearsal report records it.
    pub database: String,
    /// Every target of the group, the representative first.
    pub targets: Vec<String>,
    /// The rehearsal report's file name in the report directory.
    pub report: Option<String>,
    /// The rehearsal's outcome code (`applied`, `verification_failed`, ...), or
    /// `error` when it could not run.
    pub outcome: String,
    /// The exit code `planrun rehearse` would have ended with on it.
    pub exit_code: i32,
    pub passed: bool,
    /// Why the rehearsal could not run.
    pub message: Option<String>,
}
