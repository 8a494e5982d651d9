//! SIGINT and SIGTERM (issue 12): the running statement is cancelled and its stage
//! rolled back, pg_dump is stopped, the report says what committed and what did not,
//! and the ledger records the run as `interrupted`. A backup is recorded as soon as
//! it is complete, and `status` tells a run whose session is gone from a live one.
//! An online (batched) stage does not roll back whole: its report says what of it
//! remains and how to resume or abandon it (issue 21, item 11).

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use planrun_engine::exit_codes;
use planrun_tests::app::{AppConfig, AppSimulator};
use planrun_tests::{
    describe, legacy_db, memoir_plan_edited, planrun_command, planrun_on, scenario, spawn_apply,
    stdout, TestDb, CUSTOMERS,
};

/// `planrun_tests::wait_until` with this file's limit.
fn wait_until_for(what: &str, condition: impl FnMut() -> bool) {
    planrun_tests::wait_until(what, Duration::from_secs(30), condition)
}

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

fn signal(child: &Child, signal: i32) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// Waits for `child` to exit, for at most `limit`, and returns its output.
fn finish_within(child: Child, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    (
        output,
        started.elapsed().min(limit + Duration::from_secs(1)),
    )
}

fn apply(dir: &Path, db: &TestDb, extra: &[&str]) -> Child {
    let mut args = vec!["apply", "plan.toml", "--database-url", &db.url];
    args.extend(extra);
    planrun_command(PLANRUN, dir, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn last_run(db: &TestDb) -> (String, Option<String>) {
    let row = db.column(
        "SELECT outcome || '|' || coalesce(backup_file, '') FROM planrun.runs ORDER BY id DESC LIMIT 1",
    );
    let text = row[0].clone().unwrap();
    let (outcome, backup) = text.split_once('|').unwrap();
    (
        outcome.to_owned(),
        Some(backup.to_owned()).filter(|file| !file.is_empty()),
    )
}

fn sessions_running(db: &TestDb, pattern: &str) -> String {
    db.scalar(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '{pattern}' AND state = 'active' \
         AND wait_event = 'PgSleep' AND pid <> pg_backend_pid()"
    ))
}

#[test]
fn sigint_mid_stage_cancels_the_statement_rolls_the_stage_back_and_says_so() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    std::fs::write(
        dir.path().join("02_load.sql"),
        "INSERT INTO orders (customer_id) SELECT id FROM customers;\nSELECT pg_sleep(60);\n",
    )
    .unwrap();
    let child = apply(dir.path(), &db, &["--no-backup"]);
    wait_until_for("load_orders sleeps", || {
        sessions_running(&db, "%pg_sleep(60)%") == "1"
    });
    signal(&child, libc::SIGINT);
    let (output, took) = finish_within(child, Duration::from_secs(10));
    let text = describe(&output);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::INTERRUPTED),
        "{text}"
    );
    assert!(
        took < Duration::from_secs(10),
        "the statement was cancelled, not waited for"
    );
    for expected in [
        "SIGINT: stopping",
        "committed: create_orders",
        "interrupted by SIGINT; rolled back: load_orders; not run: add_total",
        "run `planrun apply plan.toml` again",
    ] {
        assert!(text.contains(expected), "`{expected}` missing:\n{text}");
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM orders"),
        "0",
        "load_orders rolled back"
    );
    assert_eq!(last_run(&db).0, "interrupted");
    assert_eq!(sessions_running(&db, "%pg_sleep(60)%"), "0");

    std::fs::write(
        dir.path().join("02_load.sql"),
        "INSERT INTO orders (customer_id) SELECT id FROM customers;\n",
    )
    .unwrap();
    let rerun = planrun_on(
        PLANRUN,
        dir.path(),
        &db,
        &["apply", "plan.toml", "--no-backup"],
    );
    assert_eq!(rerun.status.code(), Some(0), "{}", describe(&rerun));
    assert_eq!(db.scalar("SELECT count(*) FROM orders"), "25");
}

