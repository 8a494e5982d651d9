//! SQL files as PostgreSQL's parser reads them, run against a real PostgreSQL: the
//! constructs a `;` scanner cut apart, the psql idioms planrun refuses before anything
//! connects, a clean session per stage, concurrent index builds that a failure cannot
//! fool, one read of each file per run, and checksums that ignore layout; and what
//! `check` refuses because `apply` would fail on it (issue 26, item 11): a file that
//! is not UTF-8, a stage id or plan name longer than the ledger can index.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use planrun_engine::exit_codes;
use planrun_tests::{describe, planrun, spawn_apply, stdout, TestDb};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

/// A plan directory with `plan.toml` and the given files.
fn plan_dir(plan: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plan.toml"), plan).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn apply(dir: &Path, db: &TestDb, extra: &[&str]) -> Output {
    let mut args = vec![
        "apply",
        "plan.toml",
        "--no-backup",
        "--database-url",
        &db.url,
    ];
    args.extend(extra);
    planrun(PLANRUN, dir, &args, &[])
}

fn check(dir: &Path) -> Output {
    planrun(PLANRUN, dir, &["check", "plan.toml"], &[])
}

fn one_stage(file: &str) -> String {
    format!("[plan]\nname = \"sql\"\nlock_timeout = \"1s\"\n\n[[stage]]\nid = \"one\"\n[[stage.step]]\nsql_file = \"{file}\"\n")
}

