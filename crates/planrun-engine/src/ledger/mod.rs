//! The ledger: planrun's own schema `planrun`, recording every run and every stage
//! result. Versioned (`planrun.ledger_version`) so a later release can migrate it.
//! Tables are created with the running role's default privileges and no grants.
//! The change capture's tables and triggers, which the ledger's checkpoints rely on,
//! are in `change_capture.rs`.

pub(crate) mod change_capture;
mod checkpoints;
mod status;

pub use checkpoints::{
    advance_checkpoint, checkpoints, finish_checkpoint, start_checkpoint, Checkpoint,
};
pub use status::ResultStatus;

use std::collections::BTreeMap;

use planrun_report::RunSummary;
use postgres::GenericClient;
use serde_json::Value as Json;

use crate::checksum::StageDefinition;
use crate::db::trusted_sql::{check_ledger_owner, own_ledger};
use crate::error::EngineError;

/// The ledger layout this planrun writes.
pub const LEDGER_VERSION: i32 = 8;

const CREATE_V1: &str = "
CREATE SCHEMA IF NOT EXISTS planrun;
CREATE TABLE IF NOT EXISTS planrun.ledger_version (
    version    int NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS planrun.runs (
    id              bigserial PRIMARY KEY,
    plan_name       text NOT NULL,
    plan_checksum   text NOT NULL,
    planrun_version text NOT NULL,
    db_user         text NOT NULL DEFAULT current_user,
    client_host     text NOT NULL,
    command         text NOT NULL,
    target          text NOT NULL,
    backup_file     text,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    outcome         text NOT NULL DEFAULT 'running'
);
CREATE TABLE IF NOT EXISTS planrun.stage_results (
    id               bigserial PRIMARY KEY,
    run_id           bigint NOT NULL REFERENCES planrun.runs(id),
    plan_name        text NOT NULL,
    stage_id         text NOT NULL,
    status           text NOT NULL CHECK (status IN ('applied', 'skipped', 'failed')),
    checksum         text NOT NULL,
    definition       jsonb NOT NULL,
    drift_accepted   boolean NOT NULL DEFAULT false,
    skip_reason      text,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    duration_ms      bigint NOT NULL,
    rows_affected    bigint NOT NULL DEFAULT 0,
    rows_quarantined bigint NOT NULL DEFAULT 0,
    captures         jsonb NOT NULL DEFAULT '{}',
    verifications    jsonb NOT NULL DEFAULT '[]',
    error            jsonb
);
CREATE INDEX IF NOT EXISTS stage_results_by_stage ON planrun.stage_results (plan_name, stage_id, id);
";

/// Version 2: checkpoints of batched stages, committed with each batch.
const MIGRATE_TO_V2: &str = "
CREATE TABLE IF NOT EXISTS planrun.checkpoints (
    plan_name        text NOT NULL,
    stage_id         text NOT NULL,
    run_id           bigint NOT NULL REFERENCES planrun.runs(id),
    checksum         text NOT NULL,
    last_key         bigint,
    batches          bigint NOT NULL DEFAULT 0,
    rows_read        bigint NOT NULL DEFAULT 0,
    rows_written     bigint NOT NULL DEFAULT 0,
    rows_quarantined bigint NOT NULL DEFAULT 0,
    total_rows       bigint,
    captures         jsonb NOT NULL DEFAULT '{}',
    started_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (plan_name, stage_id)
);
";

/// Version 3: a stage the plan no longer holds can be `retired` (`--accept-missing`),
/// and one whose id changed `renamed` (`--rename OLD=NEW`); neither counts as done.
const MIGRATE_TO_V3: &str = "
ALTER TABLE planrun.stage_results DROP CONSTRAINT IF EXISTS stage_results_status_check;
ALTER TABLE planrun.stage_results ADD CONSTRAINT stage_results_status_check
    CHECK (status IN ('applied', 'skipped', 'failed', 'retired', 'renamed'));
";

/// Version 4: the session a run was started from, so that `status` tells a run whose
/// planrun was killed (its session gone) from a live one.
const MIGRATE_TO_V4: &str = "
ALTER TABLE planrun.runs ADD COLUMN IF NOT EXISTS backend_pid integer;
ALTER TABLE planrun.runs ADD COLUMN IF NOT EXISTS backend_start timestamptz;
";

/// Version 5: a half-done batched stage abandoned with `planrun reset` is recorded
/// `reset` (not done).
const MIGRATE_TO_V5: &str = "
ALTER TABLE planrun.stage_results DROP CONSTRAINT IF EXISTS stage_results_status_check;
ALTER TABLE planrun.stage_results ADD CONSTRAINT stage_results_status_check
    CHECK (status IN ('applied', 'skipped', 'failed', 'retired', 'renamed', 'reset'));
";

/// Version 6: the lock-analysis findings a stage's `allow` accepted, with their
/// reasons, kept with each result.
const MIGRATE_TO_V6: &str = "
ALTER TABLE planrun.stage_results ADD COLUMN IF NOT EXISTS accepted_findings jsonb NOT NULL DEFAULT '[]';
";

/// Version 7: an applied stage undone with `planrun revert` is recorded `reverted`
/// (not done: a later apply runs it again).
const MIGRATE_TO_V7: &str = "
ALTER TABLE planrun.stage_results DROP CONSTRAINT IF EXISTS stage_results_status_check;
ALTER TABLE planrun.stage_results ADD CONSTRAINT stage_results_status_check
    CHECK (status IN ('applied', 'skipped', 'failed', 'retired', 'renamed', 'reset', 'reverted'));
";

/// Version 8: a stage committed with a key `NOT VALID` whose validation after the
/// commit (`after_commit` steps) has not passed yet is recorded `validation_pending`
/// (done for its dependents; `apply` retries only the validation, then records it
/// `applied`).
const MIGRATE_TO_V8: &str = "
ALTER TABLE planrun.stage_results DROP CONSTRAINT IF EXISTS stage_results_status_check;
ALTER TABLE planrun.stage_results ADD CONSTRAINT stage_results_status_check
    CHECK (status IN ('applied', 'skipped', 'failed', 'retired', 'renamed', 'reset', 'reverted',
                      'validation_pending'));
";

/// True for a `runs` row (alias `r`) whose session still exists. A session another
/// role owns shows no `backend_start` without `pg_read_all_stats`; it counts as live.
const SESSION_ALIVE: &str = "EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a \
     WHERE a.pid = r.backend_pid AND (a.backend_start = r.backend_start OR a.backend_start IS NULL))";

/// Creates or checks the ledger. Call with the plan lock held, so that two first
/// runs do not race to create it.
pub fn ensure(client: &mut impl GenericClient) -> Result<(), EngineError> {
    let mut client = own_ledger(client)?;
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('planrun.ledger_version') IS NOT NULL",
            &[],
        )
        .map_err(EngineError::database("cannot inspect the ledger"))?
        .get(0);
    if !exists {
        client
            .batch_execute(CREATE_V1)
            .map_err(EngineError::database(
                "cannot create the ledger schema `planrun`",
            ))?;
        check_ledger_owner(&mut *client)?;
    }
    let version: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM planrun.ledger_version",
            &[],
        )
        .map_err(EngineError::database("cannot read the ledger version"))?
        .get(0);
    if version > LEDGER_VERSION {
        return Err(EngineError::LedgerTooNew {
            found: version,
            known: LEDGER_VERSION,
        });
    }
    let migrations: [(i32, &str); 8] = [
        (1, ""),
        (2, MIGRATE_TO_V2),
        (3, MIGRATE_TO_V3),
        (4, MIGRATE_TO_V4),
        (5, MIGRATE_TO_V5),
        (6, MIGRATE_TO_V6),
        (7, MIGRATE_TO_V7),
        (8, MIGRATE_TO_V8),
    ];
    for (target, sql) in migrations {
        if version >= target {
            continue;
        }
        client
            .batch_execute(sql)
            .map_err(EngineError::database(format!(
                "cannot migrate the ledger to version {target}"
            )))?;
        client
            .execute(
                "INSERT INTO planrun.ledger_version (version) VALUES ($1)",
                &[&target],
            )
            .map_err(EngineError::database("cannot write the ledger version"))?;
    }
    Ok(())
}

