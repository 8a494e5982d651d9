//! Reading a stage's way back: `[[stage.revert_precondition]]` (the keys of a
//! precondition, plus `loss`), `[[stage.revert_capture]]`, `[[stage.revert]]` (the
//! keys of a step), `[[stage.revert_verify]]` and `[stage.revert_loss]`. Checks or a
//! declared loss without any revert step are reported: they would never run.

use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::{true_expectation, Reader};
use crate::model::{Revert, RevertLoss, Span, Step, StepKind};
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
        let rehearse_writes = self.rehearse_writes(table, span, plan_dir);
        if !table.contains_key("revert") {
            self.refuse_revert_without_steps(table);
        }
        Revert {
            preconditions,
            captures,
            steps,
            verify,
            loss,
            rehearse_writes,
        }
    }

    /// `[[stage.rehearse_writes]]`: steps of `sql` or `sql_file`; a transform is
    /// refused (the rehearsal runs the writes as the application would, in SQL).
    fn rehearse_writes(&mut self, table: &DeTable<'_>, span: Span, plan_dir: &Path) -> Vec<Step> {
        let context = "[[stage.rehearse_writes]]";
        let writes: Vec<Step> = self
            .tables(table, "rehearse_writes", span)
            .into_iter()
            .enumerate()
            .filter_map(|(index, (step, span))| self.step(step, span, (index, context), plan_dir))
            .collect();
        for write in &writes {
            if let StepKind::Transform { name_span, .. } = &write.kind {
                self.problems.push(
                    PlanProblem::new(
                        ProblemKind::InvalidValue,
                        format!("a transform in {context}: the application's writes are SQL"),
                    )
                    .label(name_span.clone(), "not SQL")
                    .help("write what the application would write as `sql = \"...\"` or `sql_file = \"...\"`"),
                );
            }
        }
        writes
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
            "rehearse_writes",
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::model::{Plan, Reversibility};

    const PLAN: &str = r#"
[plan]
name = "p"

[[stage]]
id = "one"
[[stage.step]]
sql = "CREATE TABLE t (id int)"
[[stage.revert_precondition]]
name = "t is empty"
sql = "SELECT id FROM t"
expect = "no rows"
loss = true
[[stage.revert_capture]]
name = "rows_before"
sql = "SELECT count(*) FROM t"
[[stage.revert]]
sql = "DROP TABLE t"
[[stage.revert_verify]]
name = "t is gone"
sql = "SELECT count(*) FROM t"
expect = "= {rows_before}"
[stage.revert_loss]
reason = "t is scratch"

[[stage]]
id = "two"
depends_on = ["one"]
[[stage.step]]
sql = "SELECT 1"
"#;

    fn problems(text: &str) -> Vec<(String, String)> {
        match Plan::parse(Path::new("p.toml"), text.to_owned(), None) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .problems
                .iter()
                .map(|problem| {
                    let (span, _) = problem
                        .labels
                        .first()
                        .cloned()
                        .unwrap_or((0..0, String::new()));
                    (problem.message.clone(), text[span].to_owned())
                })
                .collect(),
        }
    }

    #[test]
    fn a_stage_with_a_revert_is_reversible_and_one_without_is_not() {
        let plan = Plan::parse(Path::new("p.toml"), PLAN.to_owned(), None).unwrap();
        let (one, two) = (&plan.stages[0], &plan.stages[1]);
        assert_eq!(one.reversibility(), Reversibility::Declared);
        assert!(one.revert.preconditions[0].loss);
        assert_eq!(one.revert.loss.as_ref().unwrap().reason, "t is scratch");
        let view = one.revert_view().unwrap();
        assert_eq!(view.steps.len(), 1);
        assert_eq!(view.verify[0].name, "t is gone");
        assert!(
            matches!(two.reversibility(), Reversibility::Irreversible(why) if why.contains("[[stage.revert]]"))
        );
        assert!(two.revert_view().is_none());
    }

    #[test]
    fn revert_checks_without_a_revert_step_and_unknown_keys_are_pointed_at() {
        let orphan = PLAN.replace("[[stage.revert]]\nsql = \"DROP TABLE t\"\n", "");
        let found = problems(&orphan);
        assert!(
            found.iter().any(|(message, at)| message
                == "`revert_precondition` in a stage with no [[stage.revert]] step"
                && at.starts_with("[[stage.revert_precondition]]")),
            "{found:#?}"
        );
        let misspelt = PLAN.replace("sql = \"DROP TABLE t\"", "sql_flie = \"x.sql\"");
        let found = problems(&misspelt);
        assert!(
            found.iter().any(|(message, at)| message
                == "unknown key `sql_flie` in [[stage.revert]]"
                && at == "sql_flie"),
            "{found:#?}"
        );
        let loss_on_verify = PLAN.replace(
            "expect = \"= {rows_before}\"",
            "expect = \"= {rows_before}\"\nloss = true",
        );
        assert!(problems(&loss_on_verify)
            .iter()
            .any(|(message, _)| message == "unknown key `loss` in [[stage.revert_verify]]"));
    }

    #[test]
    fn a_revert_capture_is_read_by_the_revert_verify_of_its_stage_only() {
        assert!(problems(PLAN).is_empty());
        let elsewhere = PLAN.replace(
            "[[stage.step]]\nsql = \"SELECT 1\"",
            "[[stage.step]]\nsql = \"SELECT 1\"\n[[stage.verify]]\nname = \"x\"\nsql = \"SELECT 0\"\nexpect = \"= {rows_before}\"",
        );
        assert!(problems(&elsewhere).iter().any(
            |(message, _)| message.starts_with("capture `rows_before` is used in stage `two`")
        ));
    }

    #[test]
    fn rehearse_writes_are_sql_steps_and_a_transform_is_pointed_at() {
        let writes = PLAN.replace(
            "[stage.revert_loss]",
            "[[stage.rehearse_writes]]\nsql = \"INSERT INTO t VALUES (1)\"\n[stage.revert_loss]",
        );
        let plan = Plan::parse(Path::new("p.toml"), writes.clone(), None).unwrap();
        let view = plan.stages[0].rehearse_writes_view().unwrap();
        assert_eq!(view.steps.len(), 1);
        assert!(view.verify.is_empty() && view.preconditions.is_empty());
        assert!(plan.stages[1].rehearse_writes_view().is_none());
        let transform =
            writes.replace("sql = \"INSERT INTO t VALUES (1)\"", "transform = \"copy\"");
        let found = problems(&transform);
        assert!(
            found.iter().any(|(message, at)| message
                == "a transform in [[stage.rehearse_writes]]: the application's writes are SQL"
                && at == "\"copy\""),
            "{found:#?}"
        );
    }
}