/// Each of these was cut at an inner `;` (or a `$` taken for a quote) by the old
/// scanner and failed with a misleading syntax error; PostgreSQL's parser splits them
/// right and they apply.
#[test]
fn what_a_semicolon_scanner_cut_apart_applies_whole() {
    let db = TestDb::new();
    let sql = "CREATE TABLE notes (id int PRIMARY KEY, body text);
INSERT INTO notes VALUES (1, E'it\\'s; done');
CREATE FUNCTION twice(a int) RETURNS int LANGUAGE sql
BEGIN ATOMIC
  SELECT a + a;
END;
CREATE TABLE log (id int);
CREATE RULE keep AS ON INSERT TO notes DO ALSO (INSERT INTO log VALUES (NEW.id); INSERT INTO log VALUES (-NEW.id));
CREATE FUNCTION greet() RETURNS text LANGUAGE sql AS $grüß$ SELECT 'a;b' $grüß$;
CREATE TABLE t$x$ (a int);
INSERT INTO notes VALUES (2, 'two');
";
    let dir = plan_dir(&one_stage("tricky.sql"), &[("tricky.sql", sql)]);
    assert_eq!(
        check(dir.path()).status.code(),
        Some(0),
        "{}",
        describe(&check(dir.path()))
    );
    let output = apply(dir.path(), &db, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        db.scalar("SELECT body FROM notes WHERE id = 1"),
        "it's; done"
    );
    assert_eq!(db.scalar("SELECT twice(21)"), "42");
    assert_eq!(db.scalar("SELECT count(*) FROM log"), "2");
    assert_eq!(db.scalar("SELECT greet()"), "a;b");
    assert_eq!(db.scalar("SELECT to_regclass('t$x$') IS NOT NULL"), "t");
}

/// `BEGIN; ... COMMIT;` in a file used to commit the stage half way, and each re-run
/// applied it again. Now `check` refuses it at its line before anything connects, and
/// so does `apply`, with nothing run.
#[test]
fn a_files_own_begin_and_commit_are_refused_before_anything_runs() {
    let db = TestDb::new();
    db.execute(
        "CREATE TABLE accounts (id int, balance int); INSERT INTO accounts VALUES (1, 100);",
    );
    let sql = "UPDATE accounts SET balance = balance - 10;\nBEGIN;\nUPDATE accounts SET balance = balance - 1;\nCOMMIT;\n";
    let dir = plan_dir(&one_stage("debit.sql"), &[("debit.sql", sql)]);
    let output = check(dir.path());
    assert_eq!(
        output.status.code(),
        Some(exit_codes::INVALID_PLAN),
        "{}",
        describe(&output)
    );
    let text = describe(&output);
    assert!(text.contains("`debit.sql` line 2: BEGIN"), "{text}");
    assert!(text.contains("`debit.sql` line 4: COMMIT"), "{text}");
    for _ in 0..2 {
        let output = apply(dir.path(), &db, &[]);
        assert_eq!(
            output.status.code(),
            Some(exit_codes::INVALID_PLAN),
            "{}",
            describe(&output)
        );
    }
    assert_eq!(
        db.scalar("SELECT balance FROM accounts"),
        "100",
        "nothing debited"
    );
}

/// What remains of psql's client side is refused by `check` naming the line: COPY
/// to psql's output, meta-commands other than `\set` and `\unset` (saying what they
/// do), variables that are not set.
#[test]
fn psql_only_input_is_refused_at_its_line() {
    let cases = [
        (
            "CREATE TABLE t (a int, b text);\nCOPY t (a, b) TO stdout;\n",
            "line 2: COPY ... TO STDOUT",
        ),
        (
            "SELECT 1;\n\\if :flag\nSELECT 2;\n\\endif\n",
            "line 2, column 1: `\\if` is a psql meta-command that opens, continues or closes psql's conditional block",
        ),
        (
            "SELECT 1 AS one \\gset\n",
            "line 1, column 17: `\\gset` is a psql meta-command that stores a query's result",
        ),
        (
            "SELECT 1;\n\\i other.sql\n",
            "line 2, column 1: `\\i` is a psql",
        ),
        (
            "SELECT 1;\nSELECT * FROM pg_class WHERE relname = :'name';\n",
            "line 2, column 40: `:'name'` is a psql variable that is not set",
        ),
    ];
    for (sql, expected) in cases {
        let dir = plan_dir(&one_stage("psql.sql"), &[("psql.sql", sql)]);
        let output = check(dir.path());
        assert_eq!(
            output.status.code(),
            Some(exit_codes::INVALID_PLAN),
            "{sql}"
        );
        // miette wraps long messages; the words are what a reader sees.
        let words = |text: &str| {
            text.split_whitespace()
                .filter(|word| *word != "|")
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert!(
            words(&describe(&output)).contains(&words(expected)),
            "{expected}\n{}",
            describe(&output)
        );
    }
}

/// COPY rows are sent as psql sends them; a row the server refuses is named by its
/// line in the file, with the row, and nothing of the stage commits.
#[test]
fn copy_rows_apply_and_a_bad_row_is_named_by_its_line() {
    let db = TestDb::new();
    let sql = "CREATE TABLE t (a int PRIMARY KEY, b text);\nCOPY t (a, b) FROM stdin;\n1\tone\n2\t\\N\n\\.\nINSERT INTO t VALUES (3, 'three');\n";
    let dir = plan_dir(&one_stage("rows.sql"), &[("rows.sql", sql)]);
    let output = apply(dir.path(), &db, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        db.scalar("SELECT string_agg(a || '=' || coalesce(b, 'null'), ',' ORDER BY a) FROM t"),
        "1=one,2=null,3=three"
    );

    let db = TestDb::new();
    let bad = "CREATE TABLE t (a int PRIMARY KEY, b text);\nCOPY t (a, b) FROM stdin;\n1\tone\ntwo\t2\n\\.\n";
    let dir = plan_dir(&one_stage("rows.sql"), &[("rows.sql", bad)]);
    let output = apply(dir.path(), &db, &[]);
    let text = describe(&output);
    assert_ne!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("line 4"),
        "the bad row's line in the file\n{text}"
    );
    assert!(text.contains("two\t2") || text.contains("two"), "{text}");
    assert!(text.contains("22P02"), "{text}");
    assert_eq!(db.scalar("SELECT to_regclass('t') IS NULL"), "t");
}

/// An enum value added and used in one transactional stage fails with 55P04 at run
/// time; `check` says so first, naming both places.
#[test]
fn an_enum_value_added_and_used_in_one_stage_is_refused_by_check() {
    let sql = "CREATE TYPE mood AS ENUM ('sad');\nALTER TYPE mood ADD VALUE 'happy';\nCREATE TABLE m (x mood DEFAULT 'happy');\n";
    let dir = plan_dir(&one_stage("enum.sql"), &[("enum.sql", sql)]);
    let output = check(dir.path());
    assert_eq!(output.status.code(), Some(exit_codes::INVALID_PLAN));
    let text = describe(&output);
    assert!(
        text.contains("`enum.sql` line 3 uses enum value 'happy', which `enum.sql` line 2 adds"),
        "{text}"
    );
}

/// A file's `SET search_path` or `SET TimeZone` does not reach the next stage: each
/// stage starts from a clean session, as psql starts each file.
#[test]
fn a_files_session_settings_do_not_leak_into_later_stages() {
    let db = TestDb::new();
    let default_zone = db.scalar("SHOW TimeZone");
    let plan = String::from(
        "[plan]\nname = \"session\"\n\n[[stage]]\nid = \"first\"\n[[stage.step]]\nsql_file = \"set.sql\"\n
[[stage]]\nid = \"second\"\ndepends_on = [\"first\"]\n[[stage.step]]\nsql = \"CREATE TABLE seen AS SELECT current_setting('search_path') AS path, current_setting('TimeZone') AS zone\"\n"
    );
    let dir = plan_dir(
        &plan,
        &[("set.sql", "CREATE SCHEMA other;\nSET search_path = other, public;\nSET TimeZone = 'Asia/Tokyo';\nCREATE TABLE in_other (a int);\n")],
    );
    let output = apply(dir.path(), &db, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        db.scalar("SELECT to_regclass('other.in_other') IS NOT NULL"),
        "t"
    );
    assert_eq!(
        db.scalar("SELECT path FROM public.seen"),
        "\"$user\", public"
    );
    assert_eq!(db.scalar("SELECT zone FROM public.seen"), default_zone);
}

/// The documented concurrent-index pattern: the first build fails on its lock timeout
/// (a writer's transaction is open) and leaves an invalid index. The old planrun's
/// next apply found it with IF NOT EXISTS and recorded the stage as applied. Now the
/// next apply drops the invalid index and builds it again, valid.
#[test]
fn an_invalid_index_left_by_a_failed_concurrent_build_is_never_recorded_as_applied() {
    let db = TestDb::new();
    db.execute("CREATE TABLE items (id int, sku text); INSERT INTO items SELECT g, 's' || g FROM generate_series(1, 1000) g;");
    let plan = "[plan]\nname = \"index\"\nlock_timeout = \"500ms\"\n\n[[stage]]\nid = \"sku_index\"\ntransaction = false\n[[stage.step]]\nsql = \"CREATE INDEX CONCURRENTLY IF NOT EXISTS items_sku ON items (sku)\"\n";
    let dir = plan_dir(plan, &[]);
    let mut writer = db.client();
    writer
        .batch_execute("BEGIN; INSERT INTO items VALUES (0, 'open');")
        .unwrap();
    let output = apply(dir.path(), &db, &[]);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::STEP_FAILED),
        "{}",
        describe(&output)
    );
    assert_eq!(
        db.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_sku'::regclass"),
        "f",
        "the failed build left an invalid index"
    );
    writer.batch_execute("COMMIT").unwrap();

    let output = apply(dir.path(), &db, &["-v"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        stdout(&output).contains("dropped the invalid index"),
        "{}",
        describe(&output)
    );
    assert_eq!(
        db.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_sku'::regclass"),
        "t"
    );
}

