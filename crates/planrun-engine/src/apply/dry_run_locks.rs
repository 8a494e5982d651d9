//! `apply --dry-run` holds everything in one transaction until its final rollback, so
//! a lock that the real run holds for one stage (stage 1 of the memoir plan takes
//! ACCESS EXCLUSIVE on `chapters` for an instant) is held through every stage after
//! it, and a batched stage's locks, which the real run takes only at its cutover,
//! through its whole transform (issue 21, item 12). Before the dry run starts, the
//! static lock analysis says which locks on tables that are not new would be held so.
//! One that blocks the application's reads (or writes) where the stage's or the plan's
//! `lock_budget` sets `blocks_reads` (or `blocks_writes`) would be held longer than the
//! budget can promise, for the length of the later stages, so the dry run is refused,
//! saying which and pointing to `rehearse`, unless `--hold-locks` accepts it. Without
//! such a budget the plan promises no limit, and the dry run goes ahead.

use std::collections::BTreeMap;

use crate::apply::run::Runner;
use crate::error::EngineError;
use crate::ledger::RecordedStage;
use crate::prepared::PreparedStage;

impl Runner<'_> {
    /// Refuses a dry run of the `selection` stages not in `done` that would hold a
    /// lock blocking the application past where the real run releases it.
    pub(crate) fn refuse_held_locks(
        &self,
        selection: &[(&PreparedStage<'_>, bool, Option<String>)],
        done: &BTreeMap<String, RecordedStage>,
    ) -> Result<(), EngineError> {
        let to_run: Vec<&PreparedStage<'_>> = selection
            .iter()
            .filter(|(stage, selected, _)| *selected && !done.contains_key(&stage.id))
            .map(|(stage, _, _)| *stage)
            .collect();
        let impact = self.plan().lock_impact(self.dag(), self.registry());
        let mut held = Vec::new();
        for (position, stage) in to_run.iter().enumerate() {
            let batched = stage.batched.is_some();
            let last = position + 1 == to_run.len();
            if last && !batched {
                // Held to its own end, as in the real run.
                continue;
            }
            let Some(locks) = impact.iter().find(|s| s.stage == stage.id) else {
                continue;
            };
            let budget = stage.lock_budget;
            for lock in locks.locks.iter().filter(|lock| !lock.new) {
                // Without a budget for what the lock blocks, the plan promises no
                // limit for the dry run to keep.
                let blocks = match (lock.mode.blocks_reads(), lock.mode.blocks_writes()) {
                    (true, _) => ("reads", budget.and_then(|b| b.blocks_reads.as_ref())),
                    (false, true) => ("writes", budget.and_then(|b| b.blocks_writes.as_ref())),
                    _ => continue,
                };
                let Some(limit) = blocks.1 else { continue };
                let until = if batched {
                    "through its whole transform (the real run takes it only at the cutover)"
                } else {
                    "through every stage after it"
                };
                held.push(format!(
                    "`{}` would hold {} on {} {until}, blocking the application's {} (lock_budget blocks_{} = {})",
                    stage.id,
                    lock.mode,
                    lock.relation,
                    blocks.0,
                    blocks.0,
                    limit
                ));
            }
        }
        if held.is_empty() {
            return Ok(());
        }
        Err(EngineError::NotDryRunnable(format!(
            "cannot dry-run without stopping the application: a dry run holds every lock until its final rollback, so {}; \
             use `planrun rehearse` (the plan on a copy of the database), dry-run one stage at a time with --stage, \
             or pass --hold-locks to hold them anyway",
            held.join("; ")
        )))
    }
}