/// Whether the ledger exists (read-only commands do not create it). A ledger a newer
/// planrun wrote is refused here too, not only by `ensure`: its states (a stage
/// reverted, a validation pending) may mean what this planrun cannot read, so `status`,
/// `plan` and `verify` say so instead of reporting what they cannot know.
pub fn exists(client: &mut impl GenericClient) -> Result<bool, EngineError> {
    let mut client = own_ledger(client)?;
    let row = client
        .query_one(
            "SELECT to_regclass('planrun.stage_results') IS NOT NULL, \
                    to_regclass('planrun.ledger_version') IS NOT NULL",
            &[],
        )
        .map_err(EngineError::database("cannot inspect the ledger"))?;
    let (results, versioned): (bool, bool) = (row.get(0), row.get(1));
    if results && versioned {
        let found: i32 = client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM planrun.ledger_version",
                &[],
            )
            .map_err(EngineError::database("cannot read the ledger version"))?
            .get(0);
        if found > LEDGER_VERSION {
            return Err(EngineError::LedgerTooNew {
                found,
                known: LEDGER_VERSION,
            });
        }
    }
    Ok(results)
}

/// The latest committed result of one stage.
#[derive(Debug, Clone)]
pub struct RecordedStage {
    /// The `stage_results` row: later rows were recorded later.
    pub result_id: i64,
    pub run_id: i64,
    pub status: ResultStatus,
    pub checksum: String,
    pub definition: StageDefinition,
    pub finished_at: String,
    pub captures: BTreeMap<String, Option<String>>,
    pub rows_affected: i64,
    pub rows_quarantined: i64,
    pub skip_reason: Option<String>,
}

