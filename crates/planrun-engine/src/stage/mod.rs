//! One stage: the contexts its pieces are given (`context.rs`), the stage that commits whole (`atomic.rs`), and its pieces: timeouts and locks, the gate (skip rules, preconditions, captures, backup), the steps (SQL, transform), checks, the ledger row, what a failure reports, retrying a whole transaction on a lock (for the online stages), and the steps that run after the stage's commit (`after_commit.rs`: a key's validation, the stage `validation_pending` until it passed).

pub(crate) mod abandoned;
pub(crate) mod after_commit;
pub(crate) mod atomic;
pub(crate) mod autovacuum;
pub(crate) mod captures;
pub(crate) mod checks;
pub(crate) mod context;
pub(crate) mod copy_in;
pub(crate) mod gate;
pub(crate) mod sql;
pub(crate) mod sql_step;
pub(crate) mod stage_failure;
pub(crate) mod stage_locks;
pub(crate) mod stage_record;
pub(crate) mod steps;
pub(crate) mod transform_step;
pub(crate) mod whole_retries;