#[test]
fn sigterm_during_the_backup_stops_pg_dump_and_leaves_no_file() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let plan = std::fs::read_to_string(dir.path().join("plan.toml")).unwrap();
    std::fs::write(
        dir.path().join("plan.toml"),
        plan.replace("lock_timeout = \"2s\"", "lock_timeout = \"60s\""),
    )
    .unwrap();
    // The application holds a lock pg_dump must wait for.
    let mut holder = db.client();
    let mut open = holder.transaction().unwrap();
    open.batch_execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let backups = dir.path().join("backups");
    let child = apply(
        dir.path(),
        &db,
        &["--backup-dir", backups.to_str().unwrap()],
    );
    wait_until_for("pg_dump waits for its lock", || {
        db.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' AND wait_event_type = 'Lock'",
        ) == "1"
    });
    signal(&child, libc::SIGTERM);
    let (output, _) = finish_within(child, Duration::from_secs(10));
    let text = describe(&output);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::INTERRUPTED),
        "{text}"
    );
    assert!(text.contains("SIGTERM during the backup"), "{text}");
    wait_until_for("pg_dump is gone", || {
        db.scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'") == "0"
    });
    open.rollback().unwrap();
    let left: Vec<_> = std::fs::read_dir(&backups)
        .map(|entries| entries.map(|entry| entry.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a partial backup was left: {left:?}");
    assert_eq!(last_run(&db), ("interrupted".to_owned(), None));
    assert_eq!(
        db.scalar("SELECT to_regclass('public.orders') IS NULL"),
        "t",
        "nothing ran"
    );
}

#[test]
fn a_backup_is_recorded_when_taken_and_status_tells_abandoned_runs_from_live_ones() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    std::fs::write(
        dir.path().join("02_load.sql"),
        "INSERT INTO orders (customer_id) SELECT id FROM customers;\nSELECT pg_sleep(60);\n",
    )
    .unwrap();
    let backups = dir.path().join("backups");
    let backup_args = ["--backup-dir", backups.to_str().unwrap()];

    // Killed outright (no chance to clean up) after the backup: the ledger still
    // knows where the backup is, and status calls the run abandoned.
    let mut killed = apply(dir.path(), &db, &backup_args);
    wait_until_for("load_orders sleeps", || {
        sessions_running(&db, "%pg_sleep(60)%") == "1"
    });
    killed.kill().unwrap();
    killed.wait().unwrap();
    wait_until_for("the killed run's session is gone", || {
        sessions_running(&db, "%pg_sleep(60)%") == "0"
    });
    let (outcome, backup) = last_run(&db);
    assert_eq!(
        outcome, "running",
        "nothing could record the end of the run"
    );
    let backup = backup.expect("the backup was recorded as soon as it was complete");
    assert!(Path::new(&backup).is_file(), "{backup}");
    let outcomes = |status: &Output| -> Vec<String> {
        let json: serde_json::Value = serde_json::from_slice(&status.stdout)
            .unwrap_or_else(|_| panic!("{}", describe(status)));
        json["recent_runs"]
            .as_array()
            .expect("recent_runs")
            .iter()
            .map(|run| run["outcome"].as_str().unwrap().to_owned())
            .collect()
    };
    let status_json = || {
        planrun_on(
            PLANRUN,
            dir.path(),
            &db,
            &["status", "plan.toml", "--format", "json"],
        )
    };
    assert_eq!(outcomes(&status_json()), ["abandoned"]);

    // A live run beside it.
    let live = apply(dir.path(), &db, &["--no-backup"]);
    wait_until_for("the live run sleeps", || {
        sessions_running(&db, "%pg_sleep(60)%") == "1"
    });
    let status = status_json();
    signal(&live, libc::SIGINT);
    let (live_output, _) = finish_within(live, Duration::from_secs(10));
    assert_eq!(
        live_output.status.code(),
        Some(exit_codes::INTERRUPTED),
        "{}",
        describe(&live_output)
    );
    assert_eq!(outcomes(&status), ["running", "abandoned"]);
    assert_eq!(last_run(&db).0, "interrupted");
}

/// The memoir plan with the split batched, 100 chapters a batch, held by
/// `pause_while` once three batches have committed and while `public.hold` is true.
/// Each time it holds, it counts on the sequence `public.held` (not rolled back with
/// the health check's transaction), so the test knows a run is waiting.
fn split_held_after_three_batches() -> tempfile::TempDir {
    memoir_plan_edited(|text| {
        text.replace(
            r#"params = { on_invalid = "fail" }"#,
            r#"params = { on_invalid = "fail", mode = "batched", batch_size = 100, pause_while = "SELECT CASE WHEN coalesce((SELECT batches >= 3 FROM planrun.checkpoints LIMIT 1), false) AND (SELECT flag FROM public.hold) THEN nextval('public.held') > 0 ELSE false END" }"#,
        )
    })
}

