//! Change capture for batched stages: while a batched stage is under way, a trigger
//! on each source table its transform declares records the key of every row the
//! application inserts, updates or deletes in `planrun.changed_keys`. The engine
//! hands those keys back to the transform (`Transform::redo_keys`) in catch-up
//! passes and at the cutover, so that a row changed behind the checkpoint is
//! transformed again instead of being lost.
//!
//! The trigger runs inside the application's writes, with planrun's privileges, so
//! it reads the key and nothing else (issue 20):
//!
//! - Its function is generated per source at install time and reads the key column
//!   by name, `OLD."id"`, a field of the row as stored: nothing converts the row.
//!   (The former shared function read the key through `to_jsonb(OLD)`, which calls a
//!   cast to json defined by whoever owns a column's type, with planrun's privileges:
//!   an `UPDATE` made the application's role superuser. It also failed the
//!   application's write for any `json` value `jsonb` cannot hold, and cost a
//!   conversion of the whole row, 21 ms for a 5 MB one.)
//! - On a plain table the capture records per statement, not per row: three
//!   statement-level triggers (PostgreSQL allows transition tables one event per
//!   trigger) read the keys from the statement's transition tables, one `INSERT ...
//!   SELECT DISTINCT` a statement, and skip planrun's own statements with one lookup
//!   each. A row trigger cost planrun's batches a call and a lookup for each of the
//!   ~550k sections they insert at 100k chapters (issue 23: a 500k-row insert took
//!   2.8x as long with it, 1.03x with the statement triggers). A logical-replication
//!   apply worker fires row triggers only, so the row trigger stays, `ENABLE
//!   REPLICA`: it fires only in sessions with `session_replication_role = replica`
//!   (a superuser's setting), the statement triggers (enabled as by default) in all
//!   others, so every session has exactly one kind, and a session not in replica
//!   mode pays nothing per row (a `WHEN` testing the setting cost 15%). A partitioned table, a
//!   partition or a table with inheritance children keeps the row trigger for every
//!   write: PostgreSQL clones row triggers to partitions, not statement triggers.
//! - The key column must be `int2`, `int4` or `int8` of `pg_catalog`, checked in the
//!   catalog before anything is installed: storing it in the `bigint` column is then
//!   a built-in assignment cast, and a domain (whose checks are code) or a type
//!   another role owns is refused.
//! - The function is `SECURITY DEFINER`, owned by planrun's role, with
//!   `search_path = pg_catalog, pg_temp`, so each operator it uses (`=` on text, `IS
//!   DISTINCT FROM` on the key) is pg_catalog's; `EXECUTE` is revoked from `PUBLIC`.
//!   What it writes, `planrun.changed_keys` with its sequence default and
//!   `clock_timestamp()`, belongs to planrun's role, which the ledger checks
//!   (`trusted_sql::own_ledger`), so no trigger, rule or policy of another role
//!   runs there.
//! - The plan, stage and source names are the trigger's literal arguments, not
//!   computed from the row or the session.
//! - planrun's own writes to a source (a transform setting a column of the table it
//!   reads) are not the application's: their transaction's id is in
//!   `planrun.own_transactions` ([`own_writes`]), which the trigger skips. A setting
//!   would not do: any session may set one and hide its writes from the capture.
//! - A session with `session_replication_role = replica` (a logical-replication
//!   subscription applying the publisher's changes, or a bulk tool that sets it to
//!   skip triggers) writes the source too, and an ordinary trigger would not fire
//!   for it (issue 21): the split would keep the row's old image. The row trigger is
//!   `ENABLE ALWAYS` where it records every write and `ENABLE REPLICA` beside the
//!   statement triggers; the `TRUNCATE` trigger is `ENABLE ALWAYS`.
//! - `TRUNCATE` of a source is refused while the stage is under way: it fires no row
//!   trigger and would vanish from the capture.
//! - Rows are taken by id and deleted by exactly those ids once their keys are redone
//!   in the same transaction, so a change committed meanwhile (whatever its id) stays
//!   for the next pass.
//! - [`remove`] drops the stage's triggers and functions wherever the catalog has
//!   them, so a source the plan no longer names keeps nothing either.

use planrun_transform::SourceTable;
use postgres::GenericClient;
use sha2::{Digest, Sha256};

