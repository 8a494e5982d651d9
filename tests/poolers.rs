//! planrun beside PgBouncer (a real one, `planrun_tempdb::TempPooler`): through a
//! transaction-mode pooler it refuses before changing anything; through a
//! session-mode pooler it works and leaves no setting on the pooled server
//! connections; and an application writing through either pooler while planrun runs
//! loses no committed write and sees no statement fail.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use planrun_engine::exit_codes;
use planrun_tempdb::{PoolMode, TempPooler};
use planrun_tests::{
    describe, legacy_db, planrun_command, scenario, AppConfig, AppLog, AppSimulator, TestDb,
    CUSTOMERS,
};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");
const DB: &str = "planrun_test";
/// Server connections of the session pooler that checks what planrun left: as many
/// as planrun's apply holds at once (its session, the pooler probe or the blocker
/// watch) and one to spare.
const SESSION_POOL_SIZE: usize = 3;
/// The first key of planrun's plan lock (`lock.rs`).
const PLAN_LOCK_CLASS: i32 = 0x706c_616e;

fn apply(cwd: &Path, url: &str, format: &[&str]) -> Output {
    let mut args = vec!["apply", "plan.toml", "--no-backup", "--database-url", url];
    args.extend(format);
    planrun_command(PLANRUN, cwd, &args)
        .output()
        .expect("planrun runs")
}

#[test]
fn apply_through_a_transaction_mode_pooler_is_refused_before_anything_changes() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let pooler = TempPooler::start(&db.cluster, PoolMode::Transaction).expect("PgBouncer starts");
    let dir = scenario("shop");

    let output = apply(dir.path(), &pooler.url(DB), &[]);

    assert_eq!(
        output.status.code(),
        Some(exit_codes::CANNOT_CONNECT),
        "{}",
        describe(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("connect directly to PostgreSQL, or through a session-mode pooler"),
        "{}",
        describe(&output)
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'planrun'"),
        "0",
        "no ledger: {}",
        describe(&output)
    );
    assert_eq!(
        db.scalar("SELECT to_regclass('public.orders') IS NULL"),
        "t"
    );
}

#[test]
fn every_pooler_that_shares_server_connections_is_refused() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let poolers = [
        (PoolMode::Transaction, vec![("server_round_robin", "1")]),
        (PoolMode::Transaction, vec![("default_pool_size", "2")]),
        (PoolMode::Statement, vec![]),
    ];
    for (mode, settings) in poolers {
        let pooler =
            TempPooler::start_with(&db.cluster, mode, &settings).expect("PgBouncer starts");
        let output = apply(dir.path(), &pooler.url(DB), &[]);
        assert_eq!(
            output.status.code(),
            Some(exit_codes::CANNOT_CONNECT),
            "{mode} {settings:?}: {}",
            describe(&output)
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("session-mode pooler"),
            "{mode} {settings:?}: {}",
            describe(&output)
        );
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'planrun'"),
        "0"
    );
}

#[test]
fn the_refusal_is_a_json_error_document_under_format_json() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let pooler = TempPooler::start(&db.cluster, PoolMode::Transaction).expect("PgBouncer starts");
    let dir = scenario("shop");

    let output = apply(dir.path(), &pooler.url(DB), &["--format", "json"]);

    assert_eq!(output.status.code(), Some(exit_codes::CANNOT_CONNECT));
    let document: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", describe(&output)));
    assert_eq!(document["outcome"], "cannot_connect", "{document:#}");
    assert!(
        document.to_string().contains("session-mode pooler"),
        "{document:#}"
    );
}

/// PgBouncer in session mode without a reset query: what planrun's sessions leave on
/// a server connection is what the next client of that connection gets.
fn session_pooler_without_reset(db: &TestDb) -> TempPooler {
    let pool_size = SESSION_POOL_SIZE.to_string();
    TempPooler::start_with(
        &db.cluster,
        PoolMode::Session,
        &[
            ("default_pool_size", &pool_size),
            ("server_reset_query", ""),
        ],
    )
    .expect("PgBouncer starts")
}

/// Every server connection of the pool at once, each in a transaction so that none is
/// handed to two of them: the default search_path, no setting made for the session,
/// and the application's unqualified names resolve.
fn assert_pool_untouched(db: &TestDb, pooler: &TempPooler) {
    let default_path = db.scalar("SHOW search_path");
    let mut clients: Vec<postgres::Client> = (0..SESSION_POOL_SIZE)
        .map(|_| postgres::Client::connect(&pooler.url(DB), postgres::NoTls).expect("connects"))
        .collect();
    for client in &mut clients {
        let found = left_behind(client);
        assert_eq!(
            found.0, default_path,
            "search_path left on a pooled connection"
        );
        assert_eq!(
            found.1,
            Vec::<String>::new(),
            "settings left on a pooled connection"
        );
        assert_eq!(found.2, "25", "the application's unqualified names resolve");
    }
}

#[test]
fn apply_through_a_session_mode_pooler_leaves_no_setting_on_its_server_connections() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let pooler = session_pooler_without_reset(&db);
    let dir = scenario("shop");

    let output = apply(dir.path(), &pooler.url(DB), &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    assert_pool_untouched(&db, &pooler);
}

