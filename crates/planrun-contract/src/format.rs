//! The documents planrun prints as JSON, each a [`Format`]: its name, its version,
//! which times its envelope carries and which outcomes it can end with. A document's
//! `format_version` moves only when a field is removed, renamed or changes meaning;
//! added fields keep it (`docs/exit-codes.md`).

use crate::OutcomeCode;

/// Which times a document's envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// A command that takes time: `started_at`, `finished_at`, `duration_ms`.
    Span,
    /// A snapshot: `generated_at`.
    Instant,
    /// A pure function of the plan file or the binary: no time at all, so the same
    /// input prints the same document.
    Timeless,
}

/// One kind of JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// `planrun.<document>`, the envelope's `format`.
    pub name: &'static str,
    /// The envelope's `format_version`.
    pub version: u32,
    pub timing: Timing,
    /// Every `outcome` it can have.
    pub outcomes: &'static [OutcomeCode],
    /// One line on what it is, the schema's description.
    pub describes: &'static str,
}

impl Format {
    /// The name without `planrun.`: `apply`, the schema's file stem.
    pub fn short_name(&self) -> &'static str {
        self.name.strip_prefix("planrun.").unwrap_or(self.name)
    }

    /// The schema's file, relative to the repository: `docs/schemas/apply.schema.json`.
    pub fn schema_path(&self) -> String {
        format!("docs/schemas/{}.schema.json", self.short_name())
    }
}

use OutcomeCode::*;

/// `planrun apply [--dry-run] --format json`.
pub const APPLY: Format = Format {
    name: "planrun.apply",
    version: 1,
    timing: Timing::Span,
    outcomes: &[
        Applied,
        WouldApply,
        NothingToDo,
        PreconditionFailed,
        VerificationFailed,
        StepFailed,
        Drift,
        Interrupted,
    ],
    describes: "planrun apply --format json: what ran, stage by stage, and how it ended (with --dry-run: what would have, rolled back)",
};

/// `planrun plan --format json`.
pub const PLAN: Format = Format {
    name: "planrun.plan",
    version: 1,
    timing: Timing::Span,
    outcomes: &[
        WouldApply,
        NothingToDo,
        PreconditionFailed,
        VerificationFailed,
        StepFailed,
        Drift,
        Interrupted,
    ],
    describes:
        "planrun plan --format json: what apply would do now, stage by stage; nothing was written",
};

/// `planrun verify --format json`.
pub const VERIFY: Format = Format {
    name: "planrun.verify",
    version: 1,
    timing: Timing::Span,
    outcomes: &[
        Verified,
        PreconditionFailed,
        VerificationFailed,
        StepFailed,
        Drift,
        Interrupted,
    ],
    describes:
        "planrun verify --format json: the verification of every applied stage, run again now",
};

/// `planrun revert [--dry-run] --format json`, `planrun plan --revert --format json`.
pub const REVERT: Format = Format {
    name: "planrun.revert",
    version: 1,
    timing: Timing::Span,
    outcomes: &[
        Reverted,
        WouldRevert,
        NothingToDo,
        RevertRefused,
        VerificationFailed,
        StepFailed,
        Interrupted,
    ],
    describes: "planrun revert --format json: the applied stages after --to undone, newest first, and how it ended (with --dry-run or plan --revert: what would have been)",
};

/// `planrun status --format json`.
pub const STATUS: Format = Format {
    name: "planrun.status",
    version: 1,
    timing: Timing::Instant,
    outcomes: &[Ok],
    describes: "planrun status --format json: the ledger's state of each stage and the recent runs",
};

/// `planrun reset STAGE --format json`.
pub const RESET: Format = Format {
    name: "planrun.reset",
    version: 1,
    timing: Timing::Span,
    outcomes: &[Reset],
    describes: "planrun reset STAGE --format json: the half-done batched stage abandoned, and what was removed",
};

/// The rehearsal report: `rehearsals/<plan>-<stamp>.json`, `planrun rehearse --format json`.
pub const REHEARSAL: Format = Format {
    name: "planrun.rehearsal",
    version: 1,
    timing: Timing::Span,
    outcomes: &[
        Applied,
        NothingToDo,
        PreconditionFailed,
        VerificationFailed,
        StepFailed,
        Drift,
        Interrupted,
        OverBudget,
        RevertUnproved,
    ],
    describes: "planrun rehearse: the plan applied to a throwaway copy of the target, measured per stage (the file apply --require-rehearsal reads)",
};

