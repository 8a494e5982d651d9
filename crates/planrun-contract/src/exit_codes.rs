//! Process exit codes of `planrun`, in one place. Documented in `docs/exit-codes.md`
//! (and `planrun --help`); scripts may rely on them, so they never change meaning.
//! Each JSON document says the same in its `outcome` ([`crate::OutcomeCode`]), which
//! names one of these codes, more precisely for code 0.

/// Done, or nothing to do.
pub const SUCCESS: i32 = 0;
/// An error with no more specific code: unreadable file, internal error.
pub const ERROR: i32 = 1;
/// Bad command-line usage (clap's own code).
pub const USAGE: i32 = 2;
/// The plan is invalid: syntax, structure, missing SQL file, unknown transform.
pub const INVALID_PLAN: i32 = 10;
/// A precondition did not hold; nothing of that stage or after it ran.
pub const PRECONDITION_FAILED: i32 = 11;
/// A verification did not pass; its stage was rolled back.
pub const VERIFICATION_FAILED: i32 = 12;
/// A step (SQL or transform) failed; its stage was rolled back.
pub const STEP_FAILED: i32 = 13;
/// An applied stage's definition changed since it ran (see `--allow-drift`).
pub const DRIFT: i32 = 14;
/// Another `apply` of this plan holds the lock.
pub const LOCKED: i32 = 15;
/// The database could not be reached or refused the login.
pub const CANNOT_CONNECT: i32 = 16;
/// The backup before the first change could not be taken; nothing ran.
pub const BACKUP_FAILED: i32 = 17;
/// `--require-rehearsal` refused: no matching, passing, fresh rehearsal.
pub const REHEARSAL_REQUIRED: i32 = 18;
/// `rehearse`: a stage held a lock over its `lock_budget` on the copy (estimated on
/// the target); `apply --require-rehearsal` refuses such a report.
pub const OVER_BUDGET: i32 = 19;
/// `revert` refused before changing anything: a revert precondition failed (the rows
/// named), a stage to revert is irreversible, or a loss the plan does not declare.
pub const REVERT_REFUSED: i32 = 20;
/// `apply --fleet`: a wave's gate failed (a target failed, was refused, or measured
/// over the wave's limits); targets already running finished, later waves were not
/// started. 20 is `revert`'s.
pub const FLEET_HALTED: i32 = 21;
/// `rehearse --revert`: the apply on the copy passed, but the revert of a stage was
/// not proved (it did not commit, or the copy differed from before the stage);
/// the report's `revert.stages[]` says which, and `revert --require-rehearsal`
/// refuses it (18). (21 is the fleet's.)
pub const REVERT_UNPROVED: i32 = 22;
/// `apply`: a stage committed with a foreign key `NOT VALID`, but its validation after
/// the commit (an `after_commit` step, or a check placed after one) failed or did not
/// finish: the stage stays `validation pending` (the key still checks every new
/// write), `status` shows it, and a later `apply` retries only the validation.
pub const VALIDATION_PENDING: i32 = 23;
/// SIGINT or SIGTERM stopped the run: the stage in progress rolled back, committed
/// stages stay (128 + SIGINT, as shells report an interrupted command).
pub const INTERRUPTED: i32 = 130;

/// Every code with its name and meaning, for documentation and `--help`.
pub const ALL: &[(i32, &str, &str)] = &[
    (SUCCESS, "success", "done, or nothing to do"),
    (ERROR, "error", "an error with no more specific code"),
    (USAGE, "usage", "bad command-line usage"),
    (INVALID_PLAN, "invalid-plan", "the plan is invalid"),
    (
        PRECONDITION_FAILED,
        "precondition-failed",
        "a precondition did not hold; nothing after it ran",
    ),
    (
        VERIFICATION_FAILED,
        "verification-failed",
        "a verification failed; its stage was rolled back",
    ),
    (
        STEP_FAILED,
        "step-failed",
        "a step failed; its stage was rolled back",
    ),
    (DRIFT, "drift", "an applied stage changed since it ran"),
    (
        LOCKED,
        "locked",
        "another apply of this plan holds the lock",
    ),
    (
        CANNOT_CONNECT,
        "cannot-connect",
        "the database could not be reached",
    ),
    (
        BACKUP_FAILED,
        "backup-failed",
        "the backup could not be taken; nothing ran",
    ),
    (
        REHEARSAL_REQUIRED,
        "rehearsal-required",
        "no matching, passing, fresh rehearsal report",
    ),
    (
        OVER_BUDGET,
        "over-budget",
        "rehearse: a stage's locks were over its lock_budget",
    ),
    (
        REVERT_REFUSED,
        "revert-refused",
        "revert: a revert precondition failed, a stage is irreversible, or a loss is not declared",
    ),
    (
        FLEET_HALTED,
        "fleet-halted",
        "apply --fleet: a wave's gate failed; later waves were not started",
    ),
    (
        REVERT_UNPROVED,
        "revert-unproved",
        "rehearse --revert: a stage's revert was not proved on the copy",
    ),
    (
        VALIDATION_PENDING,
        "validation-pending",
        "apply: a stage committed, but its validation after the commit failed; it stays pending and a later apply retries it",
    ),
    (
        INTERRUPTED,
        "interrupted",
        "SIGINT or SIGTERM: the stage in progress rolled back, committed stages stay",
    ),
];
