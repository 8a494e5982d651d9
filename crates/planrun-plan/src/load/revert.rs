//! Reading a stage's way back: `[[stage.revert_precondition]]` (the keys of a
//! precondition, plus `loss`), `[[stage.revert_capture]]`, `[[stage.revert]]` (the
//! keys of a step), `[[stage.revert_verify]]` and `[stage.revert_loss]`. Checks or a
//! declared loss without any revert step are reported: they would never run.

use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::{true_expectation, Reader};
use crate::model::{Revert, RevertLoss, Span};
use crate::problem::{PlanProblem, ProblemKind};

const LOSS_KEYS: &[&str] = &["reason"];

impl Reader<'_> {
    pub(super) fn revert(&mut self, table: &DeTable<'_>, span: Span, plan_dir: &Path) -> Revert {
        let preconditions = self
            .tables(table, "revert_precondition", span.clone())
            .into_iter()
            .filter_map(|(check, span)| {
                self.check(
                    check,
                    span,
                    "[[stage.revert_precondition]]",
                    Some(true_expectation()),
                )
            })
            .collect();
        let captures = self
            .tables(table, "revert_capture", span.clone())
            .into_iter()
            .filter_map(|(capture, span)| {
                self.capture_in(capture, span, "[[stage.revert_capture]]")
            })
            .collect();
        let steps: Vec<_> = self
            .tables(table, "revert", span.clone())
            .into_iter()
            .enumerate()
            .filter_map(|(index, (step, span))| {
                self.step(step, span, (index, "[[stage.revert]]"), plan_dir)
            })
            .collect();
        let verify = self
            .tables(table, "revert_verify", span.clone())
            .into_iter()
            .filter_map(|(check, span)| self.check(check, span, "[[stage.revert_verify]]", None))
            .collect();
        let loss = self.revert_loss(table);
        if !table.contains_key("revert") {
            self.refuse_revert_without_steps(table);
        }
        Revert {
            preconditions,
            captures,
            steps,
            verify,
            loss,
        }
    }

    fn revert_loss(&mut self, table: &DeTable<'_>) -> Option<RevertLoss> {
        let value = table.get("revert_loss")?;
        let DeValue::Table(loss) = value.get_ref() else {
            self.wrong_type(
                "revert_loss",
                "a table ([stage.revert_loss] with `reason`)",
                value.get_ref(),
                value.span(),
            );
            return None;
        };
        self.check_keys(loss, LOSS_KEYS, "[stage.revert_loss]");
        let (reason, _) = self.string(loss, "reason", true, value.span())?;
        Some(RevertLoss {
            reason,
            span: value.span(),
        })
    }

    /// Revert checks, captures or a declared loss in a stage with no revert step.
    fn refuse_revert_without_steps(&mut self, table: &DeTable<'_>) {
        let orphan = [
            "revert_precondition",
            "revert_capture",
            "revert_verify",
            "revert_loss",
        ]
        .into_iter()
        .find_map(|key| table.get(key).map(|value| (key, value.span())));
        if let Some((key, span)) = orphan {
            self.problems.push(
                PlanProblem::new(
                    ProblemKind::MissingKey,
                    format!("`{key}` in a stage with no [[stage.revert]] step"),
                )
                .label(span, "never runs: the stage has no way back")
                .help("add the revert's work:\n[[stage.revert]]\nsql = \"...\"   # or sql_file = \"...\" or transform = \"name\""),
            );
        }
    }
}
