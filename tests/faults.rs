//! Faults: timeouts that name who blocked, a killed planrun, a terminated session, a
//! server stopped mid-stage, concurrent applies, and backups that cannot be taken.
//! Each proves that what committed is exactly what the report says, and that a
//! re-run finishes the job with nothing lost or doubled.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use planrun_engine::exit_codes;
use planrun_tests::{
    describe, planrun, planrun_on, scenario, spawn_apply, stdout, TestDb, CUSTOMERS,
};

/// `planrun_tests::wait_until` with this file's limit.
fn wait_until_for(what: &str, condition: impl FnMut() -> bool) {
    planrun_tests::wait_until(what, Duration::from_secs(30), condition)
}

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

fn run(dir: &Path, db: &TestDb, args: &[&str]) -> Output {
    planrun_on(PLANRUN, dir, db, args)
}

fn spawn_shop_apply(dir: &Path, db: &TestDb) -> Child {
    spawn_apply(PLANRUN, dir, "plan.toml", db, &[])
}

/// The shop plan's second stage, `load_orders`, as the scenario has it.
const LOAD_ORDERS: &str = "INSERT INTO orders (customer_id) SELECT id FROM customers;\n";

/// Starts an apply of the shop plan whose `load_orders` sleeps 30 s before its insert;
/// returns once the sleep is running, with `create_orders` committed.
fn apply_held_in_load_orders(dir: &Path, db: &TestDb, extra: &[&str]) -> Child {
    std::fs::write(
        dir.join("02_load.sql"),
        format!("SELECT pg_sleep(30);\n{LOAD_ORDERS}"),
    )
    .unwrap();
    let child = spawn_apply(PLANRUN, dir, "plan.toml", db, extra);
    wait_until_for("load_orders is running", || {
        db.scalar("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'")
            == "1"
    });
    child
}

/// The state a clean run of the shop plan leaves.
fn shop_digest(db: &TestDb) -> String {
    db.scalar("SELECT md5(string_agg(id || ':' || customer_id || ':' || coalesce(total::text, '-'), ',' ORDER BY id)) FROM orders")
}

#[test]
fn a_lock_timeout_names_the_blocking_session_and_nothing_after_it_runs() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let plan = std::fs::read_to_string(dir.path().join("plan.toml")).unwrap();
    std::fs::write(
        dir.path().join("plan.toml"),
        plan.replace("lock_timeout = \"2s\"", "lock_timeout = \"3s\""),
    )
    .unwrap();
    let mut blocker = postgres::Client::connect(
        &format!("{}?application_name=nightly-report", db.url),
        postgres::NoTls,
    )
    .unwrap();
    let mut tx = blocker.transaction().unwrap();
    tx.batch_execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let blocker_pid: i32 = tx.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);

    let output = run(
        dir.path(),
        &db,
        &["apply", "plan.toml", "--no-backup", "--format", "json"],
    );
    tx.rollback().unwrap();
    assert_eq!(
        output.status.code(),
        Some(exit_codes::STEP_FAILED),
        "{}",
        describe(&output)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let error = &report["stages"][0]["error"];
    assert_eq!(error["sqlstate"], "55P03", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("blocked by pid {blocker_pid}")),
        "{message}"
    );
    assert!(message.contains("nightly-report"), "{message}");
    assert!(
        error["hint"]
            .as_str()
            .unwrap()
            .contains("lock_timeout = 3s"),
        "{error}"
    );
    assert_eq!(report["stages"][1]["status"], "not_run");
    assert_eq!(report["stages"][2]["status"], "not_run");
    assert!(db.column("SELECT to_regclass('public.orders')")[0].is_none());
}

