//! What each stage will do now, decided once from the prepared plan, the options'
//! selection and what the ledger says (done results, checkpoints), without touching
//! a database: `apply` acts on it, `plan` previews it, a refused run reports it.
//! What only the database can tell (skip rules, preconditions) is the gate's, later.

use std::collections::BTreeMap;

use crate::ledger::{Checkpoint, RecordedStage};
use crate::prepared::PreparedStage;

/// What a stage will do now.
#[derive(Debug)]
pub(crate) enum Disposition<'r> {
    /// Left out by the options (`why`); `applied` when an earlier run applied it,
    /// `drifted` when its definition changed since (a drift is refused all the same,
    /// unless accepted).
    NotSelected {
        why: Option<String>,
        applied: Option<&'r RecordedStage>,
        drifted: bool,
    },
    /// Applied (or skipped) by an earlier run, its definition unchanged.
    Applied(&'r RecordedStage),
    /// Applied by an earlier run, its definition changed since.
    Drifted(&'r RecordedStage),
    /// Half done: a batched attempt's checkpoint is in the ledger; it resumes.
    Resume(&'r Checkpoint),
    /// Runs.
    Run,
}

impl Disposition<'_> {
    pub(crate) fn is_drifted(&self) -> bool {
        matches!(
            self,
            Disposition::Drifted(_) | Disposition::NotSelected { drifted: true, .. }
        )
    }
}

/// One stage, in run order, with its disposition.
pub(crate) struct Decision<'p, 'a, 'r> {
    pub(crate) stage: &'p PreparedStage<'a>,
    pub(crate) disposition: Disposition<'r>,
}

/// Decides every stage of `selection` (each with whether the options take it and,
/// if not, why) against `done` (the ledger's applied and skipped stages) and
/// `checkpoints` (half-done batched stages).
pub(crate) fn decide<'p, 'a, 'r>(
    selection: &[(&'p PreparedStage<'a>, bool, Option<String>)],
    done: &'r BTreeMap<String, RecordedStage>,
    checkpoints: &'r BTreeMap<String, Checkpoint>,
) -> Vec<Decision<'p, 'a, 'r>> {
    selection
        .iter()
        .map(|(stage, selected, why)| Decision {
            stage,
            disposition: disposition(stage, *selected, why, done, checkpoints),
        })
        .collect()
}

fn disposition<'r>(
    stage: &PreparedStage<'_>,
    selected: bool,
    why: &Option<String>,
    done: &'r BTreeMap<String, RecordedStage>,
    checkpoints: &'r BTreeMap<String, Checkpoint>,
) -> Disposition<'r> {
    let recorded = done.get(&stage.id);
    let drifted = recorded.is_some_and(|recorded| !stage.matches_recorded(&recorded.checksum));
    match recorded {
        _ if !selected => Disposition::NotSelected {
            why: why.clone(),
            applied: recorded,
            drifted,
        },
        Some(recorded) if drifted => Disposition::Drifted(recorded),
        Some(recorded) => Disposition::Applied(recorded),
        None => match checkpoints.get(&stage.id) {
            Some(checkpoint) => Disposition::Resume(checkpoint),
            None => Disposition::Run,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::run::Runner;
    use planrun_transform::Registry;

    fn plan(dir: &std::path::Path) -> planrun_plan::Plan {
        let text = "[plan]\nname = \"p\"\n\
            [[stage]]\nid = \"one\"\n[[stage.step]]\nname = \"s\"\nsql = \"SELECT 1\"\n\
            [[stage]]\nid = \"two\"\n[[stage.step]]\nname = \"s\"\nsql = \"SELECT 2\"\n\
            [[stage]]\nid = \"three\"\noptional = true\n[[stage.step]]\nname = \"s\"\nsql = \"SELECT 3\"\n";
        planrun_plan::Plan::parse(&dir.join("plan.toml"), text.into(), None).unwrap()
    }

    fn recorded(checksum: &str) -> RecordedStage {
        RecordedStage {
            result_id: 1,
            run_id: 1,
            status: crate::ledger::ResultStatus::Applied,
            checksum: checksum.into(),
            definition: Default::default(),
            finished_at: "then".into(),
            captures: BTreeMap::new(),
            rows_affected: 0,
            rows_quarantined: 0,
            skip_reason: None,
        }
    }

    fn checkpoint(stage: &str) -> Checkpoint {
        Checkpoint {
            stage_id: stage.into(),
            ..Default::default()
        }
    }

    #[test]
    fn each_stage_is_applied_drifted_left_out_resumed_or_run() {
        let dir = tempfile::tempdir().unwrap();
        let (plan, registry) = (plan(dir.path()), Registry::new());
        let runner = Runner::new(&plan, &registry).unwrap();
        let selection = runner.selection(&Default::default()).unwrap();
        let one = runner.prepared().stages[0].checksum.clone();
        let mut done = BTreeMap::from([("one".to_owned(), recorded(&one))]);
        let none = BTreeMap::new();
        let kinds = |decisions: Vec<Decision<'_, '_, '_>>| -> Vec<String> {
            decisions
                .iter()
                .map(|d| format!("{}: {:?}", d.stage.id, d.disposition))
                .map(|line| {
                    line.split([' ', '(', '{'])
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect()
        };
        assert_eq!(
            kinds(decide(&selection, &done, &none)),
            ["one: Applied", "two: Run", "three: NotSelected"]
        );
        let halfway = BTreeMap::from([("two".to_owned(), checkpoint("two"))]);
        assert_eq!(
            kinds(decide(&selection, &done, &halfway)),
            ["one: Applied", "two: Resume", "three: NotSelected"]
        );
        done.insert("one".into(), recorded("another checksum"));
        done.insert("three".into(), recorded("yet another"));
        let decisions = decide(&selection, &done, &none);
        assert!(matches!(decisions[0].disposition, Disposition::Drifted(_)));
        assert!(
            decisions[2].disposition.is_drifted(),
            "a drift is found in a stage the options leave out too"
        );
        assert!(!decisions[1].disposition.is_drifted());
    }

    #[test]
    fn a_stage_left_out_says_why_and_whether_it_ran_before() {
        let dir = tempfile::tempdir().unwrap();
        let (plan, registry) = (plan(dir.path()), Registry::new());
        let runner = Runner::new(&plan, &registry).unwrap();
        let options = crate::options::ApplyOptions {
            until: Some("one".into()),
            ..Default::default()
        };
        let selection = runner.selection(&options).unwrap();
        let two = runner.prepared().stages[1].checksum.clone();
        let done = BTreeMap::from([("two".to_owned(), recorded(&two))]);
        let none = BTreeMap::new();
        let decisions = decide(&selection, &done, &none);
        assert!(matches!(decisions[0].disposition, Disposition::Run));
        match &decisions[1].disposition {
            Disposition::NotSelected { why, applied, .. } => {
                assert_eq!(why.as_deref(), Some("after --until one"));
                assert!(applied.is_some());
            }
            other => panic!("two: {other:?}"),
        }
    }
}