use crate::db::trusted_sql::TrustedSearchPath;
use crate::error::EngineError;

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
CREATE TABLE IF NOT EXISTS planrun.own_transactions (xid xid8 PRIMARY KEY);
CREATE OR REPLACE FUNCTION planrun.refuse_truncate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
    BEGIN
        IF EXISTS (SELECT FROM planrun.own_transactions WHERE xid = pg_current_xact_id()) THEN
            RETURN NULL;
        END IF;
    EXCEPTION WHEN insufficient_privilege THEN
        NULL; -- a role that may not read planrun's tables: not planrun's TRUNCATE
    END;
    RAISE EXCEPTION 'planrun is migrating %.% in batches (plan %, stage %): TRUNCATE would bypass its change capture',
        TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0], TG_ARGV[1]
        USING HINT = 'wait for the stage to finish, or run `planrun reset` first';
END
$f$;
REVOKE ALL ON FUNCTION planrun.refuse_truncate() FROM PUBLIC;
";

/// The body of a source's trigger function; `@KEY@` becomes the quoted key column.
/// `TG_ARGV` holds the plan, the stage and the source, as literals.
const RECORD_KEY: &str = "
BEGIN
    IF EXISTS (SELECT FROM planrun.own_transactions WHERE xid = pg_current_xact_id()) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO planrun.changed_keys (plan_name, stage_id, source, key)
        VALUES (TG_ARGV[0], TG_ARGV[1], TG_ARGV[2], NEW.@KEY@);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO planrun.changed_keys (plan_name, stage_id, source, key)
        VALUES (TG_ARGV[0], TG_ARGV[1], TG_ARGV[2], OLD.@KEY@);
    ELSE
        INSERT INTO planrun.changed_keys (plan_name, stage_id, source, key)
        VALUES (TG_ARGV[0], TG_ARGV[1], TG_ARGV[2], OLD.@KEY@);
        IF NEW.@KEY@ IS DISTINCT FROM OLD.@KEY@ THEN
            INSERT INTO planrun.changed_keys (plan_name, stage_id, source, key)
            VALUES (TG_ARGV[0], TG_ARGV[1], TG_ARGV[2], NEW.@KEY@);
        END IF;
    END IF;
    RETURN NULL;
END
";

/// The body of a source's statement-level trigger function (on a plain table);
/// `planrun_old` and `planrun_new` are the statement's transition tables.
const RECORD_KEYS: &str = "
BEGIN
    IF EXISTS (SELECT FROM planrun.own_transactions WHERE xid = pg_current_xact_id()) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO planrun.changed_keys (plan_name, stage_id, source, key)
        SELECT DISTINCT TG_ARGV[0], TG_ARGV[1], TG_ARGV[2], n.@KEY@ FROM planrun_new n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO planrun.changed_keys (plan_name, stage_id, source, key)
        SELECT DISTINCT TG_ARGV[0], TG_ARGV[1], TG_ARGV[2], o.@KEY@ FROM planrun_old o;
    ELSE
        INSERT INTO planrun.changed_keys (plan_name, stage_id, source, key)
        SELECT TG_ARGV[0], TG_ARGV[1], TG_ARGV[2], changed.key
        FROM (SELECT o.@KEY@ AS key FROM planrun_old o
              UNION SELECT n.@KEY@ FROM planrun_new n) changed;
    END IF;
    RETURN NULL;
END
";

/// Whether the capture may record per statement on `$1`: a plain table that is no
/// partition and has no inheritance children.
const PER_STATEMENT: &str = "
SELECT c.relkind = 'r' AND NOT c.relispartition
       AND NOT EXISTS (SELECT FROM pg_inherits i WHERE i.inhparent = c.oid)
FROM pg_class c WHERE c.oid = $1::text::regclass";

/// The statements that create a source's trigger function, quoted by the server:
/// `$1` the function's name, `$2` the body, `$3` the key column.
const CREATE_RECORD_KEY: &str = "
SELECT format('CREATE OR REPLACE FUNCTION planrun.%I() RETURNS trigger
               LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS %L;
               REVOKE ALL ON FUNCTION planrun.%I() FROM PUBLIC;',
              $1::text, replace($2::text, '@KEY@', quote_ident($3::text)), $1::text)";