/// `apply --until split_chapters` of the held split, interrupted by SIGINT once the
/// three batches have committed and the rest is held.
fn interrupt_the_held_split(db: &TestDb, plan: &Path, format: &str) -> Output {
    const HELD: &str = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM held";
    let held_before = db.scalar(HELD);
    let mut child = spawn_apply(
        PLANRUN,
        plan,
        "memoir.toml",
        db,
        &["--until", "split_chapters", "--format", format],
    );
    // The stages before the split run first: longer than this file's usual limit
    // when the machine is busy.
    planrun_tests::wait_until(
        "three batches committed and the rest held",
        Duration::from_secs(180),
        || {
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr);
                let mut out = String::new();
                let _ = std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out);
                panic!("the apply ended ({status}) before it was held:\n{out}\n{stderr}");
            }
            db.scalar(HELD) != held_before
        },
    );
    assert_eq!(db.scalar("SELECT batches FROM planrun.checkpoints"), "3");
    signal(&child, libc::SIGINT);
    let (output, _) = finish_within(child, Duration::from_secs(30));
    assert_eq!(
        output.status.code(),
        Some(exit_codes::INTERRUPTED),
        "{}",
        describe(&output)
    );
    output
}

#[test]
fn sigint_during_online_batches_reports_what_remains_and_the_next_command_and_a_rerun_completes() {
    let db = legacy_db(1500);
    db.execute(
        "CREATE TABLE hold (flag boolean); INSERT INTO hold VALUES (true); CREATE SEQUENCE held",
    );
    let plan = split_held_after_three_batches();
    let app = AppSimulator::start(&db.url, AppConfig::default());
    assert!(app.wait_until(Duration::from_secs(60), |p| p.committed_least() >= 3));

    let output = interrupt_the_held_split(&db, plan.path(), "json");
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", describe(&output)));
    let stage = json["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|stage| stage["id"] == "split_chapters")
        .unwrap();
    let written: u64 = db
        .scalar("SELECT rows_written FROM planrun.checkpoints")
        .parse()
        .unwrap();
    let last_key = db.scalar("SELECT last_key FROM planrun.checkpoints");
    assert!(written > 0, "the three batches wrote sections");
    let note = stage["note"].as_str().unwrap_or_default();
    assert!(
        !note.contains("everything the stage did was rolled back"),
        "the note denies the committed batches: {note}"
    );
    assert_eq!(stage["status"], "interrupted", "{stage:#}");
    assert_eq!(stage["rows_affected"], written, "{stage:#}");
    let left = &stage["left_behind"];
    assert_eq!(left["batches"], 3, "{stage:#}");
    assert_eq!(left["rows_written"], written, "{stage:#}");
    assert_eq!(left["last_key"].to_string(), last_key, "{stage:#}");
    assert_eq!(left["capture_on"], serde_json::json!(["public.chapters"]));
    assert_eq!(left["resume"], "planrun apply memoir.toml");
    assert_eq!(left["abandon"], "planrun reset split_chapters memoir.toml");
    let summary = json["summary"].to_string();
    for expected in [
        "half done: split_chapters",
        "run `planrun apply memoir.toml` again to resume split_chapters",
        "`planrun reset split_chapters memoir.toml` to abandon it",
    ] {
        assert!(
            summary.contains(expected),
            "`{expected}` missing: {summary}"
        );
    }

    // A resume interrupted again, this time read as text: it holds at once.
    let output = interrupt_the_held_split(&db, plan.path(), "text");
    // Long lines wrap; the words are what counts.
    let text = stdout(&output)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for expected in [
        "3 batches committed",
        &format!("{written} rows written"),
        &format!("checkpoint after key {last_key}"),
        "change capture installed on public.chapters",
        "half done: split_chapters",
        "`planrun reset split_chapters memoir.toml` to abandon it",
    ] {
        assert!(text.contains(expected), "`{expected}` missing:\n{text}");
    }

    db.execute("UPDATE hold SET flag = false");
    let rerun = planrun_on(
        PLANRUN,
        plan.path(),
        &db,
        &[
            "apply",
            "memoir.toml",
            "--no-backup",
            "--until",
            "split_chapters",
        ],
    );
    let log = app.stop();
    eprintln!("{}", log.summary());
    assert_eq!(rerun.status.code(), Some(0), "{}", describe(&rerun));
    assert!(
        stdout(&rerun).contains("resumed after key"),
        "{}",
        describe(&rerun)
    );
    let lost = log.lost_writes(&mut db.client());
    assert!(
        lost.is_empty(),
        "{} committed writes lost:\n{}",
        lost.len(),
        lost.join("\n")
    );
    assert!(log.committed_total() > 0, "{}", log.summary());
    // The memoir plan's lock_budget: blocks_reads 1s, blocks_writes 30s.
    assert!(
        log.longest_read_wait <= Duration::from_secs(1),
        "{}",
        log.summary()
    );
    assert!(
        log.longest_write_wait <= Duration::from_secs(30),
        "{}",
        log.summary()
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'planrun_capture_%'"),
        "0"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM planrun.checkpoints"), "0");
}
