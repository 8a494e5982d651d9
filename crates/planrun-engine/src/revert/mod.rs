//! Reverting a plan, as an orchestration that reads top to bottom: prepare each
//! reversible stage's revert view (`Stage::revert_view`, run by the `stage/` pieces),
//! connect, take the plan's lock, read the ledger, choose the stages after `--to`
//! (`selection.rs`), judge the revert before anything changes (`preflight.rs`:
//! irreversible stages and failing revert preconditions refuse it, exit 20, with no
//! run id taken), then stage by stage, newest first, each in its own transaction
//! (`stage.rs`), and the summary (`summary.rs`). `plan --revert` is `preview.rs`.

pub(crate) mod preflight;
mod preview;
pub(crate) mod selection;
pub(crate) mod stage;
mod summary;

use std::collections::BTreeMap;

use planrun_plan::Stage;
use planrun_report::{Command, RevertPlan, RunOutcome, RunReport, StageStatus};
use postgres::GenericClient;

use crate::apply::run::Runner;
use crate::db::connect::Target;
use crate::db::interrupt;
use crate::db::lock;
use crate::db::watch::BlockerWatch;
use crate::error::EngineError;
use crate::ledger::{self, NewRun, RecordedStage};
use crate::observer::Observer;
use crate::online::half_done::say_what_remains;
use crate::options::RevertOptions;
use crate::prepared::PreparedStage;
use crate::stage::context::{RunContext, StageOptions};

/// Each stage's revert view, in plan order; `None` for an irreversible stage.
pub(crate) struct RevertViews {
    views: Vec<Option<Stage>>,
}

impl RevertViews {
    pub(crate) fn of(runner: &Runner<'_>) -> RevertViews {
        RevertViews {
            views: runner
                .plan()
                .stages
                .iter()
                .map(Stage::revert_view)
                .collect(),
        }
    }

    /// The views prepared to run, in plan order.
    pub(crate) fn prepare<'v>(
        &'v self,
        runner: &Runner<'v>,
    ) -> Result<Vec<Option<PreparedStage<'v>>>, EngineError> {
        self.views
            .iter()
            .enumerate()
            .map(|(position, view)| {
                view.as_ref()
                    .map(|view| {
                        PreparedStage::revert_of(runner.plan(), runner.registry(), view, position)
                    })
                    .transpose()
            })
            .collect()
    }
}

/// The stages one revert undoes, each with its prepared revert view and whether the
/// ledger has it applied (rather than skipped).
type Chosen<'s, 'p> = Vec<(&'s PreparedStage<'p>, Option<&'s PreparedStage<'p>>, bool)>;

