//! Outcome codes: how a command ended, in one machine-readable word. Each names
//! exactly one exit code; code 0 has several, so that a script can tell "applied"
//! from "nothing to do" without reading prose.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::exit_codes;

/// How a command ended: the `outcome` of every JSON document. Each names one exit
/// code (`OutcomeCode::exit_code`), the process's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeCode {
    /// Exit 0. `apply`, `rehearse`: stages ran and committed.
    Applied,
    /// Exit 0. `plan`: stages would run now; `apply --dry-run`: they ran and were
    /// rolled back.
    WouldApply,
    /// Exit 0. `apply`, `plan`, `rehearse`: every selected stage is already applied.
    NothingToDo,
    /// Exit 0. `verify`: every applied stage passes its verification.
    Verified,
    /// Exit 0. `check`: the plan is valid.
    Valid,
    /// Exit 0. `reset`: the half-done batched stage was abandoned and undone.
    Reset,
    /// Exit 0. `status`, `graph`, `transforms`: the report is complete.
    Ok,
    /// Exit 0. `revert`: the stages after `--to` were reverted and committed.
    Reverted,
    /// Exit 0. `revert --dry-run`, `plan --revert`: the stages would be reverted.
    WouldRevert,
    /// Exit 1: an error with no more specific code (unreadable file, internal error).
    Error,
    /// Exit 2: bad command-line usage, or a request the plan cannot meet.
    Usage,
    /// Exit 10: the plan is invalid.
    InvalidPlan,
    /// Exit 11: a precondition did not hold; nothing of that stage or after it ran.
    PreconditionFailed,
    /// Exit 12: a verification failed; its stage was rolled back (`verify`: an applied
    /// stage no longer passes).
    VerificationFailed,
    /// Exit 13: a step failed; its stage was rolled back.
    StepFailed,
    /// Exit 14: an applied stage changed since it ran, or the ledger and the plan
    /// disagree about history.
    Drift,
    /// Exit 15: another apply of this plan holds the lock.
    Locked,
    /// Exit 16: the database could not be reached.
    CannotConnect,
    /// Exit 17: the backup before the first change failed; nothing ran.
    BackupFailed,
    /// Exit 18: `apply --require-rehearsal` refused.
    RehearsalRequired,
    /// Exit 19: `rehearse`: a stage's locks were over its `lock_budget`.
    OverBudget,
    /// Exit 20: `revert` refused before changing anything (a revert precondition
    /// failed, a stage is irreversible, a loss is not declared).
    RevertRefused,
    /// Exit 21: `apply --fleet`: a wave's gate failed; later waves were not started.
    FleetHalted,
    /// Exit 22: `rehearse --revert` applied the plan on the copy, but a stage's
    /// revert was not proved there.
    RevertUnproved,
    /// Exit 23: `apply`: a stage committed, but what runs after its commit (the
    /// validation of a key added `NOT VALID`) failed; the stage stays `validation
    /// pending` and a later apply retries only that.
    ValidationPending,
    /// Exit 130: SIGINT or SIGTERM; the stage in progress rolled back.
    Interrupted,
}

impl OutcomeCode {
    pub const ALL: [OutcomeCode; 26] = [
        OutcomeCode::Applied,
        OutcomeCode::WouldApply,
        OutcomeCode::NothingToDo,
        OutcomeCode::Verified,
        OutcomeCode::Valid,
        OutcomeCode::Reset,
        OutcomeCode::Ok,
        OutcomeCode::Reverted,
        OutcomeCode::WouldRevert,
        OutcomeCode::Error,
        OutcomeCode::Usage,
        OutcomeCode::InvalidPlan,
        OutcomeCode::PreconditionFailed,
        OutcomeCode::VerificationFailed,
        OutcomeCode::StepFailed,
        OutcomeCode::Drift,
        OutcomeCode::Locked,
        OutcomeCode::CannotConnect,
        OutcomeCode::BackupFailed,
        OutcomeCode::RehearsalRequired,
        OutcomeCode::OverBudget,
        OutcomeCode::RevertRefused,
        OutcomeCode::FleetHalted,
        OutcomeCode::RevertUnproved,
        OutcomeCode::ValidationPending,
        OutcomeCode::Interrupted,
    ];