/// The values the stages in `done` captured when they ran, by name: what the checks
/// of later stages (and `verify`, and `plan`) compare with.
pub(crate) fn recorded_captures(
    done: &BTreeMap<String, RecordedStage>,
) -> BTreeMap<String, Option<String>> {
    done.values()
        .flat_map(|recorded| recorded.captures.clone())
        .collect()
}

/// Latest result per stage of `plan`, failed ones included (status shows them).
pub fn latest_results(
    client: &mut impl GenericClient,
    plan: &str,
) -> Result<BTreeMap<String, RecordedStage>, EngineError> {
    results(client, plan, true)
}

/// Latest applied-or-skipped result per stage: what counts as done. A stage whose
/// latest result is `retired` or `renamed` is history, not done.
pub fn done_results(
    client: &mut impl GenericClient,
    plan: &str,
) -> Result<BTreeMap<String, RecordedStage>, EngineError> {
    let mut done = results(client, plan, false)?;
    done.retain(|_, recorded| recorded.status.is_done());
    Ok(done)
}

fn results(
    client: &mut impl GenericClient,
    plan: &str,
    include_failed: bool,
) -> Result<BTreeMap<String, RecordedStage>, EngineError> {
    if !exists(client)? {
        return Ok(BTreeMap::new());
    }
    let mut client = own_ledger(client)?;
    let rows = client
        .query(
            "SELECT DISTINCT ON (stage_id) stage_id, run_id, status, checksum, definition, \
                    to_char(finished_at, 'YYYY-MM-DD\"T\"HH24:MI:SSTZH:TZM'), captures, rows_affected, \
                    rows_quarantined, skip_reason, id \
             FROM planrun.stage_results WHERE plan_name = $1 AND ($2 OR status <> 'failed') \
             ORDER BY stage_id, id DESC",
            &[&plan, &include_failed],
        )
        .map_err(EngineError::database("cannot read the ledger"))?;
    let mut results = BTreeMap::new();
    for row in rows {
        let status: String = row.get(2);
        let Some(status) = ResultStatus::from_ledger(&status) else {
            return Err(EngineError::Selection(format!(
                "the ledger records a stage result `{status}`, which this planrun does not know: run a newer planrun"
            )));
        };
        let definition: Json = row.get(4);
        let captures: Json = row.get(6);
        results.insert(
            row.get::<_, String>(0),
            RecordedStage {
                result_id: row.get(10),
                run_id: row.get(1),
                status,
                checksum: row.get(3),
                definition: serde_json::from_value(definition).unwrap_or_default(),
                finished_at: row.get(5),
                captures: serde_json::from_value(captures).unwrap_or_default(),
                rows_affected: row.get(7),
                rows_quarantined: row.get(8),
                skip_reason: row.get(9),
            },
        );
    }
    Ok(results)
}