impl Runner<'_> {
    /// Reverts the applied stages after `options.to` on `target`, newest first.
    pub fn revert(
        &self,
        target: &Target,
        options: &RevertOptions,
        observer: &dyn Observer,
    ) -> Result<RunReport, EngineError> {
        let views = RevertViews::of(self);
        let prepared_views = views.prepare(self)?;
        let mut client = self.connect(target, "revert")?;
        let _cancel_on_signal = interrupt::watch_connection(&client, target);
        lock::acquire(&mut client, &self.plan().name, options.lock_wait)?;
        let result = if options.dry_run {
            let mut outer = client.transaction().map_err(EngineError::database(
                "cannot begin the dry-run transaction",
            ))?;
            let report = self.revert_stages(&mut outer, target, options, &prepared_views, observer);
            let _ = outer.rollback();
            report
        } else {
            self.revert_stages(&mut *client, target, options, &prepared_views, observer)
        };
        lock::release(&mut client, &self.plan().name);
        interrupt::acknowledge();
        result
    }

    /// The stages after `to` to revert, newest first, with their views; the revert
    /// part of the report naming them.
    fn choose<'s, 'p>(
        &'s self,
        options: &RevertOptions,
        done: &BTreeMap<String, RecordedStage>,
        views: &'s [Option<PreparedStage<'p>>],
    ) -> Result<(Chosen<'s, 'p>, RevertPlan), EngineError>
    where
        's: 'p,
    {
        let stages = selection::stages_to_revert(self.prepared(), options.to.as_deref(), |id| {
            done.contains_key(id)
        })?;
        let chosen: Chosen<'s, 'p> = stages
            .into_iter()
            .map(|stage| {
                let applied = done
                    .get(&stage.id)
                    .is_some_and(|recorded| recorded.status.is_committed());
                (stage, views[stage.position].as_ref(), applied)
            })
            .collect();
        let plan = RevertPlan {
            to: options.to.clone().unwrap_or_else(|| "start".into()),
            stages: chosen
                .iter()
                .map(|(stage, _, _)| stage.id.clone())
                .collect(),
            ..RevertPlan::default()
        };
        Ok((chosen, plan))
    }

    fn revert_stages<C: GenericClient>(
        &self,
        conn: &mut C,
        target: &Target,
        options: &RevertOptions,
        views: &[Option<PreparedStage<'_>>],
        observer: &dyn Observer,
    ) -> Result<RunReport, EngineError> {
        ledger::ensure(conn)?;
        let done = ledger::done_results(conn, &self.plan().name)?;
        let (chosen, revert_plan) = self.choose(options, &done, views)?;
        let mut report = RunReport::new(
            Command::Revert,
            &self.plan().name,
            target,
            &target.source,
            options.dry_run,
        );
        report.revert = Some(revert_plan);
        let captures = ledger::recorded_captures(&done);
        let judgement = preflight::judge(conn, &chosen, &captures)?;
        if chosen.is_empty() || !judgement.refusals.is_empty() {
            return Ok(self.refuse_or_nothing(report, &chosen, judgement));
        }
        let run_id = ledger::start_run(
            conn,
            &NewRun {
                plan_name: &self.plan().name,
                plan_checksum: &self.plan_checksum(),
                command: if options.dry_run {
                    "revert --dry-run"
                } else {
                    "revert"
                },
                target: &target.to_string(),
            },
        )?;
        report.run_id = (!options.dry_run).then_some(run_id);
        let stage_options = StageOptions {
            dry_run: options.dry_run,
            backup_dir: options.backup_dir.as_deref(),
        };
        let mut run = RunContext::new(self.prepared(), target, stage_options, observer, run_id);
        run.captures = captures;
        if !options.dry_run {
            if let Ok(row) = conn.query_one("SELECT pg_catalog.pg_backend_pid()", &[]) {
                run.watch = BlockerWatch::start(target, &self.plan().name, row.get(0));
            }
        }
        // The losses are found again, under each stage's locks, as the stage runs.
        let mut findings = stage::Findings::default();
        self.revert_each(conn, &mut run, &chosen, &mut report, &mut findings)?;
        report.backup_file = run.backup_file;
        self.summarise_revert(&mut report, findings, options);
        ledger::finish_run_reported(conn, run_id, &mut report);
        Ok(report)
    }

    /// Reverts `chosen` in order until one does not commit, each noted in `report`.
    fn revert_each<C: GenericClient>(
        &self,
        conn: &mut C,
        run: &mut RunContext<'_>,
        chosen: &Chosen<'_, '_>,
        report: &mut RunReport,
        findings: &mut stage::Findings,
    ) -> Result<(), EngineError> {
        let mut stopped = false;
        for &(forward, view, applied) in chosen {
            if !stopped && interrupt::requested().is_some() {
                report.outcome = RunOutcome::Interrupted;
                stopped = true;
            }
            if stopped {
                report.stages.push(forward.report(StageStatus::NotRun));
                continue;
            }
            run.observer.stage_started(forward);
            run.lock_retries.clear();
            let mut stage_report = match (view, applied) {
                (Some(view), true) => stage::revert_stage(conn, run, (forward, view), findings)
                    .and_then(|mut r| {
                        say_what_remains(conn, self.plan(), forward, &mut r).map(|()| r)
                    }),
                (_, false) => stage::revert_skipped(conn, run, forward),
                // The preflight refused the revert of an irreversible applied stage.
                (None, true) => Err(EngineError::Selection(format!(
                    "stage `{}` cannot be reverted",
                    forward.id
                ))),
            }
            .inspect_err(|_| {
                let outcome = match interrupt::requested() {
                    Some(_) => RunOutcome::Interrupted.ledger_label(),
                    None => "aborted",
                };
                let _ = ledger::finish_run(conn, run.run_id, outcome, run.backup_file.as_deref());
            })?;
            stage_report.lock_retries = std::mem::take(&mut run.lock_retries);
            run.observer.stage_finished(&stage_report);
            stopped = stage_report.status != StageStatus::Reverted;
            report.stages.push(stage_report);
        }
        Ok(())
    }
}
