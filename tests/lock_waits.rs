//! Waits within budget (issue 21, items 3 to 6): wherever an online stage meets a lock
//! the application holds (the cutover's column drop behind a report, the change
//! capture's install behind an open transaction, a batch behind a locked row, a lock
//! attempt behind autovacuum), planrun waits on the one retry schedule, names the
//! blocker, never holds the application's writers while it sleeps, and no wait of
//! the application exceeds the plan's `lock_budget`. The simulated application
//! writes throughout; no committed write is lost.

use std::path::Path;
use std::process::{Child, Output};
use std::time::Duration;

use planrun_tests::app::{AppConfig, AppLog, AppSimulator};
use planrun_tests::{describe, legacy_db, memoir_plan_edited, planrun_command, TestDb};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

/// The memoir plan with the split batched with `params` and the plan's budget
/// replaced by `budget`.
fn batched_plan(params: &str, budget: &str) -> tempfile::TempDir {
    memoir_plan_edited(|text| {
        text.replace(
            r#"params = { on_invalid = "fail" }"#,
            &format!(r#"params = {{ on_invalid = "fail", mode = "batched", {params} }}"#),
        )
        .replace(
            r#"lock_budget = { blocks_reads = "1s", blocks_writes = "30s" }"#,
            &format!("lock_budget = {budget}"),
        )
    })
}

fn spawn(dir: &Path, db: &TestDb, args: &[&str]) -> Child {
    let mut all = args.to_vec();
    if args[0] == "apply" {
        all.push("--no-backup");
    }
    all.extend(["--database-url", &db.url]);
    planrun_command(PLANRUN, dir, &all)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the planrun binary starts")
}

fn wait_until_for(what: &str, condition: impl FnMut() -> bool) {
    planrun_tests::wait_until(what, Duration::from_secs(120), condition)
}

/// Whether `planrun apply`'s connection waits for a lock on `chapters` (or a row of
/// it) that the session `holder` holds.
fn planrun_waits_for(db: &TestDb, holder: i32) -> bool {
    command_waits_for(db, "apply", holder)
}

/// Whether the connection of `planrun COMMAND` waits for a lock `holder` holds.
fn command_waits_for(db: &TestDb, command: &str, holder: i32) -> bool {
    db.scalar(&format!(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                        WHERE application_name LIKE 'planrun {command}%' AND wait_event_type = 'Lock'
                          AND {holder} = ANY (pg_blocking_pids(pid)))"
    )) == "t"
}

/// Applies the memoir's first stage, which alters `chapters`: what the test holds
/// afterwards meets the split alone.
fn apply_first_stage(dir: &Path, db: &TestDb) {
    let args = ["apply", "memoir.toml", "--until", "sections_schema"];
    let output = spawn(dir, db, &args).wait_with_output().unwrap();
    assert_success(&output);
}

fn start_app(db: &TestDb) -> AppSimulator {
    let app = AppSimulator::start(&db.url, AppConfig::default());
    assert!(app.wait_until(Duration::from_secs(60), |p| p.committed_least() >= 3));
    app
}

/// No committed write of the application is lost.
fn assert_nothing_lost(log: &AppLog, db: &TestDb, output: &Output) {
    let lost = log.lost_writes(&mut db.client());
    assert!(
        lost.is_empty(),
        "{} committed writes lost:\n{}\n{}",
        lost.len(),
        lost.join("\n"),
        describe(output)
    );
    assert!(log.committed_total() > 0, "{}", log.summary());
}