/// A SQL file edited while the run waits before its stage: what runs is what was
/// read (and checksummed) when the run started, and the next `plan` shows the edit as
/// drift.
#[test]
fn each_sql_file_is_read_once_per_run() {
    let db = TestDb::new();
    let plan = "[plan]\nname = \"once\"\n\n[[stage]]\nid = \"gate\"\n[[stage.step]]\nsql = \"SELECT pg_advisory_xact_lock(777)\"\n
[[stage]]\nid = \"create\"\ndepends_on = [\"gate\"]\n[[stage.step]]\nsql_file = \"create.sql\"\n";
    let dir = plan_dir(
        plan,
        &[("create.sql", "CREATE TABLE first_version (a int);\n")],
    );
    let mut gate = db.client();
    gate.batch_execute("SELECT pg_advisory_lock(777)").unwrap();
    let child = spawn_apply(PLANRUN, dir.path(), "plan.toml", &db, &[]);
    let waiting =
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 777 AND NOT granted";
    for _ in 0..600 {
        if db.scalar(waiting) == "1" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(db.scalar(waiting), "1", "planrun waits at the gate");
    std::fs::write(
        dir.path().join("create.sql"),
        "CREATE TABLE second_version (a int);\n",
    )
    .unwrap();
    gate.batch_execute("SELECT pg_advisory_unlock(777)")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        db.scalar("SELECT to_regclass('first_version') IS NOT NULL"),
        "t"
    );
    assert_eq!(
        db.scalar("SELECT to_regclass('second_version') IS NULL"),
        "t"
    );
    assert!(db
        .scalar("SELECT definition::text FROM planrun.stage_results WHERE stage_id = 'create' ORDER BY id DESC LIMIT 1")
        .contains("first_version"));
    let plan_output = planrun(
        PLANRUN,
        dir.path(),
        &["plan", "plan.toml", "--database-url", &db.url],
        &[],
    );
    assert!(
        stdout(&plan_output).contains("drift"),
        "{}",
        describe(&plan_output)
    );
}