/// The key column's type, and whether it is one of pg_catalog's integers.
const KEY_TYPE: &str = "
SELECT format_type(a.atttypid, NULL),
       a.atttypid IN ('pg_catalog.int2'::regtype, 'pg_catalog.int4'::regtype,
                      'pg_catalog.int8'::regtype)
FROM pg_attribute a
WHERE a.attrelid = $1::text::regclass AND a.attname = $2::text
  AND a.attnum > 0 AND NOT a.attisdropped";

/// The trigger's name for a stage: short and stable (identifiers stop at 63 bytes).
fn trigger_name(plan: &str, stage: &str) -> String {
    format!(
        "planrun_capture_{}",
        short_digest(&format!("{plan}\0{stage}"))
    )
}

/// The prefix of the stage's trigger functions, one per source.
fn function_prefix(plan: &str, stage: &str) -> String {
    format!("capture_{}_", short_digest(&format!("{plan}\0{stage}")))
}

fn short_digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))[..16].to_owned()
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The source's name as the server resolves and quotes it.
fn resolved<C: GenericClient>(conn: &mut C, table: &str) -> Result<String, postgres::Error> {
    conn.query_one("SELECT $1::text::regclass::text", &[&table])
        .map(|row| row.get(0))
}

/// Refuses a key column that is missing or not one of pg_catalog's integers: storing
/// any other type in `changed_keys.key` could call a conversion another role wrote.
fn check_key_type<C: GenericClient>(
    conn: &mut C,
    table: &str,
    key: &str,
) -> Result<(), EngineError> {
    let found = conn
        .query_opt(KEY_TYPE, &[&table, &key])
        .map_err(EngineError::database("cannot read the source's key column"))?;
    match found {
        Some(row) if row.get::<_, bool>(1) => Ok(()),
        found => Err(EngineError::CaptureKey {
            table: table.to_owned(),
            key: key.to_owned(),
            found: found.map_or("missing".to_owned(), |row| {
                format!("of type {}", row.get::<_, String>(0))
            }),
        }),
    }
}

/// Starts recording the application's changes to `sources` for the stage.
pub(crate) fn install<C: GenericClient>(
    conn: &mut C,
    plan: &str,
    stage: &str,
    sources: &[SourceTable],
) -> Result<(), EngineError> {
    let failed = || EngineError::database("cannot install the change capture");
    let conn = &mut *TrustedSearchPath::enter(conn).map_err(failed())?;
    let mut tables = Vec::with_capacity(sources.len());
    for source in sources {
        let table = resolved(conn, &source.table).map_err(failed())?;
        check_key_type(conn, &table, &source.key)?;
        tables.push(table);
    }
    // The sources first, in the mode the triggers' creation takes anyway: on a resume
    // the application's writes already go through the capture into
    // `planrun.changed_keys`, which SETUP's `CREATE INDEX IF NOT EXISTS` locks. Taken
    // the other way round, a writer holding a source and waiting for changed_keys and
    // this transaction holding changed_keys and waiting for the source wait for
    // each other until lock_timeout, at every attempt.
    for table in &tables {
        conn.batch_execute(&format!("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"))
            .map_err(failed())?;
    }
    conn.batch_execute(SETUP).map_err(failed())?;
    for (source, table) in sources.iter().zip(&tables) {
        create_triggers(conn, plan, stage, source, table).map_err(failed())?;
    }
    drop_former_function(conn).map_err(failed())
}

