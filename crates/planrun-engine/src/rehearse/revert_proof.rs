//! `rehearse --revert`: each stage's revert proved on the copy, on its own.
//!
//! While the apply runs on the copy, [`ProofWatch`] takes the application's dump
//! before each stage starts (the stages before it committed, nothing of it begun)
//! and, once the stage is applied, runs its `[[stage.rehearse_writes]]`
//! (`writes.rs`). After the apply, the stages are reverted one at a time, newest
//! first, each by `revert --to` the stage before it, in a session of its own; the
//! dump is then compared with the one taken before that stage. A stage's revert is
//! proved when it committed (its `[[stage.revert_verify]]` passed: that is where a
//! plan checks that the writes are there in the old shape) and every statement of
//! the dump is the same, except the rows the writes of this stage or a later one
//! touched (known by table and first column, `dump_diff.rs`). A difference a newer
//! stage was charged with is not charged again, so each is charged to the stage at
//! fault. A revert that does not commit stops the proof: the older stages are not
//! reverted, and not proved.

use std::collections::BTreeSet;
use std::sync::Mutex;

use planrun_plan::{Plan, Stage};
use planrun_report::{StageReport, StageStatus};
use planrun_transform::Progress;

use crate::apply::run::Runner;
use crate::db::connect::Target;
use crate::observer::{Observer, Silent};
use crate::options::RevertOptions;
use crate::rehearse::dump_diff::{application_dump, differing_statements, RowKey};
use crate::rehearse::report::{RehearsedRevert, RevertProof};
use crate::rehearse::writes::run_writes;

/// The most differing statements a proof lists.
const DIFFERENCES: usize = 20;

/// A stage the rehearsal applied: the copy before it, and its writes' rows.
struct AppliedStage {
    id: String,
    before: Result<String, String>,
    applied: bool,
    /// The rows the stage's writes touched, or why they could not run.
    writes: Result<BTreeSet<RowKey>, String>,
}

/// Watches the apply on the copy for the proof; hears what `inner` hears.
pub(crate) struct ProofWatch<'a> {
    inner: &'a dyn Observer,
    plan: &'a Plan,
    copy: &'a Target,
    stages: Mutex<Vec<AppliedStage>>,
}

impl<'a> ProofWatch<'a> {
    pub(crate) fn new(inner: &'a dyn Observer, plan: &'a Plan, copy: &'a Target) -> Self {
        ProofWatch {
            inner,
            plan,
            copy,
            stages: Mutex::new(Vec::new()),
        }
    }

    /// The stages the apply applied, in order, when it is over.
    pub(crate) fn finish(self) -> AppliedStages {
        AppliedStages(
            self.stages
                .into_inner()
                .unwrap_or_default()
                .into_iter()
                .filter(|stage| stage.applied)
                .collect(),
        )
    }
}

/// The stages a rehearsal applied, in order, each with the copy before it.
pub(crate) struct AppliedStages(Vec<AppliedStage>);

impl AppliedStages {
    /// Reverts them on `copy`, newest first, each proved on its own.
    pub(crate) fn prove(self, runner: &Runner<'_>, copy: &Target) -> RehearsedRevert {
        let applied = self.0;
        let order = runner.revert_candidates(None).unwrap_or_default();
        let mut allowed: BTreeSet<RowKey> = BTreeSet::new();
        let mut charged: BTreeSet<String> = BTreeSet::new();
        let mut stopped: Option<String> = None;
        let mut proofs = Vec::new();
        for stage in applied.iter().rev() {
            if let Some(why) = &stopped {
                proofs.push(unproved(&stage.id, vec![why.clone()]));
                continue;
            }
            let (proof, committed) =
                prove_stage(runner, copy, stage, &order, &mut allowed, &mut charged);
            if !committed {
                stopped = Some(format!(
                    "not reverted: the revert of `{}` before it did not commit",
                    stage.id
                ));
            }
            proofs.push(proof);
        }
        RehearsedRevert { stages: proofs }
    }
}

