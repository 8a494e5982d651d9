//! What held in online (batched) stages keeps holding (issue 21): with the simulated
//! application writing throughout, a `planrun apply` killed (SIGKILL) or stopped
//! (SIGINT, SIGTERM) during the batches or during the cutover, then resumed or reset
//! and applied again, loses no committed write, splits every chapter by the spec and
//! leaves nothing behind; primary-key moves, a delete then a reinsert of the same id
//! and an application transaction open across the cutover split correctly; and a
//! session-mode PgBouncer in front of both planrun and the application changes
//! nothing of that.
//!
//! The moments are chosen by a seeded RNG (the seed is in every failure message;
//! `PLANRUN_CHAOS_SEED` draws others, `PLANRUN_CHAOS_ITERATION` replays one) and reached by watching the checkpoint and
//! the server's lock table, never by sleeping.

use std::path::Path;
use std::process::{Child, Output};
use std::time::Duration;

use planrun_engine::exit_codes;
use planrun_tempdb::{PoolMode, TempPooler};
use planrun_tests::online_split::{
    assert_exactly_the_split_at_the_cutover, assert_nothing_left_behind,
    batched_plan_keeping_the_cutover_rows,
};
use planrun_tests::{
    describe, legacy_db, planrun_command, AppConfig, AppLog, AppSimulator, TestDb,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");
const UNTIL_SPLIT: [&str; 5] = [
    "apply",
    "memoir.toml",
    "--no-backup",
    "--until",
    "split_chapters",
];
/// The memoir plan's `lock_budget.blocks_writes`: no application write may wait longer.
const BLOCKS_WRITES: Duration = Duration::from_secs(30);
/// The advisory lock a test holds to keep the cutover at its first test step, its
/// locks on `chapters` taken, until the test has delivered its signal.
const CUTOVER_GATE: i64 = 2121;
const DEFAULT_SEED: u64 = 21;

fn wait_until_for(what: &str, condition: impl FnMut() -> bool) {
    planrun_tests::wait_until(what, Duration::from_secs(60), condition)
}

fn run(dir: &Path, url: &str, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--database-url", url]);
    planrun_command(PLANRUN, dir, &all).output().unwrap()
}

fn spawn(dir: &Path, url: &str, args: &[&str]) -> Child {
    let mut all = args.to_vec();
    all.extend(["--database-url", url]);
    planrun_command(PLANRUN, dir, &all)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn gated_plan(params: &str) -> tempfile::TempDir {
    batched_plan_keeping_the_cutover_rows(
        params,
        &format!("SELECT pg_advisory_xact_lock({CUTOVER_GATE})"),
    )
}

/// The batches have committed past chapter `key`.
fn wait_for_checkpoint(db: &TestDb, key: i64) {
    let passed = format!("SELECT coalesce((SELECT last_key FROM planrun.checkpoints), 0) >= {key}");
    wait_until_for(&format!("the batches pass chapter {key}"), || {
        db.scalar("SELECT to_regclass('planrun.checkpoints') IS NOT NULL") == "t"
            && db.scalar(&passed) == "t"
    });
}

/// A planrun session waits for a `mode` lock of the kind `locktype` (on `chapters`
/// when it is a relation).
fn wait_for_planrun_waiting(db: &TestDb, locktype: &str, mode: &str) {
    let waiting = format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
         WHERE NOT l.granted AND l.locktype = '{locktype}' AND l.mode = '{mode}'
           AND (l.locktype <> 'relation' OR l.relation = 'public.chapters'::regclass)
           AND a.application_name LIKE 'planrun%'"
    );
    wait_until_for(
        &format!("planrun waits for a {mode} {locktype} lock"),
        || db.scalar(&waiting) != "0",
    );
}

fn wait_for_planrun_gone(db: &TestDb) {
    wait_until_for("planrun's sessions are gone", || {
        db.scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'planrun%'")
            == "0"
    });
}

fn signal(child: &Child, signal: i32) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// The simulated application at a pace that keeps the catch-up short on two cores.
fn steady_application() -> AppConfig {
    AppConfig {
        pause: Duration::from_millis(10),
        ..AppConfig::default()
    }
}

/// 0 committed writes lost, none waited longer than the plan's budget.
fn assert_application_unharmed(db: &TestDb, log: &AppLog, context: &str) {
    // The figures, for `--nocapture`: what docs/reliability.md quotes.
    eprintln!("application: {}", log.summary());
    let lost = log.lost_writes(&mut db.client());
    assert!(
        lost.is_empty(),
        "{} committed writes lost:\n{}\n{context}",
        lost.len(),
        lost.join("\n")
    );
    assert!(log.committed_total() > 0, "{}", log.summary());
    assert!(
        log.longest_write_wait < BLOCKS_WRITES,
        "a write waited {} ms (budget {} ms): {}; {context}",
        log.longest_write_wait.as_millis(),
        BLOCKS_WRITES.as_millis(),
        log.summary()
    );
}

/// Exit 0; otherwise the failure names the ledger's last stage error too (the run's
/// output may not).
fn assert_success(output: &Output, db: &TestDb, context: &str) {
    if output.status.code() != Some(0) {
        let error = db.scalar(
            "SELECT error::text FROM planrun.stage_results WHERE error IS NOT NULL ORDER BY id DESC LIMIT 1",
        );
        panic!(
            "{context}\n{}\nthe ledger's last stage error: {error}",
            describe(output)
        );
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Batches,
    Cutover,
}

#[derive(Debug, Clone, Copy)]
enum Recovery {
    Resume,
    ResetThenApply,
}

/// One interrupted run: where, which signal, how it is recovered.
#[derive(Debug)]
struct Chaos {
    phase: Phase,
    signal: (&'static str, i32),
    recovery: Recovery,
    /// In the batches: the chapter the checkpoint passes before the signal.
    key: i64,
}

const CHAPTERS: i64 = 1000;

/// Every signal in both phases, in an order drawn from `rng`; in each phase both
/// recoveries, which signal gets which drawn too, as is each key.
fn draw(rng: &mut ChaCha8Rng) -> Vec<Chaos> {
    const SIGNALS: [(&str, i32); 3] = [
        ("SIGKILL", libc::SIGKILL),
        ("SIGINT", libc::SIGINT),
        ("SIGTERM", libc::SIGTERM),
    ];
    let mut all = Vec::new();
    for phase in [Phase::Batches, Phase::Cutover] {
        let mut recoveries = [
            Recovery::Resume,
            Recovery::ResetThenApply,
            [Recovery::Resume, Recovery::ResetThenApply][rng.random_range(0..2)],
        ];
        recoveries.shuffle(rng);
        for (signal, recovery) in SIGNALS.into_iter().zip(recoveries) {
            let key = rng.random_range(100..CHAPTERS - 300);
            all.push(Chaos {
                phase,
                signal,
                recovery,
                key,
            });
        }
    }
    all.shuffle(rng);
    all
}

/// Runs the split, delivers `chaos.signal` in `chaos.phase`, recovers, and checks.
fn interrupted_and_recovered(chaos: &Chaos, seed: u64, iteration: usize) {
    let context = format!(
        "seed {seed} (PLANRUN_CHAOS_SEED), iteration {iteration} (PLANRUN_CHAOS_ITERATION): {chaos:?}"
    );
    let db = legacy_db(CHAPTERS as usize);
    let plan = gated_plan(r#"batch_size = 50, pause = "20ms""#);
    let app = AppSimulator::start(&db.url, steady_application());
    assert!(app.wait_until(Duration::from_secs(60), |p| p.committed_least() >= 3));
    // The gate keeps the stage from finishing before the signal, in either phase.
    let mut gate = db.client();
    gate.execute("SELECT pg_advisory_lock($1)", &[&CUTOVER_GATE])
        .unwrap();
    let child = spawn(plan.path(), &db.url, &UNTIL_SPLIT);
    match chaos.phase {
        Phase::Batches => wait_for_checkpoint(&db, chaos.key),
        Phase::Cutover => wait_for_planrun_waiting(&db, "advisory", "ExclusiveLock"),
    }
    signal(&child, chaos.signal.1);
    let stopped = child.wait_with_output().unwrap();
    if chaos.signal.1 != libc::SIGKILL {
        assert_eq!(
            stopped.status.code(),
            Some(exit_codes::INTERRUPTED),
            "{context}\n{}",
            describe(&stopped)
        );
    }
    drop(gate);
    wait_for_planrun_gone(&db);
    if let Recovery::ResetThenApply = chaos.recovery {
        let reset = run(
            plan.path(),
            &db.url,
            &["reset", "split_chapters", "memoir.toml"],
        );
        assert_success(&reset, &db, &format!("reset: {context}"));
    }
    let applied = run(plan.path(), &db.url, &UNTIL_SPLIT);
    let log = app.stop();
    assert_success(&applied, &db, &context);
    let context = format!("{context}\n{}", describe(&applied));
    assert_application_unharmed(&db, &log, &context);
    assert_exactly_the_split_at_the_cutover(&db, &context);
    assert_nothing_left_behind(&db, &context);
}

#[test]
fn random_signals_during_the_batches_and_the_cutover_then_resume_or_reset_lose_nothing() {
    let seed = std::env::var("PLANRUN_CHAOS_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let only: Option<usize> = std::env::var("PLANRUN_CHAOS_ITERATION")
        .ok()
        .and_then(|text| text.parse().ok());
    for (iteration, chaos) in draw(&mut rng).iter().enumerate() {
        if only.is_some_and(|only| only != iteration) {
            continue;
        }
        eprintln!("seed {seed}, iteration {iteration}: {chaos:?}");
        interrupted_and_recovered(chaos, seed, iteration);
    }
}

/// The test's own chapters, which the simulator does not know: `ids` inserted with
/// the text and images of chapter 20 and `content`.
fn insert_own_chapters(db: &TestDb, ids: &[i64], content: &str) {
    for id in ids {
        db.execute(&format!(
            "INSERT INTO chapters (id, memoir_id, position, title, content, images)
             SELECT {id}, memoir_id, 10000 + {id} % 10000, title, '{content} ' || {id}, images
             FROM chapters WHERE id = 20"
        ));
    }
}

/// The text of the chapter's first section; empty when it has none.
fn first_section(db: &TestDb, chapter: i64) -> String {
    db.scalar(&format!(
        "SELECT coalesce((SELECT content FROM chapter_sections WHERE chapter_id = {chapter} ORDER BY position LIMIT 1), '')"
    ))
}

#[test]
fn primary_key_moves_reinserts_and_a_transaction_open_across_the_cutover_split_correctly() {
    let db = legacy_db(1500);
    // Ids the simulator will not know, so the test alone writes them.
    db.execute("DELETE FROM chapters WHERE id <= 10");
    let plan = gated_plan(r#"batch_size = 50, pause = "30ms""#);
    let app = AppSimulator::start(&db.url, steady_application());
    assert!(app.wait_until(Duration::from_secs(60), |p| p.committed_least() >= 3));
    insert_own_chapters(&db, &[1, 2, 3, 4, 7, 900_001, 900_003], "before");
    let child = spawn(plan.path(), &db.url, &UNTIL_SPLIT);
    wait_for_checkpoint(&db, 600);
    db.execute(
        "UPDATE chapters SET id = 900101 WHERE id = 1;
         UPDATE chapters SET id = 5 WHERE id = 2;
         UPDATE chapters SET id = 6 WHERE id = 900001;
         DELETE FROM chapters WHERE id = 3;
         DELETE FROM chapters WHERE id = 900003;",
    );
    insert_own_chapters(&db, &[3, 900_003], "reinserted");
    db.execute(
        "BEGIN;
         DELETE FROM chapters WHERE id = 4;
         INSERT INTO chapters (id, memoir_id, position, title, content, images)
         SELECT 4, memoir_id, 10004, title, 'reinserted in one transaction', '[]' FROM chapters WHERE id = 20;
         COMMIT;",
    );
    let mut across = db.client();
    across
        .batch_execute(
            "BEGIN; UPDATE chapters SET content = 'committed after the cutover waited' WHERE id = 7",
        )
        .unwrap();
    wait_for_planrun_waiting(&db, "relation", "ExclusiveLock");
    across.batch_execute("COMMIT").unwrap();
    let output = child.wait_with_output().unwrap();
    let log = app.stop();
    assert_success(&output, &db, "");
    let context = describe(&output);
    assert_application_unharmed(&db, &log, &context);
    assert_exactly_the_split_at_the_cutover(&db, &context);
    assert_nothing_left_behind(&db, &context);
    let expected = [
        (7, "committed after the cutover waited"),
        (4, "reinserted in one transaction"),
        (3, "reinserted 3"),
        (900_003, "reinserted 900003"),
        (900_101, "before 1"),
        (5, "before 2"),
        (6, "before 900001"),
        (1, ""),
        (2, ""),
        (900_001, ""),
    ];
    for (chapter, content) in expected {
        assert_eq!(first_section(&db, chapter), content, "chapter {chapter}");
    }
}

#[test]
fn a_session_mode_pooler_in_front_of_planrun_and_the_application_works_for_the_online_split() {
    let db = legacy_db(1500);
    let pooler = TempPooler::start(&db.cluster, PoolMode::Session).expect("PgBouncer starts");
    let url = pooler.url("planrun_test");
    let plan = gated_plan(r#"batch_size = 100, pause = "20ms""#);
    let app = AppSimulator::start(&url, steady_application());
    assert!(app.wait_until(Duration::from_secs(60), |p| p.committed_least() >= 3));
    let output = run(plan.path(), &url, &UNTIL_SPLIT);
    let log = app.stop();
    assert_success(&output, &db, "through a session-mode PgBouncer");
    let context = describe(&output);
    assert_application_unharmed(&db, &log, &context);
    assert_exactly_the_split_at_the_cutover(&db, &context);
    assert_nothing_left_behind(&db, &context);
}

/// The cutover rolls back and catches up between its attempts while a lock it
/// needs stays taken (here the test's gate); chapters the application inserted
/// after the last batch are split by such a committed catch-up pass, ahead of the
/// checkpoint. Killed then, the resumed stage meets them in its batches: it splits
/// them once more, replacing what the catch-up wrote. It used to fail on a
/// duplicate section (exit 13, 23505 on `chapter_sections_chapter_id_position_key`).
#[test]
fn a_chapter_the_catch_up_split_before_its_batch_is_split_once_when_the_stage_resumes() {
    let db = legacy_db(500);
    let plan = gated_plan(r#"batch_size = 100"#);
    let app = AppSimulator::start(&db.url, steady_application());
    assert!(app.wait_until(Duration::from_secs(60), |p| p.committed_least() >= 3));
    let mut gate = db.client();
    gate.execute("SELECT pg_advisory_lock($1)", &[&CUTOVER_GATE])
        .unwrap();
    let child = spawn(plan.path(), &db.url, &UNTIL_SPLIT);
    wait_for_planrun_waiting(&db, "advisory", "ExclusiveLock");
    let last_key: i64 = db
        .scalar("SELECT last_key FROM planrun.checkpoints")
        .parse()
        .unwrap();
    // More than the cutover's backlog (200), so a catch-up pass commits them; the
    // insert goes through between two attempts of the cutover.
    let url = db.url.clone();
    let insert = std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .batch_execute(
                "INSERT INTO chapters (memoir_id, position, title, content, images)
                 SELECT memoir_id, 20000 + g, title, 'inserted after the last batch ' || g, images
                 FROM chapters, generate_series(1, 300) g WHERE id = 20",
            )
            .unwrap();
    });
    wait_until_for(
        "a catch-up pass splits chapters ahead of the checkpoint",
        || {
            db.scalar(&format!(
                "SELECT count(*) > 0 FROM chapter_sections WHERE chapter_id > {last_key}"
            )) == "t"
        },
    );
    signal(&child, libc::SIGKILL);
    child.wait_with_output().unwrap();
    insert.join().unwrap();
    drop(gate);
    wait_for_planrun_gone(&db);
    let resumed = run(plan.path(), &db.url, &UNTIL_SPLIT);
    let log = app.stop();
    assert_success(&resumed, &db, "the resume after a committed catch-up pass");
    let context = describe(&resumed);
    assert_application_unharmed(&db, &log, &context);
    assert_exactly_the_split_at_the_cutover(&db, &context);
    assert_nothing_left_behind(&db, &context);
}