/// Creates the stage's trigger functions and triggers on one source (`table`, as the
/// server quotes it): per statement on a plain table, per row otherwise.
fn create_triggers<C: GenericClient>(
    conn: &mut C,
    plan: &str,
    stage: &str,
    source: &SourceTable,
    table: &str,
) -> Result<(), postgres::Error> {
    let name = trigger_name(plan, stage);
    let function = format!("{}{}", function_prefix(plan, stage), short_digest(table));
    let arguments = format!("{}, {}, {}", literal(plan), literal(stage), literal(table));
    let per_statement: bool = conn.query_one(PER_STATEMENT, &[&table])?.get(0);
    for (function, body) in [
        (&function, RECORD_KEY),
        (&format!("{function}_s"), RECORD_KEYS),
    ] {
        let create: String = conn
            .query_one(CREATE_RECORD_KEY, &[function, &body, &source.key])?
            .try_get(0)?;
        conn.batch_execute(&create)?;
    }
    // Per statement, the row trigger is for replica sessions only (module docs).
    let row_enabled = if per_statement { "REPLICA" } else { "ALWAYS" };
    conn.batch_execute(&format!(
        "CREATE OR REPLACE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE ON {table}
             FOR EACH ROW EXECUTE FUNCTION planrun.\"{function}\"({arguments});
         CREATE OR REPLACE TRIGGER {name}_truncate BEFORE TRUNCATE ON {table}
             FOR EACH STATEMENT EXECUTE FUNCTION planrun.refuse_truncate({}, {});
         ALTER TABLE {table} ENABLE {row_enabled} TRIGGER {name},
             ENABLE ALWAYS TRIGGER {name}_truncate;",
        literal(plan),
        literal(stage),
    ))?;
    if !per_statement {
        return Ok(());
    }
    for (event, transition) in [
        ("INSERT", "NEW TABLE AS planrun_new"),
        (
            "UPDATE",
            "OLD TABLE AS planrun_old NEW TABLE AS planrun_new",
        ),
        ("DELETE", "OLD TABLE AS planrun_old"),
    ] {
        let trigger = format!("{name}_{}", event.to_lowercase());
        conn.batch_execute(&format!(
            "CREATE OR REPLACE TRIGGER {trigger} AFTER {event} ON {table}
                 REFERENCING {transition}
                 FOR EACH STATEMENT EXECUTE FUNCTION planrun.\"{function}_s\"({arguments});"
        ))?;
    }
    Ok(())
}

/// Drops the shared function of planrun before issue 20, which converted the whole
/// row, once no trigger uses it any more (each stage's install replaces its own).
fn drop_former_function<C: GenericClient>(conn: &mut C) -> Result<(), postgres::Error> {
    let unused: bool = conn
        .query_one(
            "SELECT p.oid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgfoid = p.oid)
             FROM (SELECT to_regprocedure('planrun.record_changed_key()')::oid AS oid) p",
            &[],
        )?
        .get(0);
    if unused {
        conn.batch_execute("DROP FUNCTION planrun.record_changed_key()")?;
    }
    Ok(())
}

/// The stage's triggers, wherever they are (not the copies PostgreSQL keeps on
/// partitions, which go with their parent's), as `DROP TRIGGER` statements.
const STAGE_TRIGGERS: &str = "
SELECT format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::regclass)
FROM pg_trigger t
WHERE t.tgname::text IN ($1::text, $1::text || '_truncate',
          $1::text || '_insert', $1::text || '_update', $1::text || '_delete') AND t.tgparentid = 0";

/// The stage's trigger functions, as `DROP FUNCTION` statements.
const STAGE_FUNCTIONS: &str = "
SELECT format('DROP FUNCTION %s', p.oid::regprocedure)
FROM pg_proc p
WHERE p.pronamespace = to_regnamespace('planrun') AND starts_with(p.proname::text, $1::text)";

/// The name under which a stage's per-key rechecks are recorded (`online/per_key.rs`):
/// keys whose checks must run again at the cutover, from the tables its per-key
/// checks watch and from the keys redone meanwhile. Kept apart from the stage's own
/// changes so that they are checked again, never transformed again: a section
/// corrupted behind the transform's back must fail the check, not be repaired.
pub(crate) fn recheck_id(stage: &str) -> String {
    format!("{stage} (recheck)")
}

/// Stops recording and forgets what was recorded for the stage (its rechecks too):
/// its triggers and functions go wherever the catalog has them, not only on the
/// sources the plan names now.
pub(crate) fn remove<C: GenericClient>(
    conn: &mut C,
    plan: &str,
    stage: &str,
) -> Result<(), postgres::Error> {
    let conn = &mut *TrustedSearchPath::enter(conn)?;
    for stage in [stage.to_owned(), recheck_id(stage)] {
        let name = trigger_name(plan, &stage);
        let prefix = function_prefix(plan, &stage);
        for (query, parameter) in [(STAGE_TRIGGERS, &name), (STAGE_FUNCTIONS, &prefix)] {
            for row in conn.query(query, &[parameter])? {
                conn.batch_execute(row.get(0))?;
            }
        }
        if table_exists(conn)? {
            conn.execute(
                "DELETE FROM planrun.changed_keys WHERE plan_name = $1 AND stage_id = $2",
                &[&plan, &stage],
            )?;
        }
    }
    Ok(())
}