/// An edit to comments or white space of an applied SQL file is no change; any other
/// edit is drift.
#[test]
fn only_an_edit_to_what_the_sql_says_is_drift() {
    let db = TestDb::new();
    let dir = plan_dir(
        &one_stage("t.sql"),
        &[("t.sql", "CREATE TABLE t (a int);\n")],
    );
    let output = apply(dir.path(), &db, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));

    std::fs::write(
        dir.path().join("t.sql"),
        "-- the orders table\nCREATE TABLE t (\n    a int  /* the key */\n);\n",
    )
    .unwrap();
    let output = apply(dir.path(), &db, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        stdout(&output).contains("nothing to do"),
        "{}",
        describe(&output)
    );

    std::fs::write(dir.path().join("t.sql"), "CREATE TABLE t (a bigint);\n").unwrap();
    let output = apply(dir.path(), &db, &[]);
    assert_eq!(
        output.status.code(),
        Some(exit_codes::DRIFT),
        "{}",
        describe(&output)
    );
}

/// Issue 20: `sql_dirs = ["/"]` in a plan let `check` read a 0600 file of the
/// operator's and print it inside a syntax error. The plan alone never widens where
/// SQL files may live: the key is refused, the file (named directly or through a
/// symbolic link beside the plan) is not read, and its content never shown. The
/// operator widens it on the command line with `--allow-sql-dir`.
#[test]
fn a_plan_cannot_widen_its_own_sql_confinement() {
    let private = tempfile::tempdir().unwrap();
    let secret = private.path().join("secret-file");
    std::fs::write(&secret, "MARKER_5f1e9c is not sql\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let step = |file: &str| format!("[[stage.step]]\nsql_file = \"{file}\"\n");
    let stage = format!(
        "\n[[stage]]\nid = \"one\"\n{}{}",
        step(secret.to_str().unwrap()),
        step("link.sql")
    );
    let dir = plan_dir(
        &format!("[plan]\nname = \"sql\"\nsql_dirs = [\"/\"]\n{stage}"),
        &[],
    );
    std::os::unix::fs::symlink(&secret, dir.path().join("link.sql")).unwrap();

    let output = check(dir.path());
    assert_eq!(
        output.status.code(),
        Some(exit_codes::INVALID_PLAN),
        "{}",
        describe(&output)
    );
    assert!(
        !describe(&output).contains("MARKER_5f1e9c"),
        "the file's content was shown: {}",
        describe(&output)
    );
    assert!(
        describe(&output).contains("--allow-sql-dir"),
        "the refusal says how the operator allows a directory: {}",
        describe(&output)
    );

    std::fs::write(&secret, "SELECT 1;\n").unwrap();
    std::fs::write(
        dir.path().join("plan.toml"),
        format!("[plan]\nname = \"sql\"\n{stage}"),
    )
    .unwrap();
    let graph = planrun(PLANRUN, dir.path(), &["graph", "plan.toml"], &[]);
    assert_eq!(
        graph.status.code(),
        Some(exit_codes::INVALID_PLAN),
        "graph (whose --status reads every SQL file) confines them too: {}",
        describe(&graph)
    );
    let allow = private.path().to_str().unwrap();
    let allowed = planrun(
        PLANRUN,
        dir.path(),
        &["check", "plan.toml", "--allow-sql-dir", allow],
        &[],
    );
    assert_eq!(allowed.status.code(), Some(0), "{}", describe(&allowed));
}