/// Reverts `stage` alone and compares the copy with the dump before it; the proof,
/// and whether the revert committed.
fn prove_stage(
    runner: &Runner<'_>,
    copy: &Target,
    stage: &AppliedStage,
    order: &[&str],
    allowed: &mut BTreeSet<RowKey>,
    charged: &mut BTreeSet<String>,
) -> (RevertProof, bool) {
    let mut lines = Vec::new();
    match &stage.writes {
        Ok(rows) => allowed.extend(rows.iter().cloned()),
        Err(why) => lines.push(format!("the rehearse_writes did not run: {why}")),
    }
    let before_it = order
        .iter()
        .position(|id| *id == stage.id)
        .and_then(|at| order.get(at + 1));
    let options = RevertOptions {
        to: before_it.map(|id| (*id).to_owned()),
        ..RevertOptions::default()
    };
    let report = match runner.revert(copy, &options, &Silent) {
        Ok(report) => report,
        Err(error) => {
            lines.insert(0, format!("the revert failed: {error}"));
            return (unproved(&stage.id, lines), false);
        }
    };
    let Some(reported) = report
        .stages
        .iter()
        .find(|reported| reported.id == stage.id)
    else {
        lines.insert(0, "not reverted: the revert did not reach it".to_owned());
        lines.extend(report.summary.iter().cloned());
        return (unproved(&stage.id, lines), false);
    };
    if reported.status != StageStatus::Reverted {
        lines.insert(0, "not reverted: the revert did not commit".to_owned());
        lines.extend(why_not_committed(reported));
        lines.extend(report.summary.iter().cloned());
        return (unproved(&stage.id, lines), false);
    }
    let differences = match (&stage.before, application_dump(copy)) {
        (Ok(before), Ok(after)) => differing_statements(before, &after, allowed),
        (Err(error), _) => vec![format!("cannot dump the copy before the stage: {error}")],
        (_, Err(error)) => vec![format!("cannot dump the copy after the revert: {error}")],
    };
    let new: Vec<String> = differences
        .into_iter()
        .filter(|line| !charged.contains(line))
        .collect();
    charged.extend(new.iter().cloned());
    let more = new.len().saturating_sub(DIFFERENCES);
    lines.extend(new.into_iter().take(DIFFERENCES));
    if more > 0 {
        lines.push(format!("... and {more} more"));
    }
    let proof = RevertProof {
        id: stage.id.clone(),
        proved: lines.is_empty(),
        differences: lines,
    };
    (proof, true)
}

/// The checks of a revert that did not pass, and its error.
fn why_not_committed(reported: &StageReport) -> Vec<String> {
    reported
        .preconditions
        .iter()
        .chain(&reported.verifications)
        .filter(|check| !check.passed)
        .map(|check| {
            format!(
                "check `{}` failed: expected {}, got {}",
                check.name, check.expected, check.actual
            )
        })
        .chain(reported.error.iter().map(|error| error.message.clone()))
        .collect()
}

fn unproved(id: &str, differences: Vec<String>) -> RevertProof {
    RevertProof {
        id: id.to_owned(),
        proved: false,
        differences,
    }
}

impl Observer for ProofWatch<'_> {
    fn stage_started(&self, stage: &Stage) {
        let before = application_dump(self.copy);
        if let Ok(mut stages) = self.stages.lock() {
            stages.push(AppliedStage {
                id: stage.id.clone(),
                before,
                applied: false,
                writes: Ok(BTreeSet::new()),
            });
        }
        self.inner.stage_started(stage);
    }

    fn statement_finished(&self, statement: &str, elapsed: std::time::Duration) {
        self.inner.statement_finished(statement, elapsed);
    }

    fn stage_finished(&self, report: &StageReport) {
        self.inner.stage_finished(report);
        if report.status != StageStatus::Applied {
            return;
        }
        let Ok(mut stages) = self.stages.lock() else {
            return;
        };
        let Some(applied) = stages.last_mut().filter(|stage| stage.id == report.id) else {
            return;
        };
        applied.applied = true;
        if let Some(stage) = self.plan.stages.iter().find(|s| s.id == report.id) {
            if !stage.revert.rehearse_writes.is_empty() {
                applied.writes = run_writes(self.plan, stage, self.copy);
            }
        }
    }

    fn backup_taken(&self, file: &std::path::Path) {
        self.inner.backup_taken(file);
    }

    fn warning(&self, text: &str) {
        self.inner.warning(text);
    }

    fn note(&self, text: &str) {
        self.inner.note(text);
    }

    fn lock_retry(&self, stage: &str, retry: &planrun_report::LockRetry) {
        self.inner.lock_retry(stage, retry);
    }

    fn progress(&self) -> &dyn Progress {
        self.inner.progress()
    }
}