#[test]
fn a_statement_timeout_stops_the_stage_instead_of_hanging() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let plan = std::fs::read_to_string(dir.path().join("plan.toml")).unwrap();
    std::fs::write(
        dir.path().join("plan.toml"),
        plan.replace(
            "id = \"load_orders\"\n",
            "id = \"load_orders\"\nstatement_timeout = \"300ms\"\n",
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("02_load.sql"), "SELECT pg_sleep(30);\n").unwrap();
    let started = Instant::now();
    let output = run(
        dir.path(),
        &db,
        &["apply", "plan.toml", "--no-backup", "--format", "json"],
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the timeout fired"
    );
    assert_eq!(
        output.status.code(),
        Some(exit_codes::STEP_FAILED),
        "{}",
        describe(&output)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let error = &report["stages"][1]["error"];
    assert_eq!(error["sqlstate"], "57014");
    assert!(
        error["hint"]
            .as_str()
            .unwrap()
            .contains("statement_timeout = 300ms"),
        "{error}"
    );
    assert_eq!(report["stages"][0]["status"], "applied");
    assert_eq!(report["stages"][2]["status"], "not_run");
}

#[test]
fn sigkill_mid_stage_keeps_exactly_the_committed_stages_and_a_rerun_finishes() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    std::fs::write(
        dir.path().join("03_total.sql"),
        "ALTER TABLE orders ADD COLUMN total numeric;\nUPDATE orders SET total = customer_id * 10;\nSELECT pg_sleep(600);\n",
    )
    .unwrap();
    let mut child = spawn_shop_apply(dir.path(), &db);
    wait_until_for("the last stage is running", || {
        db.scalar("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()") == "1"
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // The statement would sleep for ten minutes: the server notices the dead client
    // (planrun sets client_connection_check_interval) and rolls the stage back.
    wait_until_for(
        "the killed planrun's session is gone long before its statement ends",
        || {
            db.scalar("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()") == "0"
        },
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM orders"),
        "25",
        "stages 1 and 2 committed"
    );
    assert!(
        db.column("SELECT 1 FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'total'").is_empty(),
        "stage 3 rolled back with the dead session"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"),
        "0",
        "no stuck lock"
    );

    std::fs::write(dir.path().join("03_total.sql"), "ALTER TABLE orders ADD COLUMN total numeric;\nUPDATE orders SET total = customer_id * 10;\n").unwrap();
    let rerun = run(
        dir.path(),
        &db,
        &["apply", "plan.toml", "--no-backup", "--allow-drift"],
    );
    assert_eq!(rerun.status.code(), Some(0), "{}", describe(&rerun));
    let clean = TestDb::new();
    clean.execute(CUSTOMERS);
    let clean_dir = scenario("shop");
    assert_eq!(
        run(
            clean_dir.path(),
            &clean,
            &["apply", "plan.toml", "--no-backup"]
        )
        .status
        .code(),
        Some(0)
    );
    assert_eq!(shop_digest(&db), shop_digest(&clean));
    assert_eq!(
        db.scalar("SELECT count(*) FROM planrun.stage_results WHERE status = 'applied'"),
        "3"
    );
}

#[test]
fn a_terminated_session_is_a_clear_error_naming_the_stage_and_what_committed() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let child = apply_held_in_load_orders(dir.path(), &db, &["--format", "json"]);
    db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'");
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(exit_codes::STEP_FAILED),
        "{}",
        describe(&output)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["stages"][0]["status"], "applied");
    let failed = &report["stages"][1];
    assert_eq!(failed["id"], "load_orders");
    assert_eq!(failed["status"], "failed");
    // The server sends FATAL 57P01 and closes the socket; the postgres crate may see
    // the close before it hands over the error (the old code lost it about one run in
    // eight), so the report either has the SQLSTATE or says the connection was closed.
    let error = &failed["error"];
    assert!(
        error["sqlstate"] == "57P01"
            || error["message"]
                .as_str()
                .is_some_and(|m| m.contains("the server closed the connection")),
        "{failed}"
    );
    assert_eq!(report["stages"][2]["status"], "not_run");
    let summary = report["summary"].to_string();
    assert!(summary.contains("committed: create_orders"), "{summary}");
    assert!(
        summary.contains("not committed: load_orders; not run: add_total"),
        "{summary}"
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"));

    std::fs::write(dir.path().join("02_load.sql"), LOAD_ORDERS).unwrap();
    let rerun = run(
        dir.path(),
        &db,
        &["apply", "plan.toml", "--no-backup", "--allow-drift"],
    );
    assert_eq!(rerun.status.code(), Some(0), "{}", describe(&rerun));
    assert_eq!(
        db.scalar("SELECT count(*) FROM orders"),
        "25",
        "nothing lost or doubled"
    );
}

#[test]
fn a_server_stopped_mid_stage_and_restarted_loses_nothing() {
    let mut db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let child = apply_held_in_load_orders(dir.path(), &db, &[]);
    db.cluster
        .stop(planrun_tempdb::StopMode::Immediate)
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_ne!(output.status.code(), Some(0), "{}", describe(&output));
    let text = format!(
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("load_orders") || text.contains("connection"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    db.cluster.restart().unwrap();

    std::fs::write(dir.path().join("02_load.sql"), LOAD_ORDERS).unwrap();
    let rerun = run(
        dir.path(),
        &db,
        &["apply", "plan.toml", "--no-backup", "--allow-drift"],
    );
    assert_eq!(rerun.status.code(), Some(0), "{}", describe(&rerun));
    assert_eq!(db.scalar("SELECT count(*) FROM orders"), "25");
    assert_eq!(
        db.scalar("SELECT string_agg(stage_id || ':' || status, ',' ORDER BY id) FROM planrun.stage_results WHERE status = 'applied'"),
        "create_orders:applied,load_orders:applied,add_total:applied"
    );
}

fn concurrent_applies(count: usize) {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let children: Vec<_> = (0..count)
        .map(|_| {
            spawn_apply(
                PLANRUN,
                dir.path(),
                "plan.toml",
                &db,
                &["--lock-wait", "60"],
            )
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        // Each waits its turn (--lock-wait 60) and then finds its stages done.
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    }
    assert_eq!(
        db.scalar("SELECT string_agg(stage_id || ':' || n, ',' ORDER BY stage_id) FROM \
                   (SELECT stage_id, count(*) n FROM planrun.stage_results WHERE status = 'applied' GROUP BY stage_id) s"),
        "add_total:1,create_orders:1,load_orders:1",
        "each stage applied exactly once"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM orders"), "25");
    assert_eq!(
        db.scalar("SELECT count(*) FROM planrun.runs"),
        count.to_string()
    );
}

#[test]
fn two_concurrent_applies_apply_each_stage_once() {
    concurrent_applies(2);
}

#[test]
fn ten_concurrent_applies_apply_each_stage_once() {
    concurrent_applies(10);
}

#[test]
fn a_backup_that_cannot_be_taken_stops_everything() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let before = db.dump();

    let empty = tempfile::tempdir().unwrap();
    let missing = planrun(
        PLANRUN,
        dir.path(),
        &["apply", "plan.toml", "--database-url", &db.url],
        &[("PG_BIN", empty.path().to_str().unwrap())],
    );
    assert_eq!(
        missing.status.code(),
        Some(exit_codes::BACKUP_FAILED),
        "{}",
        describe(&missing)
    );
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("pg_dump"),
        "{}",
        describe(&missing)
    );

    let not_a_directory = dir.path().join("a-file");
    std::fs::write(&not_a_directory, "").unwrap();
    let unwritable = run(
        dir.path(),
        &db,
        &[
            "apply",
            "plan.toml",
            "--backup-dir",
            not_a_directory.to_str().unwrap(),
        ],
    );
    assert_eq!(
        unwritable.status.code(),
        Some(exit_codes::BACKUP_FAILED),
        "{}",
        describe(&unwritable)
    );
    assert!(
        String::from_utf8_lossy(&unwritable.stderr).contains("cannot create backup directory"),
        "{}",
        describe(&unwritable)
    );

    assert_eq!(
        db.column("SELECT to_regclass('public.orders')::text"),
        [None],
        "no stage ran"
    );
    assert!(before.contains("INSERT INTO public.customers VALUES (25, 'c25')"));
    assert_eq!(db.scalar("SELECT count(*) FROM customers"), "25");
    assert_eq!(db.scalar("SELECT count(*) FROM planrun.stage_results"), "0");
}

/// A tmpfs of a few kilobytes, unmounted on drop.
struct TinyFilesystem {
    dir: tempfile::TempDir,
}

impl TinyFilesystem {
    /// `None` when this process may not mount (not root, or no permission).
    fn mount(size: &str) -> Option<TinyFilesystem> {
        let dir = tempfile::tempdir().ok()?;
        let status = Command::new("mount")
            // mode=0700: a tmpfs root is 1777, and planrun refuses a backup
            // directory others can write.
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(TinyFilesystem { dir })
    }
}

impl Drop for TinyFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_disk_that_fills_during_the_backup_stops_everything() {
    let Some(disk) = TinyFilesystem::mount("64k") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    // Enough data that the compressed dump cannot fit in 64 kB.
    db.execute("CREATE TABLE filler AS SELECT g, md5(g::text) || md5((g * 7)::text) AS noise FROM generate_series(1, 40000) g");
    let dir = scenario("shop");
    let output = run(
        dir.path(),
        &db,
        &[
            "apply",
            "plan.toml",
            "--backup-dir",
            disk.dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(exit_codes::BACKUP_FAILED),
        "{}",
        describe(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(disk.dir.path()).unwrap().count(),
        0,
        "the partial dump is removed"
    );
    assert_eq!(
        db.column("SELECT to_regclass('public.orders')::text"),
        [None],
        "no stage ran"
    );
}

/// `planrun apply 2>&1 | head -1`: stdout and stderr closed while the run goes on.
/// planrun used to panic after the first stage (exit 101), leaving the run 'running';
/// now the output is lost and the run is not: every stage applies, the run is
/// recorded as finished.
#[test]
fn a_closed_output_pipe_loses_the_output_not_the_run() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let mut child = spawn_apply(PLANRUN, dir.path(), "plan.toml", &db, &[]);
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        db.scalar("SELECT outcome FROM planrun.runs ORDER BY id DESC LIMIT 1"),
        "success"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM planrun.stage_results WHERE status = 'applied'"),
        "3"
    );
}

/// A server that accepts the connection and never answers: the driver's
/// `connect_timeout` bounds only the TCP connect, so planrun used to wait for ever.
/// Now the whole attempt gives up after `connect_timeout`, exit 16.
#[test]
fn a_server_that_never_answers_times_out_instead_of_hanging() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let held = std::thread::spawn(move || {
        let (socket, _) = listener.accept().unwrap();
        // Silent until planrun has given up (or a minute, so the test cannot hang).
        let _ = finished.recv_timeout(std::time::Duration::from_secs(60));
        drop(socket);
    });
    let dir = scenario("shop");
    let url = format!("postgresql://app@127.0.0.1:{port}/app?connect_timeout=2");
    let started = std::time::Instant::now();
    let output = planrun(
        PLANRUN,
        dir.path(),
        &["apply", "plan.toml", "--no-backup", "--database-url", &url],
        &[],
    );
    assert_eq!(
        output.status.code(),
        Some(exit_codes::CANNOT_CONNECT),
        "{}",
        describe(&output)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    assert!(
        describe(&output).contains("no answer within connect_timeout = 2 s"),
        "{}",
        describe(&output)
    );
    done.send(()).unwrap();
    held.join().unwrap();
}