/// What is left of the stage's capture (its rechecks' too): its triggers and trigger
/// functions, and its recorded changes. Both zero once [`remove`] committed.
pub(crate) fn leftovers<C: GenericClient>(
    conn: &mut C,
    plan: &str,
    stage: &str,
) -> Result<(i64, i64), postgres::Error> {
    let conn = &mut *TrustedSearchPath::enter(conn)?;
    let (mut objects, mut changes) = (0, 0);
    for stage in [stage.to_owned(), recheck_id(stage)] {
        for (query, parameter) in [
            (STAGE_TRIGGERS, trigger_name(plan, &stage)),
            (STAGE_FUNCTIONS, function_prefix(plan, &stage)),
        ] {
            objects += conn.query(query, &[&parameter])?.len() as i64;
        }
        changes += pending(conn, plan, &stage)?;
    }
    Ok((objects, changes))
}

/// Records `keys` as to be checked again at the stage's cutover.
pub(crate) fn note_recheck<C: GenericClient>(
    conn: &mut C,
    plan: &str,
    stage: &str,
    keys: &[i64],
) -> Result<(), postgres::Error> {
    let conn = &mut *TrustedSearchPath::enter(conn)?;
    conn.execute(
        "INSERT INTO planrun.changed_keys (plan_name, stage_id, source, key)
         SELECT $1, $2, 'redone', key FROM unnest($3::bigint[]) AS key",
        &[&plan, &recheck_id(stage), &keys],
    )
    .map(drop)
}

/// The tables the stage's capture triggers are on, as `schema.table`.
pub(crate) fn installed_on<C: GenericClient>(
    conn: &mut C,
    plan: &str,
    stage: &str,
) -> Result<Vec<String>, postgres::Error> {
    let conn = &mut *TrustedSearchPath::enter(conn)?;
    let rows = conn.query(
        "SELECT DISTINCT format('%s.%s', n.nspname, c.relname) \
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE t.tgname::text IN ($1::text, $1::text || '_truncate',
          $1::text || '_insert', $1::text || '_update', $1::text || '_delete') AND t.tgparentid = 0 \
         ORDER BY 1",
        &[&trigger_name(plan, stage)],
    )?;
    Ok(rows.into_iter().map(|row| row.get(0)).collect())
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

/// Marks the transaction's writes as planrun's own: the capture skips them. The mark
/// is the transaction's id in `planrun.own_transactions`, which only planrun's role
/// may write, so no other session can pass its writes off as planrun's (a setting
/// such as `planrun.own_write = on`, which any session may set, could). The ids of
/// planrun's finished transactions are cleared on the way (never reused, they would
/// only pile up), skipping those another planrun is clearing at the same moment. An id
/// this cluster has not reached came with a copy of the database from another cluster
/// (a rehearsal's copy, a restored dump): not one of this cluster's transactions, it
/// goes too, without asking its status, which PostgreSQL refuses for such an id.
pub(crate) fn own_writes<C: GenericClient>(conn: &mut C) -> Result<(), postgres::Error> {
    let conn = &mut *TrustedSearchPath::enter(conn)?;
    // The table is created here too for a capture an older planrun installed.
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS planrun.own_transactions (xid xid8 PRIMARY KEY);
         DELETE FROM planrun.own_transactions WHERE xid IN (
             SELECT xid FROM planrun.own_transactions
              WHERE CASE WHEN xid >= pg_snapshot_xmax(pg_current_snapshot()) THEN true
                         ELSE pg_xact_status(xid) IS DISTINCT FROM 'in progress' END
              FOR UPDATE SKIP LOCKED);
         INSERT INTO planrun.own_transactions VALUES (pg_current_xact_id())
          ON CONFLICT DO NOTHING",
    )
}

/// Ends [`own_writes`] for the rest of the transaction, so that the capture of
/// another stage on the same table records what follows.
pub(crate) fn end_own_writes<C: GenericClient>(conn: &mut C) -> Result<(), postgres::Error> {
    let conn = &mut *TrustedSearchPath::enter(conn)?;
    conn.batch_execute("DELETE FROM planrun.own_transactions WHERE xid = pg_current_xact_id()")
}
