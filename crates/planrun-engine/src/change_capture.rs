//! Change capture for batched stages: while a batched stage is under way, a trigger
//! on each source table its transform declares records the key of every row the
//! application inserts, updates or deletes in `planrun.changed_keys`. The engine
//! hands those keys back to the transform (`Transform::redo_keys`) in catch-up
//! passes and at the cutover, so that a row changed behind the checkpoint is
//! transformed again instead of being lost.
//!
//! - The trigger function is `SECURITY DEFINER` (owned by planrun's role, with a fixed
//!   `search_path`), so the application's role needs no grant on the private ledger;
//!   `EXECUTE` is revoked from `PUBLIC`, which only `CREATE TRIGGER` checks.
//! - planrun's own writes to a source (a transform setting a column of the table it
//!   reads) are not the application's: they run with `planrun.own_write = on`, which
//!   the trigger skips.
//! - `TRUNCATE` of a source is refused while the stage is under way: it fires no row
//!   trigger and would vanish from the capture.
//! - Rows are taken by id and deleted by exactly those ids once their keys are redone
//!   in the same transaction, so a change committed meanwhile (whatever its id) stays
//!   for the next pass.

use planrun_transform::SourceTable;
use postgres::GenericClient;
use sha2::{Digest, Sha256};

use crate::trusted_sql::TrustedSearchPath;

const SETUP: &str = "
CREATE TABLE IF NOT EXISTS planrun.changed_keys (
    id         bigserial PRIMARY KEY,
    plan_name  text NOT NULL,
    stage_id   text NOT NULL,
    source     text NOT NULL,
    key        bigint,
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS changed_keys_by_stage ON planrun.changed_keys (plan_name, stage_id, id);
CREATE OR REPLACE FUNCTION planrun.record_changed_key() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
    old_key bigint;
    new_key bigint;
BEGIN
    IF current_setting('planrun.own_write', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        old_key := (to_jsonb(OLD) ->> TG_ARGV[2])::bigint;
        INSERT INTO planrun.changed_keys (plan_name, stage_id, source, key)
        VALUES (TG_ARGV[0], TG_ARGV[1], TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, old_key);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        new_key := (to_jsonb(NEW) ->> TG_ARGV[2])::bigint;
        IF TG_OP = 'INSERT' OR new_key IS DISTINCT FROM old_key THEN
            INSERT INTO planrun.changed_keys (plan_name, stage_id, source, key)
            VALUES (TG_ARGV[0], TG_ARGV[1], TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, new_key);
        END IF;
    END IF;
    RETURN NULL;
END
$f$;
REVOKE ALL ON FUNCTION planrun.record_changed_key() FROM PUBLIC;
CREATE OR REPLACE FUNCTION planrun.refuse_truncate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    IF current_setting('planrun.own_write', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'planrun is migrating %.% in batches (plan %, stage %): TRUNCATE would bypass its change capture',
        TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0], TG_ARGV[1]
        USING HINT = 'wait for the stage to finish, or run `planrun reset` first';
END
$f$;
REVOKE ALL ON FUNCTION planrun.refuse_truncate() FROM PUBLIC;
";

/// The trigger's name for a stage: short and stable (identifiers stop at 63 bytes).
fn trigger_name(plan: &str, stage: &str) -> String {
    let digest = Sha256::digest(format!("{plan}\0{stage}").as_bytes());
    format!("planrun_capture_{}", &hex::encode(digest)[..16])
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The source's name as the server resolves and quotes it.
fn resolved<C: GenericClient>(conn: &mut C, table: &str) -> Result<String, postgres::Error> {
    conn.query_one("SELECT $1::text::regclass::text", &[&table])
        .map(|row| row.get(0))
}

/// Starts recording the application's changes to `sources` for the stage.
pub(crate) fn install<C: GenericClient>(
    conn: &mut C,
    plan: &str,
    stage: &str,
    sources: &[SourceTable],
) -> Result<(), postgres::Error> {
    let conn = &mut *TrustedSearchPath::enter(conn)?;
    conn.batch_execute(SETUP)?;
    let name = trigger_name(plan, stage);
    for source in sources {
        let table = resolved(conn, &source.table)?;
        conn.batch_execute(&format!(
            "CREATE OR REPLACE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE ON {table}
                 FOR EACH ROW EXECUTE FUNCTION planrun.record_changed_key({}, {}, {});
             CREATE OR REPLACE TRIGGER {name}_truncate BEFORE TRUNCATE ON {table}
                 FOR EACH STATEMENT EXECUTE FUNCTION planrun.refuse_truncate({}, {});",
            literal(plan),
            literal(stage),
            literal(&source.key),
            literal(plan),
            literal(stage),
        ))?;
    }
    Ok(())
}

/// Stops recording and forgets what was recorded for the stage.
pub(crate) fn remove<C: GenericClient>(
    conn: &mut C,
    plan: &str,
    stage: &str,
    sources: &[SourceTable],
) -> Result<(), postgres::Error> {
    let conn = &mut *TrustedSearchPath::enter(conn)?;
    let name = trigger_name(plan, stage);
    for source in sources {
        let exists: bool = conn
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&source.table])?
            .get(0);
        if exists {
            let table = resolved(conn, &source.table)?;
            conn.batch_execute(&format!(
                "DROP TRIGGER IF EXISTS {name} ON {table};
                 DROP TRIGGER IF EXISTS {name}_truncate ON {table};"
            ))?;
        }
    }
    if table_exists(conn)? {
        conn.execute(
            "DELETE FROM planrun.changed_keys WHERE plan_name = $1 AND stage_id = $2",
            &[&plan, &stage],
        )?;
    }
    Ok(())
}

/// What is left of the stage's capture: triggers on the sources and recorded changes.
/// Both zero once [`remove`] committed.
pub(crate) fn leftovers<C: GenericClient>(
    conn: &mut C,
    plan: &str,
    stage: &str,
) -> Result<(i64, i64), postgres::Error> {
    let conn = &mut *TrustedSearchPath::enter(conn)?;
    let name = trigger_name(plan, stage);
    let triggers: i64 = conn
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgname::text IN ($1::text, $1::text || '_truncate')",
            &[&name],
        )?
        .get(0);
    Ok((triggers, pending(conn, plan, stage)?))
}