/// Applies up to the split while `open` (session `holder`) holds what it needs: once
/// planrun is seen waiting for `holder` (`waiting`), `open` stays 3 s more, several of
/// the plan's 500 ms lock timeouts, then commits. The application simulator `app`
/// writes throughout; the apply succeeds and loses none of its writes.
fn split_held_up_by(
    dir: &Path,
    db: &TestDb,
    (app, open, holder): (AppSimulator, postgres::Transaction<'_>, i32),
    waiting: &str,
) -> Output {
    let child = spawn(
        dir,
        db,
        &["apply", "memoir.toml", "--until", "split_chapters"],
    );
    wait_until_for(waiting, || planrun_waits_for(db, holder));
    std::thread::sleep(Duration::from_secs(3));
    open.commit().unwrap();
    let output = child.wait_with_output().unwrap();
    let log = app.stop();
    eprintln!("{}", log.summary());
    assert_nothing_lost(&log, db, &output);
    assert_success(&output);
    output
}

fn assert_success(output: &Output) {
    assert_eq!(output.status.code(), Some(0), "{}", describe(output));
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Item 3: a report reading `chapters` holds up the cutover's column drop. The
/// cutover never keeps the application's writers waiting while it waits for the
/// report: each attempt at the drop is one short `lock_timeout`, after which the
/// cutover rolls back, the application runs, and it tries again. The longest write
/// of the application stays within `blocks_writes`; the stage completes once the
/// report ends.
#[test]
fn the_cutover_never_holds_the_application_s_writes_while_a_report_holds_up_the_drop() {
    let db = legacy_db(1500);
    let plan = batched_plan(
        r#"batch_size = 100, pause = "20ms""#,
        r#"{ blocks_reads = "1s", blocks_writes = "3s" }"#,
    );
    apply_first_stage(plan.path(), &db);
    let app = start_app(&db);
    let mut report = db.client();
    let holder: i32 = report
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let child = spawn(
        plan.path(),
        &db,
        &["apply", "memoir.toml", "--until", "split_chapters"],
    );
    let mut open = report.transaction().unwrap();
    open.query_one("SELECT count(*) FROM chapters", &[])
        .unwrap();
    wait_until_for("the cutover waits for the report's lock", || {
        planrun_waits_for(&db, holder)
    });
    // The report goes on well past the budget for writes.
    std::thread::sleep(Duration::from_secs(7));
    open.commit().unwrap();
    let output = child.wait_with_output().unwrap();
    let log = app.stop();
    eprintln!("{}", log.summary());
    assert_nothing_lost(&log, &db, &output);
    assert_success(&output);
    let text = stderr(&output);
    assert!(
        text.contains("for cutover") && text.contains(&format!("pid {holder}")),
        "the cutover's retries name the report: {}",
        describe(&output)
    );
    assert!(
        log.longest_write_wait <= Duration::from_secs(3),
        "the application's writes waited {:?} (budget 3 s): {}\n{}",
        log.longest_write_wait,
        log.summary(),
        describe(&output)
    );
}

/// Item 4: an application transaction open on `chapters` when the online stage
/// installs its change capture is waited out on the retry schedule, naming it,
/// instead of failing the start.
#[test]
fn installing_the_change_capture_waits_out_an_open_application_transaction_and_names_it() {
    let db = legacy_db(500);
    let plan = batched_plan(
        r#"batch_size = 100"#,
        r#"{ blocks_reads = "1s", blocks_writes = "30s" }"#,
    );
    apply_first_stage(plan.path(), &db);
    let app = start_app(&db);
    let mut application = db.client();
    let holder: i32 = application
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let mut open = application.transaction().unwrap();
    open.batch_execute("LOCK TABLE chapters IN ROW EXCLUSIVE MODE")
        .unwrap();
    let output = split_held_up_by(
        plan.path(),
        &db,
        (app, open, holder),
        "the stage's start waits for the open transaction",
    );
    let text = stderr(&output);
    assert!(
        text.contains("change capture") && text.contains(&format!("pid {holder}")),
        "the waiting message names what waits and the blocker: {}",
        describe(&output)
    );
}

/// Item 4, `reset`: a report reading `chapters` holds up the removal of the change
/// capture (DROP TRIGGER asks ACCESS EXCLUSIVE). The reset rolls back and tries again
/// on the schedule, the application's writers never waiting longer than
/// `blocks_writes` meanwhile, and completes once the report ends; before, it failed
/// on the first lock timeout.
#[test]
fn reset_waits_out_a_report_without_holding_the_application_s_writes() {
    let db = legacy_db(1500);
    let plan = batched_plan(
        r#"batch_size = 100, pause = "100ms""#,
        r#"{ blocks_reads = "1s", blocks_writes = "3s" }"#,
    );
    apply_first_stage(plan.path(), &db);
    let mut child = spawn(
        plan.path(),
        &db,
        &["apply", "memoir.toml", "--until", "split_chapters"],
    );
    wait_until_for("the batches pass chapter 300", || {
        db.scalar("SELECT to_regclass('planrun.checkpoints') IS NOT NULL") == "t"
            && db.scalar("SELECT coalesce((SELECT last_key FROM planrun.checkpoints), 0) >= 300")
                == "t"
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let app = start_app(&db);
    let mut report = db.client();
    let holder: i32 = report
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let mut open = report.transaction().unwrap();
    open.query_one("SELECT count(*) FROM chapters", &[])
        .unwrap();
    let mut reset = spawn(
        plan.path(),
        &db,
        &["reset", "split_chapters", "memoir.toml"],
    );
    // Or it ended: the assertions below then say how.
    wait_until_for("the reset waits for the report's lock", || {
        command_waits_for(&db, "reset", holder) || reset.try_wait().unwrap().is_some()
    });
    std::thread::sleep(Duration::from_secs(3));
    open.commit().unwrap();
    let output = reset.wait_with_output().unwrap();
    let log = app.stop();
    eprintln!("{}", log.summary());
    assert_nothing_lost(&log, &db, &output);
    assert_success(&output);
    assert_eq!(db.scalar("SELECT count(*) FROM planrun.checkpoints"), "0");
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'planrun_capture_%'"),
        "0"
    );
    assert!(
        log.longest_write_wait <= Duration::from_secs(3),
        "the application's writes waited {:?} (budget 3 s): {}\n{}",
        log.longest_write_wait,
        log.summary(),
        describe(&output)
    );
}

/// Item 5: a batch that meets a chapter the application has locked waits for it on
/// the retry schedule instead of failing after one `lock_timeout`.
#[test]
fn a_batch_meeting_a_row_the_application_has_locked_waits_for_it() {
    let db = legacy_db(1500);
    let plan = batched_plan(
        r#"batch_size = 100, pause = "20ms""#,
        r#"{ blocks_reads = "1s", blocks_writes = "30s" }"#,
    );
    apply_first_stage(plan.path(), &db);
    let app = start_app(&db);
    let mut application = db.client();
    let holder: i32 = application
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let mut open = application.transaction().unwrap();
    // A chapter with images: its batch sets its cover, so it needs the row.
    open.query(
        "SELECT id FROM chapters WHERE id = (SELECT min(id) FROM chapters
                                             WHERE id > 700 AND jsonb_array_length(images) > 0)
         FOR UPDATE",
        &[],
    )
    .unwrap();
    let output = split_held_up_by(
        plan.path(),
        &db,
        (app, open, holder),
        "a batch waits for the locked chapter",
    );
    assert!(
        stderr(&output).contains(&format!("pid {holder}")),
        "the waiting message names the blocker: {}",
        describe(&output)
    );
}

/// A cluster whose autovacuum looks at tables every second, with the memoir's legacy
/// `chapters` vacuumed as slowly as the server allows once it has dead rows.
fn slowly_vacuumed_chapters() -> TestDb {
    use planrun_memoir::legacy::{create_legacy_schema, load_legacy, ImagesType};
    let cluster = planrun_tempdb::TempCluster::builder()
        .setting("autovacuum_naptime", "1s")
        .start()
        .expect("a throwaway PostgreSQL starts");
    let url = cluster
        .create_database("planrun_test")
        .expect("the test database is created");
    let db = TestDb { cluster, url };
    let mut client = db.client();
    create_legacy_schema(&mut client, ImagesType::Jsonb).expect("the legacy schema");
    load_legacy(&mut client, 11, 1500, ImagesType::Jsonb).expect("the legacy chapters");
    db.execute(
        "ALTER TABLE chapters SET (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0,
                                   autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1);
         UPDATE chapters SET title = title || '';",
    );
    db
}

/// Item 6: with autovacuum holding the table, a lock attempt that blocks reads waits
/// no longer than `blocks_reads`, not `deadlock_timeout` + 0.5 s: planrun (a
/// superuser here) cancels the worker rather than outwaiting it. The application's
/// longest read is measured: within 200 ms plus 250 ms, which is what a primary-key
/// read itself may take on a loaded test machine (the former outwait made readers
/// queue 1 s, `deadlock_timeout`).
#[test]
fn a_lock_attempt_behind_autovacuum_keeps_readers_waiting_no_longer_than_the_budget() {
    let db = slowly_vacuumed_chapters();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plan.toml"),
        r#"[plan]
name = "vacuumed"
lock_timeout = "10s"
lock_budget = { blocks_reads = "200ms", blocks_writes = "200ms" }
lock_retries = { attempts = 30, delay = "100ms", max_delay = "200ms" }

[[stage]]
id = "touch"
locks = [{ table = "chapters", mode = "access exclusive" }]
[[stage.step]]
sql = "COMMENT ON TABLE chapters IS 'touched under ACCESS EXCLUSIVE'"
"#,
    )
    .unwrap();
    wait_until_for("autovacuum works on chapters", || {
        db.scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                            WHERE a.backend_type = 'autovacuum worker'
                              AND l.relation = 'chapters'::regclass)",
        ) == "t"
    });
    let app = AppSimulator::start(&db.url, AppConfig::default());
    assert!(
        app.wait_until(Duration::from_secs(60), |p| p.committed_least() >= 3
            && p.reads >= 3)
    );
    let output = spawn(dir.path(), &db, &["apply", "plan.toml"])
        .wait_with_output()
        .unwrap();
    let log = app.stop();
    eprintln!("{}", log.summary());
    assert_nothing_lost(&log, &db, &output);
    assert_success(&output);
    assert!(
        log.longest_read_wait <= Duration::from_millis(450),
        "the application's reads waited {:?} (budget 200 ms): {}\n{}",
        log.longest_read_wait,
        log.summary(),
        describe(&output)
    );
}
