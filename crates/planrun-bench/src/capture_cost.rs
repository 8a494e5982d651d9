//! `--capture-cost`: what the change capture of a batched stage adds to each of the
//! application's writes. The application's write is an `UPDATE` of one chapter by
//! its key, in its own transaction, timed at the client, for a chapter of the
//! generated data and for one holding a 5 MB `content` (TOASTed and left unchanged
//! by the update, as an application touching a row's other columns would).
//!
//! Three copies of the same database are measured in turn, a round of each at a
//! time so that the shared machine's noise falls on all three alike:
//!
//! - `none`: no capture, the baseline the ratios are against;
//! - `capture`: the capture as `planrun apply` installs it, the batched split held
//!   by `pause_while` right after its first transaction, so no batch competes;
//! - `former`: the trigger planrun used before issue 20, which converted the whole
//!   row with `to_jsonb` (its SQL is kept here, on a throwaway copy, only to
//!   compare).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use planrun_tempdb::TempCluster;
use postgres::Client;

use crate::data::{self, connect, db_error};

/// Rounds, and writes per round of each variant and row; 1,000 writes per figure.
const ROUNDS: usize = 20;
const WRITES_PER_ROUND: usize = 50;

/// The length of the large row's `content`: 5 MB of hex digits, which pglz cannot
/// shrink much.
const LARGE_CONTENT: &str = "SELECT string_agg(md5(g::text), '') FROM generate_series(1, 156250) g";

/// The former capture (before issue 20), for comparison only.
const FORMER_CAPTURE: &str = "
CREATE SCHEMA planrun;
CREATE TABLE planrun.changed_keys (
    id bigserial PRIMARY KEY, plan_name text NOT NULL, stage_id text NOT NULL,
    source text NOT NULL, key bigint,
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE INDEX ON planrun.changed_keys (plan_name, stage_id, id);
CREATE FUNCTION planrun.record_changed_key() RETURNS trigger
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
CREATE TRIGGER planrun_capture_former AFTER INSERT OR UPDATE OR DELETE ON public.chapters
    FOR EACH ROW EXECUTE FUNCTION planrun.record_changed_key('memoir', 'split_chapters', 'id');";

/// The application's write.
const WRITE: &str = "UPDATE public.chapters SET updated_at = clock_timestamp() WHERE id = $1";

/// The latencies of one variant's writes to one row.
pub(crate) struct Measured {
    pub variant: &'static str,
    pub row: &'static str,
    pub latencies: Vec<Duration>,
}

impl Measured {
    fn percentile(&self, percent: usize) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        sorted[(sorted.len() * percent / 100).min(sorted.len() - 1)]
    }
}

/// Adds the large chapter and the `hold` flag to the template, so every copy has them;
/// returns the two chapters written: `(typical, large)`.
fn prepare_template(cluster: &TempCluster) -> Result<(i64, i64), String> {
    let mut client = connect(&cluster.url("legacy"))?;
    let large: i64 = client
        .query_one(
            &format!(
                "INSERT INTO chapters (memoir_id, position, title, content, images)
                 SELECT memoir_id, 1000, 'five megabytes', ({LARGE_CONTENT}), '[]'
                 FROM chapters ORDER BY id LIMIT 1
                 RETURNING id"
            ),
            &[],
        )
        .map_err(db_error("add the large chapter"))?
        .get(0);
    // VACUUM alone: it cannot run in the implicit transaction of several statements.
    for statement in [
        "CREATE TABLE hold (flag boolean); INSERT INTO hold VALUES (true)",
        "VACUUM (FREEZE, ANALYZE) chapters",
    ] {
        client
            .batch_execute(statement)
            .map_err(db_error("prepare the template"))?;
    }
    let typical: i64 = client
        .query_one("SELECT min(id) FROM chapters", &[])
        .map_err(db_error("pick a chapter"))?
        .get(0);
    Ok((typical, large))
}