/// A SQL file in Latin-1 (`é` as the single byte 0xe9): `check` refused nothing and
/// `apply` failed reading it (exit 1). Now `check` names the file, the byte and its
/// line, with a label on the plan's `sql_file`.
#[test]
fn check_refuses_a_sql_file_that_is_not_utf8() {
    let dir = plan_dir(&one_stage("latin1.sql"), &[]);
    let mut latin1 = b"SELECT 1;\nSELECT 'caf".to_vec();
    latin1.extend([0xe9, b'\'', b';', b'\n']);
    std::fs::write(dir.path().join("latin1.sql"), latin1).unwrap();

    let output = planrun(
        PLANRUN,
        dir.path(),
        &["check", "plan.toml", "--format", "json"],
        &[],
    );
    assert_eq!(
        output.status.code(),
        Some(exit_codes::INVALID_PLAN),
        "{}",
        describe(&output)
    );
    let error: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let problem = &error["problems"][0];
    assert_eq!(problem["code"], "plan::sql_not_utf8", "{error:#}");
    let message = problem["message"].as_str().unwrap();
    assert!(
        message.contains("`latin1.sql`") && message.contains("byte 21 (line 2)"),
        "{message}"
    );
    assert_eq!(
        problem["labels"][0]["line"], 8,
        "the sql_file line: {error:#}"
    );
    assert!(
        problem["labels"][0]["text"]
            .as_str()
            .unwrap()
            .contains("byte 21"),
        "{error:#}"
    );
}

/// Stage ids and plan names are indexed together in the ledger, whose b-tree entries
/// hold at most 2,704 bytes: a 3,000-character id passed `check` and failed `apply`
/// with exit 13. The longest allowed (200 characters, each) applies, hard to compress
/// as they are; one character more is refused by `check`, with a label on it.
#[test]
fn names_are_refused_by_check_over_the_length_the_ledger_indexes() {
    let noise = |seed: u64, len: usize| -> String {
        let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.";
        let mut state = seed;
        let mut text = String::from("s");
        while text.len() < len {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push(alphabet[(state >> 33) as usize % alphabet.len()] as char);
        }
        text
    };
    let plan = |name: &str, id: &str| {
        format!("[plan]\nname = \"{name}\"\n\n[[stage]]\nid = \"{id}\"\n[[stage.step]]\nsql = \"SELECT 1\"\n")
    };
    let longest = plan_dir(&plan(&noise(1, 200), &noise(2, 200)), &[]);
    assert!(
        check(longest.path()).status.success(),
        "{}",
        describe(&check(longest.path()))
    );
    let db = TestDb::new();
    let applied = apply(longest.path(), &db, &[]);
    assert!(applied.status.success(), "{}", describe(&applied));

    for (name, id, what) in [
        (
            noise(1, 20),
            noise(3, 201),
            "stage id is 201 characters long",
        ),
        (
            noise(4, 201),
            noise(2, 20),
            "plan name is 201 characters long",
        ),
    ] {
        let dir = plan_dir(&plan(&name, &id), &[]);
        let output = check(dir.path());
        assert_eq!(
            output.status.code(),
            Some(exit_codes::INVALID_PLAN),
            "{}",
            describe(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(what) && stderr.contains("201 characters"),
            "{stderr}"
        );
    }
}
