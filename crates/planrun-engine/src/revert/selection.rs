//! Which stages a revert undoes: every stage after `--to` in the plan's order (the
//! DAG order `apply` runs them in) that the ledger records as done, newest first, so
//! that a stage is undone only after everything built on it. `--to start` keeps
//! none.

use crate::apply::run::Runner;
use crate::error::EngineError;
use crate::prepared::{PreparedPlan, PreparedStage};

/// The stages after `to` (`None`: every stage) that `is_done`, in the order they are
/// reverted; an error when `to` names no stage of the plan.
pub(crate) fn stages_to_revert<'p>(
    prepared: &'p PreparedPlan<'p>,
    to: Option<&str>,
    is_done: impl Fn(&str) -> bool,
) -> Result<Vec<&'p PreparedStage<'p>>, EngineError> {
    let order: Vec<&PreparedStage<'_>> = prepared.in_order().collect();
    let first = match to {
        None => 0,
        Some(id) => {
            let at = order.iter().position(|stage| stage.id == id).ok_or_else(|| {
                EngineError::Selection(format!(
                    "--to `{id}` names no stage of plan `{}`: give a stage id, or `start` to revert every applied stage",
                    prepared.plan.name
                ))
            })?;
            at + 1
        }
    };
    Ok(order[first..]
        .iter()
        .rev()
        .filter(|stage| is_done(&stage.id))
        .copied()
        .collect())
}

impl Runner<'_> {
    /// The stages a revert to `to` (`None`: `start`) may undo, whatever the ledger
    /// says: every stage after `to` in the plan's order, newest first. What
    /// `revert --require-rehearsal` needs the rehearsal to have proved.
    pub fn revert_candidates(&self, to: Option<&str>) -> Result<Vec<&str>, EngineError> {
        Ok(stages_to_revert(self.prepared(), to, |_| true)?
            .into_iter()
            .map(|stage| stage.id())
            .collect())
    }
}