fn table_exists<C: GenericClient>(conn: &mut C) -> Result<bool, postgres::Error> {
    Ok(conn
        .query_one(
            "SELECT to_regclass('planrun.changed_keys') IS NOT NULL",
            &[],
        )?
        .get(0))
}

/// Changes recorded for the stage and not redone yet.
pub(crate) fn pending<C: GenericClient>(
    conn: &mut C,
    plan: &str,
    stage: &str,
) -> Result<i64, postgres::Error> {
    let conn = &mut *TrustedSearchPath::enter(conn)?;
    if !table_exists(conn)? {
        return Ok(0);
    }
    Ok(conn
        .query_one(
            "SELECT count(*) FROM planrun.changed_keys WHERE plan_name = $1 AND stage_id = $2",
            &[&plan, &stage],
        )?
        .get(0))
}

/// Recorded changes taken for one pass: the rows' ids, and their distinct keys.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    pub ids: Vec<i64>,
    pub keys: Vec<i64>,
}

/// The oldest at most `limit` recorded changes of the stage.
pub(crate) fn take<C: GenericClient>(
    conn: &mut C,
    plan: &str,
    stage: &str,
    limit: i64,
) -> Result<Backlog, postgres::Error> {
    let conn = &mut *TrustedSearchPath::enter(conn)?;
    let rows = conn.query(
        "SELECT id, key FROM planrun.changed_keys WHERE plan_name = $1 AND stage_id = $2
         ORDER BY id LIMIT $3",
        &[&plan, &stage, &limit],
    )?;
    let mut backlog = Backlog::default();
    for row in rows {
        backlog.ids.push(row.get(0));
        if let Some(key) = row.get::<_, Option<i64>>(1) {
            backlog.keys.push(key);
        }
    }
    backlog.keys.sort_unstable();
    backlog.keys.dedup();
    Ok(backlog)
}

/// Forgets the changes `ids`, once their keys are redone in the same transaction.
pub(crate) fn forget<C: GenericClient>(conn: &mut C, ids: &[i64]) -> Result<(), postgres::Error> {
    let conn = &mut *TrustedSearchPath::enter(conn)?;
    conn.execute(
        "DELETE FROM planrun.changed_keys WHERE id = ANY($1)",
        &[&ids],
    )
    .map(drop)
}

/// Marks the transaction's writes as planrun's own: the capture skips them.
pub(crate) fn own_writes<C: GenericClient>(conn: &mut C) -> Result<(), postgres::Error> {
    let conn = &mut *TrustedSearchPath::enter(conn)?;
    conn.execute("SELECT set_config('planrun.own_write', 'on', true)", &[])
        .map(drop)
}