/// What a run row records at its start.
pub struct NewRun<'a> {
    pub plan_name: &'a str,
    pub plan_checksum: &'a str,
    pub command: &'a str,
    pub target: &'a str,
}

pub fn start_run(client: &mut impl GenericClient, run: &NewRun<'_>) -> Result<i64, EngineError> {
    let mut client = own_ledger(client)?;
    let host = hostname();
    // Called with the plan lock held: a 'running' row of this plan whose session is
    // gone is a planrun that was killed; say so before starting another.
    client
        .execute(
            &format!(
                "UPDATE planrun.runs r SET outcome = 'abandoned', finished_at = clock_timestamp() \
                 WHERE plan_name = $1 AND outcome = 'running' AND NOT {SESSION_ALIVE}"
            ),
            &[&run.plan_name],
        )
        .map_err(EngineError::database(
            "cannot mark abandoned runs in the ledger",
        ))?;
    client
        .query_one(
            "INSERT INTO planrun.runs (plan_name, plan_checksum, planrun_version, client_host, command, target, \
                 backend_pid, backend_start) \
             VALUES ($1, $2, $3, $4, $5, $6, pg_catalog.pg_backend_pid(), \
                 (SELECT backend_start FROM pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid())) \
             RETURNING id",
            &[
                &run.plan_name,
                &run.plan_checksum,
                &env!("CARGO_PKG_VERSION"),
                &host,
                &run.command,
                &run.target,
            ],
        )
        .map(|row| row.get(0))
        .map_err(EngineError::database("cannot record the run in the ledger"))
}

/// Records how the run ended and the backup it took, outside any stage transaction,
/// so a stage that rolls back does not take the backup's record with it.
pub fn finish_run(
    client: &mut impl GenericClient,
    run_id: i64,
    outcome: &str,
    backup_file: Option<&str>,
) -> Result<(), EngineError> {
    let mut client = own_ledger(client)?;
    client
        .execute(
            "UPDATE planrun.runs SET finished_at = clock_timestamp(), outcome = $2, \
             backup_file = $3 WHERE id = $1",
            &[&run_id, &outcome, &backup_file],
        )
        .map(drop)
        .map_err(EngineError::database(
            "cannot record the run's outcome in the ledger",
        ))
}

/// [`finish_run`] with `report`'s outcome and backup; a failure to record them is said
/// in the report's summary rather than replacing what the run did.
pub(crate) fn finish_run_reported(
    client: &mut impl GenericClient,
    run_id: i64,
    report: &mut planrun_report::RunReport,
) {
    let outcome = report.outcome.ledger_label();
    if let Err(error) = finish_run(client, run_id, outcome, report.backup_file.as_deref()) {
        report.summary.push(format!(
            "the run's outcome could not be recorded in the ledger: {error}"
        ));
    }
}