/// `planrun check --format json` of a valid plan.
pub const CHECK: Format = Format {
    name: "planrun.check",
    version: 1,
    timing: Timing::Instant,
    outcomes: &[Valid],
    describes: "planrun check --format json: a valid plan's stages, order, checks, locks and lock findings (an invalid plan prints planrun.error with its problems)",
};

/// `planrun transforms --format json`.
pub const TRANSFORMS: Format = Format {
    name: "planrun.transforms",
    version: 1,
    timing: Timing::Timeless,
    outcomes: &[Ok],
    describes: "planrun transforms --format json: the native transforms built into this binary",
};

/// `planrun graph --format json`.
pub const GRAPH: Format = Format {
    name: "planrun.graph",
    version: 1,
    timing: Timing::Timeless,
    outcomes: &[Ok],
    describes: "planrun graph --format json: the stages in run order, their levels and dependency edges (with --status, each stage's ledger state)",
};

/// What a command prints with `--format json` when it has no report to print.
pub const ERROR: Format = Format {
    name: "planrun.error",
    version: 1,
    timing: Timing::Instant,
    outcomes: &[
        Error,
        Usage,
        InvalidPlan,
        PreconditionFailed,
        VerificationFailed,
        StepFailed,
        Drift,
        Locked,
        CannotConnect,
        BackupFailed,
        RehearsalRequired,
        OverBudget,
        RevertRefused,
        RevertUnproved,
        Interrupted,
    ],
    describes: "what a command prints with --format json instead of its report when it has none: why, with the exit code",
};

/// `planrun apply PLAN --fleet FILE --format json` (`--dry-run` included).
pub const FLEET_APPLY: Format = Format {
    name: "planrun.fleet-apply",
    version: 1,
    timing: Timing::Span,
    outcomes: &[
        Applied,
        WouldApply,
        NothingToDo,
        Drift,
        FleetHalted,
        RehearsalRequired,
        Interrupted,
    ],
    describes: "planrun apply --fleet --format json: the fleet's waves, each target's state and run, and why the rollout stopped if it did",
};

/// `planrun status PLAN --fleet FILE --format json`.
pub const FLEET_STATUS: Format = Format {
    name: "planrun.fleet-status",
    version: 1,
    timing: Timing::Instant,
    outcomes: &[Ok],
    describes: "planrun status --fleet --format json: each target's stage states and last run, and the targets grouped by the fingerprint of the schema the plan touches",
};

/// `planrun plan PLAN --fleet FILE --format json`.
pub const FLEET_PLAN: Format = Format {
    name: "planrun.fleet-plan",
    version: 1,
    timing: Timing::Span,
    outcomes: &[WouldApply, NothingToDo, Drift, Error],
    describes: "planrun plan --fleet --format json: per target, wave by wave, the stages apply would run now and the drift; nothing was written",
};

/// `planrun rehearse PLAN --fleet FILE --format json`, and the fleet's record
/// `<plan>-fleet.json` in the report directory.
pub const FLEET_REHEARSAL: Format = Format {
    name: "planrun.fleet-rehearsal",
    version: 1,
    timing: Timing::Span,
    outcomes: &[
        Ok,
        PreconditionFailed,
        VerificationFailed,
        StepFailed,
        Drift,
        Locked,
        CannotConnect,
        OverBudget,
        RevertUnproved,
        Interrupted,
        Error,
    ],
    describes: "planrun rehearse --fleet --format json: one rehearsal per schema-fingerprint group, of its first target, and each group's report file",
};

/// Every document planrun prints.
pub const ALL: [&Format; 15] = [
    &APPLY,
    &REVERT,
    &PLAN,
    &VERIFY,
    &STATUS,
    &RESET,
    &REHEARSAL,
    &CHECK,
    &TRANSFORMS,
    &GRAPH,
    &ERROR,
    &FLEET_APPLY,
    &FLEET_STATUS,
    &FLEET_PLAN,
    &FLEET_REHEARSAL,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_outcome_list_is_consistent() {
        for (i, format) in ALL.iter().enumerate() {
            assert!(format.name.starts_with("planrun."), "{}", format.name);
            assert!(
                ALL[..i].iter().all(|other| other.name != format.name),
                "{} twice",
                format.name
            );
            assert!(!format.outcomes.is_empty(), "{}", format.name);
        }
        assert!(ERROR
            .outcomes
            .iter()
            .all(|outcome| outcome.exit_code() != 0));
        assert_eq!(APPLY.schema_path(), "docs/schemas/apply.schema.json");
    }
}