/// `planrun apply --until split_chapters` with the split batched and held, and the
/// plan's directory it runs from; returns once the capture is installed (the stage's
/// first transaction committed).
fn start_held_capture(
    planrun: &Path,
    plan: &Path,
    url: &str,
) -> Result<(Child, tempfile::TempDir), String> {
    let dir = crate::online::plan_with(
        plan,
        r#"on_invalid = "fail", mode = "batched", pause_while = "SELECT flag FROM public.hold""#,
    )?;
    let plan_file = dir
        .path()
        .join(plan.file_name().ok_or("no plan file name")?);
    let child = Command::new(planrun)
        .arg("apply")
        .arg(&plan_file)
        .args([
            "--database-url",
            url,
            "--no-backup",
            "--until",
            "split_chapters",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", planrun.display()))?;
    let mut client = connect(url)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let installed: bool = client
            .query_one(
                "SELECT to_regclass('planrun.checkpoints') IS NOT NULL
                    AND EXISTS (SELECT 1 FROM pg_trigger WHERE tgname LIKE 'planrun\\_capture\\_%')",
                &[],
            )
            .map_err(db_error("look for the capture"))?
            .get(0);
        if installed {
            return Ok((child, dir));
        }
        if Instant::now() > deadline {
            return Err("planrun did not install the capture within 5 minutes".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `WRITES_PER_ROUND` timed writes of chapter `key`.
fn write_round(client: &mut Client, key: i64, into: &mut Vec<Duration>) -> Result<(), String> {
    let statement = client
        .prepare(WRITE)
        .map_err(db_error("prepare the write"))?;
    for _ in 0..WRITES_PER_ROUND {
        let started = Instant::now();
        let written = client
            .execute(&statement, &[&key])
            .map_err(db_error("the application's write"))?;
        into.push(started.elapsed());
        if written != 1 {
            return Err(format!("the write of chapter {key} changed {written} rows"));
        }
    }
    Ok(())
}

/// Measures the three variants on copies of the template.
pub(crate) fn run(
    cluster: &TempCluster,
    planrun: &Path,
    plan: &Path,
) -> Result<Vec<Measured>, String> {
    let (typical, large) = prepare_template(cluster)?;
    let none = connect(&data::clone_database(cluster, "capture_none")?)?;
    let url = data::clone_database(cluster, "capture_installed")?;
    eprintln!("  installing the capture with planrun apply (batched split, held) ...");
    let (mut held, _plan_dir) = start_held_capture(planrun, plan, &url)?;
    let installed = connect(&url)?;
    let mut former = connect(&data::clone_database(cluster, "capture_former")?)?;
    former
        .batch_execute(FORMER_CAPTURE)
        .map_err(db_error("install the former capture"))?;
    data::checkpoint(cluster)?;

    let mut clients = [("none", none), ("capture", installed), ("former", former)];
    let mut measured = Vec::new();
    for (variant, _) in &clients {
        for row in ["typical", "5 MB"] {
            measured.push(Measured {
                variant,
                row,
                latencies: Vec::with_capacity(ROUNDS * WRITES_PER_ROUND),
            });
        }
    }
    eprintln!("  {ROUNDS} rounds of {WRITES_PER_ROUND} writes per variant and row ...");
    for _ in 0..ROUNDS {
        for (index, (_, client)) in clients.iter_mut().enumerate() {
            for (offset, key) in [typical, large].into_iter().enumerate() {
                write_round(client, key, &mut measured[index * 2 + offset].latencies)?;
            }
        }
    }
    let _ = held.kill();
    let _ = held.wait();
    Ok(measured)
}

pub(crate) fn print(measured: &[Measured]) {
    println!(
        "\nthe application's write (UPDATE of one chapter by key, autocommit), {} per figure",
        ROUNDS * WRITES_PER_ROUND
    );
    println!(
        "  {:<8} {:<8} {:>9} {:>9} {:>9} {:>9}",
        "row", "capture", "p50 ms", "p99 ms", "p50 x", "p99 x"
    );
    for row in ["typical", "5 MB"] {
        let Some(baseline) = measured
            .iter()
            .find(|m| m.row == row && m.variant == "none")
        else {
            continue;
        };
        let (base50, base99) = (baseline.percentile(50), baseline.percentile(99));
        for m in measured.iter().filter(|m| m.row == row) {
            let (p50, p99) = (m.percentile(50), m.percentile(99));
            println!(
                "  {:<8} {:<8} {:>9.3} {:>9.3} {:>9.2} {:>9.2}",
                row,
                m.variant,
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3,
                p50.as_secs_f64() / base50.as_secs_f64(),
                p99.as_secs_f64() / base99.as_secs_f64()
            );
        }
    }
}