    /// The process exit code this outcome ends with.
    pub const fn exit_code(self) -> i32 {
        match self {
            OutcomeCode::Applied
            | OutcomeCode::WouldApply
            | OutcomeCode::NothingToDo
            | OutcomeCode::Verified
            | OutcomeCode::Valid
            | OutcomeCode::Reset
            | OutcomeCode::Ok
            | OutcomeCode::Reverted
            | OutcomeCode::WouldRevert => exit_codes::SUCCESS,
            OutcomeCode::Error => exit_codes::ERROR,
            OutcomeCode::Usage => exit_codes::USAGE,
            OutcomeCode::InvalidPlan => exit_codes::INVALID_PLAN,
            OutcomeCode::PreconditionFailed => exit_codes::PRECONDITION_FAILED,
            OutcomeCode::VerificationFailed => exit_codes::VERIFICATION_FAILED,
            OutcomeCode::StepFailed => exit_codes::STEP_FAILED,
            OutcomeCode::Drift => exit_codes::DRIFT,
            OutcomeCode::Locked => exit_codes::LOCKED,
            OutcomeCode::CannotConnect => exit_codes::CANNOT_CONNECT,
            OutcomeCode::BackupFailed => exit_codes::BACKUP_FAILED,
            OutcomeCode::RehearsalRequired => exit_codes::REHEARSAL_REQUIRED,
            OutcomeCode::OverBudget => exit_codes::OVER_BUDGET,
            OutcomeCode::RevertRefused => exit_codes::REVERT_REFUSED,
            OutcomeCode::FleetHalted => exit_codes::FLEET_HALTED,
            OutcomeCode::RevertUnproved => exit_codes::REVERT_UNPROVED,
            OutcomeCode::ValidationPending => exit_codes::VALIDATION_PENDING,
            OutcomeCode::Interrupted => exit_codes::INTERRUPTED,
        }
    }

    /// The outcome of a command that failed with `exit_code` and has no report of its
    /// own to say more; an unknown code (or 0, which is not a failure) reads as
    /// [`OutcomeCode::Error`].
    pub fn of_failure(exit_code: i32) -> OutcomeCode {
        OutcomeCode::ALL
            .into_iter()
            .find(|outcome| outcome.exit_code() == exit_code && exit_code != exit_codes::SUCCESS)
            .unwrap_or(OutcomeCode::Error)
    }

    /// The code as it appears in JSON, e.g. `nothing_to_do`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeCode::Applied => "applied",
            OutcomeCode::WouldApply => "would_apply",
            OutcomeCode::NothingToDo => "nothing_to_do",
            OutcomeCode::Verified => "verified",
            OutcomeCode::Valid => "valid",
            OutcomeCode::Reset => "reset",
            OutcomeCode::Ok => "ok",
            OutcomeCode::Reverted => "reverted",
            OutcomeCode::WouldRevert => "would_revert",
            OutcomeCode::Error => "error",
            OutcomeCode::Usage => "usage",
            OutcomeCode::InvalidPlan => "invalid_plan",
            OutcomeCode::PreconditionFailed => "precondition_failed",
            OutcomeCode::VerificationFailed => "verification_failed",
            OutcomeCode::StepFailed => "step_failed",
            OutcomeCode::Drift => "drift",
            OutcomeCode::Locked => "locked",
            OutcomeCode::CannotConnect => "cannot_connect",
            OutcomeCode::BackupFailed => "backup_failed",
            OutcomeCode::RehearsalRequired => "rehearsal_required",
            OutcomeCode::OverBudget => "over_budget",
            OutcomeCode::RevertRefused => "revert_refused",
            OutcomeCode::FleetHalted => "fleet_halted",
            OutcomeCode::RevertUnproved => "revert_unproved",
            OutcomeCode::ValidationPending => "validation_pending",
            OutcomeCode::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for OutcomeCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failing_exit_code_has_exactly_one_outcome_named_like_it() {
        for &(code, name, _) in exit_codes::ALL {
            let outcomes: Vec<OutcomeCode> = OutcomeCode::ALL
                .into_iter()
                .filter(|outcome| outcome.exit_code() == code)
                .collect();
            if code == exit_codes::SUCCESS {
                assert!(outcomes.len() > 1, "0 has one outcome per kind of success");
                continue;
            }
            assert_eq!(outcomes.len(), 1, "exit {code} ({name}): {outcomes:?}");
            assert_eq!(outcomes[0].as_str(), name.replace('-', "_"));
            assert_eq!(OutcomeCode::of_failure(code), outcomes[0]);
        }
    }

    #[test]
    fn every_outcome_ends_with_a_documented_exit_code() {
        for outcome in OutcomeCode::ALL {
            assert!(
                exit_codes::ALL
                    .iter()
                    .any(|(code, _, _)| *code == outcome.exit_code()),
                "{outcome}"
            );
        }
    }

    #[test]
    fn json_spells_each_outcome_as_as_str_does() {
        for outcome in OutcomeCode::ALL {
            assert_eq!(
                serde_json::to_value(outcome).unwrap(),
                serde_json::Value::from(outcome.as_str())
            );
        }
        assert_eq!(OutcomeCode::of_failure(0), OutcomeCode::Error);
        assert_eq!(OutcomeCode::of_failure(77), OutcomeCode::Error);
    }
}