#[test]
fn an_apply_stopped_by_the_plan_lock_leaves_no_setting_on_the_pool_either() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let pooler = session_pooler_without_reset(&db);
    let dir = scenario("shop");
    let mut holder = db.client();
    holder
        .execute(
            "SELECT pg_advisory_lock($1, $2)",
            &[
                &PLAN_LOCK_CLASS,
                &planrun_engine::lock::plan_lock_key("shop"),
            ],
        )
        .expect("the plan lock is taken");

    let output = apply(dir.path(), &pooler.url(DB), &["--lock-wait", "0"]);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::LOCKED),
        "{}",
        describe(&output)
    );

    assert_pool_untouched(&db, &pooler);
}

#[test]
fn apply_directly_sets_nothing_for_other_sessions() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let default_path = db.scalar("SHOW search_path");

    let output = apply(dir.path(), &db.url, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    assert_eq!(db.scalar("SELECT count(*) FROM pg_db_role_setting"), "0");
    let found = left_behind(&mut db.client());
    assert_eq!(found.0, default_path);
    assert_eq!(found.1, Vec::<String>::new());
}

/// On `client`, in a transaction it leaves open: the search_path, the settings made
/// for the session other than those PgBouncer sets for every client, and how many
/// rows an unqualified `customers` has.
fn left_behind(client: &mut postgres::Client) -> (String, Vec<String>, String) {
    let rows = client
        .simple_query(
            "BEGIN;
             SELECT current_setting('search_path');
             SELECT coalesce(string_agg(name || ' = ' || setting, '; ' ORDER BY name), '')
             FROM pg_settings WHERE source = 'session' AND name NOT IN
               ('application_name', 'client_encoding', 'DateStyle', 'TimeZone',
                'IntervalStyle', 'standard_conforming_strings');
             SELECT count(*) FROM customers;",
        )
        .expect("the checks run");
    let values: Vec<String> = rows
        .iter()
        .filter_map(|message| match message {
            postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    let settings = values[1]
        .split("; ")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    (values[0].clone(), settings, values[2].clone())
}

/// A plan that is quick to apply beside the application: a table of its own in a
/// transaction, and an index on `chapters` built concurrently, outside one.
const BESIDE_THE_APP: &str = r#"
[plan]
name = "beside_the_app"
lock_timeout = "2s"

[[stage]]
id = "chapter_stats"
[[stage.step]]
sql = "CREATE TABLE chapter_stats (memoir_id bigint PRIMARY KEY, chapters int NOT NULL)"
[[stage.step]]
sql = "INSERT INTO chapter_stats SELECT memoir_id, count(*) FROM chapters GROUP BY memoir_id"

[[stage]]
id = "chapters_by_position"
depends_on = ["chapter_stats"]
transaction = false
[[stage.step]]
sql = "CREATE INDEX CONCURRENTLY chapters_by_position ON chapters (memoir_id, position)"
"#;

/// Writers through `writers_via`, readers through `readers_via`, while planrun
/// applies [`BESIDE_THE_APP`] through `planrun_via` (`None`: directly).
fn application_beside_planrun(writers_via: PoolMode, planrun_via: Option<PoolMode>) {
    let db = legacy_db(200);
    let session = TempPooler::start(&db.cluster, PoolMode::Session).expect("PgBouncer starts");
    let transaction =
        TempPooler::start(&db.cluster, PoolMode::Transaction).expect("PgBouncer starts");
    let via = |mode: PoolMode| match mode {
        PoolMode::Session => session.url(DB),
        _ => transaction.url(DB),
    };
    let readers_via = match writers_via {
        PoolMode::Session => PoolMode::Transaction,
        _ => PoolMode::Session,
    };
    let writers = AppSimulator::start(
        &via(writers_via),
        AppConfig {
            readers: 0,
            ..AppConfig::default()
        },
    );
    let readers = AppSimulator::start(
        &via(readers_via),
        AppConfig {
            writers: 0,
            ..AppConfig::default()
        },
    );
    let busy = |writes: u64, reads: u64| {
        writers.wait_until(Duration::from_secs(60), |p| p.committed_least() >= writes)
            && readers.wait_until(Duration::from_secs(60), |p| p.reads >= reads)
    };
    assert!(busy(3, 50), "the application started");

    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("plan.toml"), BESIDE_THE_APP).expect("the plan is written");
    let url = planrun_via.map_or_else(|| db.url.clone(), via);
    let output = apply(dir.path(), &url, &[]);
    let done = (writers.progress(), readers.progress());
    // The application goes on after planrun: what planrun left would show now.
    let after = busy(done.0.committed_least() + 3, done.1.reads + 50);
    let (writes, reads) = (writers.stop(), readers.stop());

    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(after, "the application went on after planrun");
    assert_quiet(&writes);
    assert_quiet(&reads);
    assert_eq!(writes.lost_writes(&mut db.client()), Vec::<String>::new());
}

fn assert_quiet(log: &AppLog) {
    let context = format!("{}\n{:#?}", log.summary(), log.first_errors);
    assert_eq!(log.failed_total(), 0, "{context}");
    assert_eq!(log.in_doubt, 0, "{context}");
    assert_eq!(log.failed_reads, 0, "{context}");
}

#[test]
fn an_application_through_poolers_loses_nothing_while_planrun_connects_directly() {
    application_beside_planrun(PoolMode::Transaction, None);
}

#[test]
fn an_application_through_poolers_loses_nothing_while_planrun_uses_the_session_pooler() {
    application_beside_planrun(PoolMode::Session, Some(PoolMode::Session));
}
