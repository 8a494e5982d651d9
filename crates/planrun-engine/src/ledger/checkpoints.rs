//! The checkpoints of half-done batched stages: where the batches got to, committed
//! with each batch, so that a re-run resumes after the last key.

use std::collections::BTreeMap;

use postgres::GenericClient;
use serde_json::Value as Json;

use crate::db::trusted_sql::own_ledger;
use crate::error::EngineError;

/// The progress of a batched stage, committed with each batch.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Checkpoint {
    pub stage_id: String,
    /// The run that started the stage.
    pub run_id: i64,
    pub checksum: String,
    /// The key of the last source row in the last committed batch.
    pub last_key: Option<i64>,
    pub batches: i64,
    pub rows_read: i64,
    pub rows_written: i64,
    pub rows_quarantined: i64,
    pub total_rows: Option<i64>,
    pub captures: BTreeMap<String, Option<String>>,
    pub updated_at: String,
}

fn has_checkpoints(client: &mut impl GenericClient) -> Result<bool, EngineError> {
    let mut client = own_ledger(client)?;
    Ok(client
        .query_one("SELECT to_regclass('planrun.checkpoints') IS NOT NULL", &[])
        .map_err(EngineError::database("cannot inspect the ledger"))?
        .get(0))
}

/// Checkpoints of the plan's half-done batched stages.
pub fn checkpoints(
    client: &mut impl GenericClient,
    plan: &str,
) -> Result<BTreeMap<String, Checkpoint>, EngineError> {
    if !has_checkpoints(client)? {
        return Ok(BTreeMap::new());
    }
    let mut client = own_ledger(client)?;
    let rows = client
        .query(
            "SELECT stage_id, run_id, checksum, last_key, batches, rows_read, rows_written, \
                    rows_quarantined, total_rows, captures, \
                    to_char(updated_at, 'YYYY-MM-DD\"T\"HH24:MI:SSTZH:TZM') \
             FROM planrun.checkpoints WHERE plan_name = $1",
            &[&plan],
        )
        .map_err(EngineError::database("cannot read the checkpoints"))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let captures: Json = row.get(9);
            let checkpoint = Checkpoint {
                stage_id: row.get(0),
                run_id: row.get(1),
                checksum: row.get(2),
                last_key: row.get(3),
                batches: row.get(4),
                rows_read: row.get(5),
                rows_written: row.get(6),
                rows_quarantined: row.get(7),
                total_rows: row.get(8),
                captures: serde_json::from_value(captures).unwrap_or_default(),
                updated_at: row.get(10),
            };
            (checkpoint.stage_id.clone(), checkpoint)
        })
        .collect())
}

/// Records that a batched stage has started (its captures are kept for a resume).
pub fn start_checkpoint(
    client: &mut impl GenericClient,
    plan: &str,
    checkpoint: &Checkpoint,
) -> Result<(), EngineError> {
    let mut client = own_ledger(client)?;
    let captures = serde_json::to_value(&checkpoint.captures).unwrap_or_default();
    client
        .execute(
            "INSERT INTO planrun.checkpoints (plan_name, stage_id, run_id, checksum, total_rows, captures) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &plan,
                &checkpoint.stage_id,
                &checkpoint.run_id,
                &checkpoint.checksum,
                &checkpoint.total_rows,
                &captures,
            ],
        )
        .map(drop)
        .map_err(EngineError::database("cannot record the checkpoint"))
}

/// Moves a checkpoint past a batch; called in the batch's own transaction.
pub fn advance_checkpoint(
    client: &mut impl GenericClient,
    plan: &str,
    checkpoint: &Checkpoint,
) -> Result<(), EngineError> {
    let mut client = own_ledger(client)?;
    client
        .execute(
            "UPDATE planrun.checkpoints SET last_key = $3, batches = $4, rows_read = $5, \
                 rows_written = $6, rows_quarantined = $7, checksum = $8, \
                 updated_at = clock_timestamp() \
             WHERE plan_name = $1 AND stage_id = $2",
            &[
                &plan,
                &checkpoint.stage_id,
                &checkpoint.last_key,
                &checkpoint.batches,
                &checkpoint.rows_read,
                &checkpoint.rows_written,
                &checkpoint.rows_quarantined,
                &checkpoint.checksum,
            ],
        )
        .map(drop)
        .map_err(EngineError::database("cannot advance the checkpoint"))
}

/// Removes a finished stage's checkpoint, in the transaction that records it applied.
pub fn finish_checkpoint(
    client: &mut impl GenericClient,
    plan: &str,
    stage: &str,
) -> Result<(), EngineError> {
    let mut client = own_ledger(client)?;
    client
        .execute(
            "DELETE FROM planrun.checkpoints WHERE plan_name = $1 AND stage_id = $2",
            &[&plan, &stage],
        )
        .map(drop)
        .map_err(EngineError::database("cannot remove the checkpoint"))
}