/// Records the backup of a run as soon as it is complete, on `client`, a connection
/// of its own: the stage it was taken for may still roll back, and planrun may be
/// killed before the run ends.
pub fn record_backup(
    client: &mut impl GenericClient,
    run_id: i64,
    backup_file: &str,
) -> Result<(), EngineError> {
    let mut client = own_ledger(client)?;
    client
        .execute(
            "UPDATE planrun.runs SET backup_file = $2 WHERE id = $1",
            &[&run_id, &backup_file],
        )
        .map(drop)
        .map_err(EngineError::database(
            "cannot record the backup in the ledger",
        ))
}

/// One stage result row.
pub struct StageRecord<'a> {
    pub run_id: i64,
    pub plan_name: &'a str,
    pub stage_id: &'a str,
    pub status: ResultStatus,
    pub checksum: &'a str,
    /// Stored in `stage_results.definition` (jsonb): the checksummed entries, and the
    /// SQL they hash under `sql_text`.
    pub definition: &'a StageDefinition,
    pub drift_accepted: bool,
    pub skip_reason: Option<&'a str>,
    pub started_at: std::time::SystemTime,
    pub duration_ms: i64,
    pub rows_affected: i64,
    pub rows_quarantined: i64,
    pub captures: Json,
    pub verifications: Json,
    pub error: Option<Json>,
    /// `[{rule, reason, relation, place}]`: the findings the stage's `allow` accepted.
    pub accepted_findings: Json,
}

pub fn record_stage(
    client: &mut impl GenericClient,
    record: &StageRecord<'_>,
) -> Result<(), EngineError> {
    let mut client = own_ledger(client)?;
    let definition =
        serde_json::to_value(record.definition).expect("a definition always serialises");
    client
        .execute(
            "INSERT INTO planrun.stage_results (run_id, plan_name, stage_id, status, checksum, definition, \
                 drift_accepted, skip_reason, started_at, duration_ms, rows_affected, rows_quarantined, \
                 captures, verifications, error, accepted_findings) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            &[
                &record.run_id,
                &record.plan_name,
                &record.stage_id,
                &record.status.as_str(),
                &record.checksum,
                &definition,
                &record.drift_accepted,
                &record.skip_reason,
                &record.started_at,
                &record.duration_ms,
                &record.rows_affected,
                &record.rows_quarantined,
                &record.captures,
                &record.verifications,
                &record.error,
                &record.accepted_findings,
            ],
        )
        .map(drop)
        .map_err(EngineError::database("cannot record the stage result in the ledger"))
}

/// Recent runs of `plan`, newest first.
pub fn recent_runs(
    client: &mut impl GenericClient,
    plan: &str,
    limit: i64,
) -> Result<Vec<RunSummary>, EngineError> {
    if !exists(client)? {
        return Ok(Vec::new());
    }
    let mut client = own_ledger(client)?;
    let rows = client
        .query(
            &format!(
                "SELECT id, command, \
                        CASE WHEN outcome = 'running' AND NOT {SESSION_ALIVE} THEN 'abandoned' ELSE outcome END, \
                        to_char(started_at, 'YYYY-MM-DD\"T\"HH24:MI:SSTZH:TZM'), \
                        coalesce(backup_file, ''), db_user, client_host \
                 FROM planrun.runs r WHERE plan_name = $1 ORDER BY id DESC LIMIT $2"
            ),
            &[&plan, &limit],
        )
        .map_err(EngineError::database("cannot read the ledger"))?;
    Ok(rows
        .iter()
        .map(|row| RunSummary {
            id: row.get(0),
            command: row.get(1),
            outcome: row.get(2),
            started_at: row.get(3),
            backup_file: Some(row.get::<_, String>(4)).filter(|file| !file.is_empty()),
            user: row.get(5),
            host: row.get(6),
        })
        .collect())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}
