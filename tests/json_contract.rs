//! The JSON contract (issue 15): every JSON document planrun prints begins with the
//! common envelope (`format`, `format_version`, `planrun_version`, times, `outcome`,
//! `exit_code`) and matches its JSON Schema. The schemas are generated from the serde
//! types and checked in under `docs/schemas/`; here the checked-in files must equal
//! the generated ones, and the real output of each command, run against a throwaway
//! PostgreSQL, must validate against them.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use planrun_contract::format::{self, Format};
use planrun_engine::exit_codes;
use planrun_tests::{
    describe, legacy_db, memoir_plan_edited, planrun, planrun_on, repo_path, repo_root, scenario,
    spawn_apply, TestDb, CUSTOMERS,
};
use serde_json::Value;

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

const REGENERATE: &str = "UPDATE_SCHEMAS=1 cargo test -p planrun-tests --test json_contract";

#[test]
fn the_checked_in_schemas_are_the_ones_the_serde_types_generate() {
    let update = std::env::var("UPDATE_SCHEMAS").is_ok_and(|value| value == "1");
    let schemas = planrun_cli::json_schemas();
    for document in format::ALL {
        assert!(
            schemas.iter().any(|(format, _)| format == &document),
            "{} has no schema in planrun_cli::json_schemas()",
            document.name
        );
    }
    let mut stale = Vec::new();
    for (format, schema) in &schemas {
        let path = repo_path(&format.schema_path());
        let generated = serde_json::to_string_pretty(schema).unwrap() + "\n";
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &generated).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(generated.as_str()) {
            stale.push(format.schema_path());
        }
    }
    let known: Vec<String> = schemas
        .iter()
        .map(|(format, _)| format.schema_path())
        .collect();
    for entry in std::fs::read_dir(repo_path("docs/schemas")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let path = format!("docs/schemas/{name}");
        if !known.contains(&path) {
            stale.push(format!("{path} (no document has it: remove it)"));
        }
    }
    assert!(
        stale.is_empty(),
        "these checked-in schemas differ from what the serde types generate: {stale:#?}\n\
         regenerate them with `{REGENERATE}` and review the diff: a field removed, renamed \
         or changed in meaning needs the document's format_version raised \
         (crates/planrun-contract/src/format.rs, docs/exit-codes.md)"
    );
}

/// The checked-in schema of `format` (what a consumer of planrun's JSON reads).
fn schema(format: &Format) -> Value {
    let path = repo_path(&format.schema_path());
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; generate it with `{REGENERATE}`", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Asserts that `document` is a valid `format` document (formats such as `date-time`
/// checked too) of this planrun.
fn assert_valid(format: &Format, document: &Value, context: &str) {
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema(format))
        .unwrap_or_else(|e| panic!("{} is not a valid schema: {e}", format.name));
    let errors: Vec<String> = validator
        .iter_errors(document)
        .map(|error| format!("{}: {error}", error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not a valid {} document: {errors:#?}\n{document:#}\n{context}",
        format.name
    );
    assert_eq!(document["format"], format.name, "{context}");
    assert_eq!(document["format_version"], format.version, "{context}");
    assert_eq!(
        document["planrun_version"],
        env!("CARGO_PKG_VERSION"),
        "{context}"
    );
}

/// The document on `output`'s stdout: valid for `format`, ending `outcome`, its
/// `exit_code` the process's.
fn document(format: &Format, output: &Output, outcome: &str) -> Value {
    let document: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("one JSON document on stdout ({e}): {}", describe(output)));
    let context = describe(output);
    assert_valid(format, &document, &context);
    assert_eq!(document["outcome"], outcome, "{context}");
    assert_eq!(
        document["exit_code"].as_i64(),
        output.status.code().map(i64::from),
        "{context}"
    );
    document
}

fn run(dir: &Path, db: &TestDb, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    planrun_on(PLANRUN, dir, db, &all)
}

fn offline(dir: &Path, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    planrun(PLANRUN, dir, &all, &[])
}

fn ids(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect()
}

#[test]
fn check_transforms_and_graph_print_documents_that_match_their_schemas() {
    let root = repo_root();
    let check = document(
        &format::CHECK,
        &offline(&root, &["check", "plans/memoir.toml"]),
        "valid",
    );
    assert!(check.get("generated_at").is_some());
    assert_eq!(check["plan"], "memoir");
    assert_eq!(check["counts"]["stages"], 5);
    assert_eq!(check["order"][0]["id"], "sections_schema");
    assert_eq!(check["order"][0]["level"], 0);
    assert!(!check["lock_impact"].as_array().unwrap().is_empty());

    let invalid = offline(&root, &["check", "tests/plans/broken/many_problems.toml"]);
    assert_eq!(invalid.status.code(), Some(exit_codes::INVALID_PLAN));
    let error = document(&format::ERROR, &invalid, "invalid_plan");
    assert_eq!(error["command"], "check");
    let problems = error["problems"].as_array().unwrap();
    assert!(problems.len() > 1, "every problem: {error:#}");
    for problem in problems {
        assert!(problem["code"].as_str().unwrap().starts_with("plan::"));
        assert!(
            problem["labels"][0]["line"].as_u64().unwrap() >= 1,
            "{problem}"
        );
    }
    assert!(
        !String::from_utf8_lossy(&invalid.stderr).is_empty(),
        "the diagnostics still go to stderr"
    );

    let transforms = document(&format::TRANSFORMS, &offline(&root, &["transforms"]), "ok");
    let names: Vec<&str> = transforms["transforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|transform| transform["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"memoir.split_chapters"), "{transforms:#}");
    assert!(transforms.get("generated_at").is_none(), "a pure listing");

    let graph = document(
        &format::GRAPH,
        &offline(&root, &["graph", "plans/memoir.toml"]),
        "ok",
    );
    assert_eq!(graph["stages"].as_array().unwrap().len(), 5);
}

#[test]
fn a_plan_from_preview_to_status_prints_documents_that_match_their_schemas() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let dir = dir.path();
    let all = ["create_orders", "load_orders", "add_total"];

    let plan = document(
        &format::PLAN,
        &run(dir, &db, &["plan", "plan.toml"]),
        "would_apply",
    );
    assert_eq!(ids(&plan["committed"]), [] as [&str; 0]);
    let counted: u64 = plan["stage_counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|count| count.as_u64().unwrap())
        .sum();
    assert_eq!(counted, 3, "{plan:#}");

    let dry = document(
        &format::APPLY,
        &run(
            dir,
            &db,
            &["apply", "plan.toml", "--no-backup", "--dry-run"],
        ),
        "would_apply",
    );
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        ids(&dry["committed"]),
        [] as [&str; 0],
        "a dry run commits nothing"
    );

    let applied = document(
        &format::APPLY,
        &run(dir, &db, &["apply", "plan.toml", "--no-backup"]),
        "applied",
    );
    assert_eq!(ids(&applied["committed"]), all);
    assert_eq!(applied["stage_counts"], serde_json::json!({"applied": 3}));
    assert!(applied["duration_ms"].as_u64().is_some());
    assert!(
        applied["started_at"].as_str() <= applied["finished_at"].as_str(),
        "{applied:#}"
    );
    assert!(
        applied["summary"].as_array().is_some(),
        "the words stay beside the fields"
    );

    document(
        &format::APPLY,
        &run(dir, &db, &["apply", "plan.toml", "--no-backup"]),
        "nothing_to_do",
    );
    document(
        &format::PLAN,
        &run(dir, &db, &["plan", "plan.toml"]),
        "nothing_to_do",
    );
    document(
        &format::VERIFY,
        &run(dir, &db, &["verify", "plan.toml"]),
        "verified",
    );

    let status = document(
        &format::STATUS,
        &run(dir, &db, &["status", "plan.toml"]),
        "ok",
    );
    assert!(status.get("generated_at").is_some());
    assert!(status.get("started_at").is_none(), "a snapshot, not a span");
    for stage in status["stages"].as_array().unwrap() {
        let finished = stage["finished_at"].as_str().unwrap();
        assert!(
            finished.contains('T') && (finished.contains('+') || finished.contains('-')),
            "RFC 3339 with its offset: {finished}"
        );
    }
    let runs = status["recent_runs"].as_array().unwrap();
    assert_eq!(
        runs.len(),
        2,
        "the dry run's row rolled back with it: {status:#}"
    );
    assert_eq!(
        runs[1]["outcome"], "success",
        "the ledger keeps its own words"
    );

    document(
        &format::GRAPH,
        &run(dir, &db, &["graph", "plan.toml", "--status"]),
        "ok",
    );
}

#[test]
fn failures_print_documents_that_match_their_schemas() {
    let db = TestDb::new();
    let dir = scenario("shop");
    let dir = dir.path();

    // No customers table: the first stage's precondition fails.
    document(
        &format::PLAN,
        &run(dir, &db, &["plan", "plan.toml"]),
        "precondition_failed",
    );
    document(
        &format::APPLY,
        &run(dir, &db, &["apply", "plan.toml", "--no-backup"]),
        "precondition_failed",
    );

    db.execute(CUSTOMERS);
    let total = dir.join("03_total.sql");
    let good = std::fs::read_to_string(&total).unwrap();
    std::fs::write(&total, "UPDATE orders SET total = no_such_column;\n").unwrap();
    let failed = document(
        &format::APPLY,
        &run(dir, &db, &["apply", "plan.toml", "--no-backup"]),
        "step_failed",
    );
    assert_eq!(ids(&failed["committed"]), ["create_orders", "load_orders"]);
    assert_eq!(failed["stages"][2]["error"]["sqlstate"], "42703");

    std::fs::write(&total, &good).unwrap();
    document(
        &format::APPLY,
        &run(dir, &db, &["apply", "plan.toml", "--no-backup"]),
        "applied",
    );
    db.execute("UPDATE orders SET total = NULL WHERE id = 1");
    document(
        &format::VERIFY,
        &run(dir, &db, &["verify", "plan.toml"]),
        "verification_failed",
    );

    std::fs::write(&total, format!("{good}\nSELECT 'changed since it ran';\n")).unwrap();
    document(
        &format::PLAN,
        &run(dir, &db, &["plan", "plan.toml"]),
        "drift",
    );
    document(
        &format::APPLY,
        &run(dir, &db, &["apply", "plan.toml", "--no-backup"]),
        "drift",
    );

    let refused = document(
        &format::ERROR,
        &run(
            dir,
            &db,
            &[
                "apply",
                "plan.toml",
                "--no-backup",
                "--allow-drift",
                "--require-rehearsal",
                "no-such-report.json",
            ],
        ),
        "rehearsal_required",
    );
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("no-such-report.json"),
        "{refused:#}"
    );

    let not_batched = document(
        &format::ERROR,
        &run(dir, &db, &["reset", "add_total", "plan.toml"]),
        "usage",
    );
    assert_eq!(not_batched["command"], "reset");

    let unreachable = offline(
        dir,
        &[
            "status",
            "plan.toml",
            "--database-url",
            "postgresql://nobody:pw@127.0.0.1:1/none",
        ],
    );
    let error = document(&format::ERROR, &unreachable, "cannot_connect");
    assert_eq!(error["plan"], "shop");
    assert!(error.get("generated_at").is_some());
    assert!(
        !error.to_string().contains(":pw@"),
        "the password is redacted"
    );
}

#[test]
fn a_rehearsal_report_and_the_apply_inside_it_match_their_schemas() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let reports = tempfile::tempdir().unwrap();
    let output = run(
        dir.path(),
        &db,
        &[
            "rehearse",
            "plan.toml",
            "--report-dir",
            &reports.path().to_string_lossy(),
        ],
    );
    let printed = document(&format::REHEARSAL, &output, "applied");
    let file = std::fs::read_dir(reports.path())
        .unwrap()
        .next()
        .expect("a report file")
        .unwrap()
        .path();
    let written: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(printed, written, "--format json prints the report file");
    assert!(printed["duration_ms"].as_u64().is_some());
    assert_valid(&format::APPLY, &printed["run"], "the rehearsal's `run`");
    assert_eq!(printed["run"]["outcome"], "applied");
}

#[test]
fn reset_prints_a_document_that_matches_its_schema() {
    let db = legacy_db(1500);
    let plan = memoir_plan_edited(|text| {
        text.replace(
            r#"params = { on_invalid = "fail" }"#,
            r#"params = { on_invalid = "fail", mode = "batched", batch_size = 100, pause = "100ms" }"#,
        )
    });
    let mut child = spawn_apply(
        PLANRUN,
        plan.path(),
        "memoir.toml",
        &db,
        &["--until", "split_chapters"],
    );
    planrun_tests::wait_until(
        "a batch of the split has committed",
        Duration::from_secs(60),
        || {
            db.scalar("SELECT to_regclass('planrun.checkpoints') IS NOT NULL") == "t"
                && db.scalar("SELECT coalesce(max(batches), 0) > 0 FROM planrun.checkpoints") == "t"
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let reset = document(
        &format::RESET,
        &run(
            plan.path(),
            &db,
            &["reset", "split_chapters", "memoir.toml"],
        ),
        "reset",
    );
    assert_eq!(reset["stage"], "split_chapters");
    assert!(reset["batches"].as_i64().unwrap() > 0, "{reset:#}");
}

#[test]
fn the_schemas_reject_what_the_contract_rules_out() {
    let output = offline(&repo_root(), &["check", "plans/memoir.toml"]);
    let good = document(&format::CHECK, &output, "valid");
    let rejected = |what: &str, edit: &dyn Fn(&mut Value)| {
        let mut bad = good.clone();
        edit(&mut bad);
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema(&format::CHECK))
            .unwrap();
        assert!(!validator.is_valid(&bad), "{what} passed: {bad:#}");
    };
    rejected("another document's format", &|doc| {
        doc["format"] = "planrun.status".into()
    });
    rejected("an outcome this document cannot have", &|doc| {
        doc["outcome"] = "applied".into()
    });
    rejected("the old `success`", &|doc| {
        doc["outcome"] = "success".into()
    });
    rejected("a time that is not RFC 3339", &|doc| {
        doc["generated_at"] = "2025-03-01 14:05:09 CET".into()
    });
    rejected("no outcome", &|doc| {
        doc.as_object_mut().unwrap().remove("outcome");
    });
    rejected("no generated_at", &|doc| {
        doc.as_object_mut().unwrap().remove("generated_at");
    });
}

/// Every command that talks to a database, given an invalid plan, a plan that is not
/// there, or no database at all, still prints one `planrun.error` document on stdout
/// with `--format json`: a script reading stdout always learns why there is no report.
#[test]
fn commands_print_an_error_document_before_they_reach_the_database() {
    let root = repo_root();
    let broken = "tests/plans/broken/many_problems.toml";
    for command in ["apply", "plan", "status", "verify", "rehearse"] {
        let invalid = planrun(
            PLANRUN,
            &root,
            &[command, broken, "--format", "json"],
            &[("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")],
        );
        let error = document(&format::ERROR, &invalid, "invalid_plan");
        assert_eq!(error["command"], command, "{error:#}");
        assert!(error["problems"].as_array().unwrap().len() > 1, "{error:#}");
    }
    let missing = planrun(
        PLANRUN,
        &root,
        &["verify", "nope.toml", "--format", "json"],
        &[],
    );
    let error = document(&format::ERROR, &missing, "usage");
    assert!(
        error["error"].as_str().unwrap().contains("nope.toml"),
        "{error:#}"
    );
    let unreachable = planrun(
        PLANRUN,
        &root,
        &["status", "plans/memoir.toml", "--format", "json"],
        &[(
            "DATABASE_URL",
            "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2",
        )],
    );
    let error = document(&format::ERROR, &unreachable, "cannot_connect");
    assert_eq!(error["plan"], "memoir", "{error:#}");
}

/// Every (command, exit code) reached without a database, or with one that cannot be
/// reached, under `--format json`: exactly one document on stdout (the whole of
/// stdout parses as one), valid against its schema, its outcome the exit code's
/// (issue 26, item 10). The exits that need a database (0 of the commands below that
/// read one, 11 to 14, 18) are the other tests' of this file; `docs/exit-codes.md`
/// lists which test holds each pair.
///
/// | command | exits covered here |
/// |---|---|
/// | `check` | 0, 2 (unknown option, no such plan), 10 |
/// | `graph` | 0, 2 (unknown option, no such plan), 10, 16 (`--status`) |
/// | `transforms` | 0, 2 (unknown option) |
/// | `apply` | 2 (`--lock-wait soon`), 10, 16 |
/// | `plan`, `verify`, `rehearse` | 2 (unknown option), 10, 16 |
/// | `status` | 2 (no such plan), 10, 16 |
/// | `reset` | 2 (no STAGE, a stage that is not batched), 10 |
/// | none, `help` | 2 (unknown option) |
#[test]
fn every_command_prints_one_document_on_every_exit_reached_without_a_database() {
    let root = repo_root();
    let memoir = "plans/memoir.toml";
    let broken = "tests/plans/broken/many_problems.toml";
    let cases: &[(&[&str], &Format, &str)] = &[
        (&["check", memoir], &format::CHECK, "valid"),
        (&["check", memoir, "--bogus"], &format::ERROR, "usage"),
        (&["check", "nope.toml"], &format::ERROR, "usage"),
        (&["check", broken], &format::ERROR, "invalid_plan"),
        (&["graph", memoir], &format::GRAPH, "ok"),
        (&["graph", memoir, "--bogus"], &format::ERROR, "usage"),
        (&["graph", "nope.toml"], &format::ERROR, "usage"),
        (&["graph", broken], &format::ERROR, "invalid_plan"),
        (
            &["graph", memoir, "--status"],
            &format::ERROR,
            "cannot_connect",
        ),
        (&["transforms"], &format::TRANSFORMS, "ok"),
        (&["transforms", "--bogus"], &format::ERROR, "usage"),
        (
            &["apply", memoir, "--lock-wait", "soon"],
            &format::ERROR,
            "usage",
        ),
        (&["apply", broken], &format::ERROR, "invalid_plan"),
        (&["apply", memoir], &format::ERROR, "cannot_connect"),
        (&["plan", memoir, "--bogus"], &format::ERROR, "usage"),
        (&["plan", broken], &format::ERROR, "invalid_plan"),
        (&["plan", memoir], &format::ERROR, "cannot_connect"),
        (&["verify", memoir, "--bogus"], &format::ERROR, "usage"),
        (&["verify", broken], &format::ERROR, "invalid_plan"),
        (&["verify", memoir], &format::ERROR, "cannot_connect"),
        (&["rehearse", memoir, "--bogus"], &format::ERROR, "usage"),
        (&["rehearse", broken], &format::ERROR, "invalid_plan"),
        (&["rehearse", memoir], &format::ERROR, "cannot_connect"),
        (&["status", "nope.toml"], &format::ERROR, "usage"),
        (&["status", broken], &format::ERROR, "invalid_plan"),
        (&["status", memoir], &format::ERROR, "cannot_connect"),
        (&["reset"], &format::ERROR, "usage"),
        (
            &["reset", "split_chapters", memoir],
            &format::ERROR,
            "usage",
        ),
        (&["reset", "x", broken], &format::ERROR, "invalid_plan"),
        (&["--bogus"], &format::ERROR, "usage"),
        (&["help", "--bogus"], &format::ERROR, "usage"),
    ];
    let unreachable = "postgresql://nobody:pw@127.0.0.1:1/none?connect_timeout=2";
    for (args, format, outcome) in cases {
        for spelling in [&["--format", "json"][..], &["--format=json"]] {
            let mut all = args.to_vec();
            all.extend(spelling);
            let output = planrun(PLANRUN, &root, &all, &[("DATABASE_URL", unreachable)]);
            let error = document(format, &output, outcome);
            let command = match args[0] {
                "--bogus" => "planrun",
                command => command,
            };
            if format.name == format::ERROR.name {
                assert_eq!(error["command"], command, "{all:?}: {error:#}");
            }
            assert!(!error.to_string().contains(":pw@"), "{all:?}: {error:#}");
        }
    }
}

/// Without `--format json` a refused command line prints clap's message and nothing
/// on stdout, as before; with it, clap's words are the document's `error`, passwords
/// hidden.
#[test]
fn a_refused_command_line_is_a_document_only_when_json_was_asked_for() {
    let root = repo_root();
    let text = planrun(PLANRUN, &root, &["check", "--bogus"], &[]);
    assert_eq!(text.status.code(), Some(exit_codes::USAGE));
    assert!(text.stdout.is_empty(), "{}", describe(&text));
    assert!(String::from_utf8_lossy(&text.stderr).contains("--bogus"));

    let secret = "--database-url=postgresql://u:hunter2@db/x";
    let json = planrun(PLANRUN, &root, &["check", secret, "--format", "json"], &[]);
    let error = document(&format::ERROR, &json, "usage");
    let message = error["error"].as_str().unwrap();
    assert!(message.contains("--database-url"), "{error:#}");
    assert!(!message.contains("hunter2"), "{error:#}");
}

/// The exits that need a database in a particular state (issue 26, item 10): a ledger
/// newer than this planrun (1), the plan lock held by another session (15), a backup
/// that cannot be taken (17), a rehearsal over its lock budget (19), SIGINT mid-stage
/// (130), and `reset` of a batched stage against a database that cannot be reached
/// (16). Each prints exactly one document, valid against its schema, whose `exit_code`
/// is the process's.
#[test]
fn the_exits_that_need_a_prepared_database_print_one_document_each() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = scenario("shop");
    let dir = dir.path();

    // 15: another session holds the plan lock.
    let mut holder = db.client();
    holder
        .execute(
            "SELECT pg_catalog.pg_advisory_lock($1::int4, $2::int4)",
            &[
                &0x706c_616e_i32,
                &planrun_engine::lock::plan_lock_key("shop"),
            ],
        )
        .unwrap();
    let locked = run(
        dir,
        &db,
        &["apply", "plan.toml", "--no-backup", "--lock-wait", "0.2"],
    );
    document(&format::ERROR, &locked, "locked");
    drop(holder);

    // 17: a session holds ACCESS EXCLUSIVE on a table pg_dump must read.
    let mut blocker = db.client();
    blocker
        .batch_execute("BEGIN; LOCK TABLE customers IN ACCESS EXCLUSIVE MODE;")
        .unwrap();
    let backup = run(dir, &db, &["apply", "plan.toml"]);
    document(&format::ERROR, &backup, "backup_failed");
    blocker.batch_execute("ROLLBACK").unwrap();
    assert_eq!(db.scalar("SELECT to_regclass('orders') IS NULL"), "t");

    // 130: SIGINT while a stage's statement sleeps.
    std::fs::write(
        dir.join("02_load.sql"),
        "INSERT INTO orders (customer_id) SELECT id FROM customers;\nSELECT pg_sleep(60);\n",
    )
    .unwrap();
    let child = planrun_tests::planrun_command(
        PLANRUN,
        dir,
        &[
            "apply",
            "plan.toml",
            "--no-backup",
            "--format",
            "json",
            "--database-url",
            &db.url,
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    planrun_tests::wait_until("the load sleeps", Duration::from_secs(30), || {
        db.scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()",
        ) == "1"
    });
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let interrupted = document(
        &format::APPLY,
        &child.wait_with_output().unwrap(),
        "interrupted",
    );
    assert_eq!(ids(&interrupted["committed"]), ["create_orders"]);

    // 1: a ledger written by a newer planrun, which the read-only commands refuse too.
    db.execute("INSERT INTO planrun.ledger_version (version) VALUES (999)");
    for command in ["status", "plan", "verify"] {
        let refused = document(
            &format::ERROR,
            &run(dir, &db, &[command, "plan.toml"]),
            "error",
        );
        assert!(
            refused["error"].as_str().unwrap().contains("999"),
            "{command}: {refused:#}"
        );
    }
    let too_new = document(
        &format::ERROR,
        &run(dir, &db, &["apply", "plan.toml", "--no-backup"]),
        "error",
    );
    assert!(
        too_new["error"].as_str().unwrap().contains("999"),
        "{too_new:#}"
    );

    // 16: `reset` of a batched stage, the database unreachable.
    let plan = memoir_plan_edited(|text| {
        text.replace(
            r#"params = { on_invalid = "fail" }"#,
            r#"params = { on_invalid = "fail", mode = "batched" }"#,
        )
    });
    let unreachable = offline(
        plan.path(),
        &[
            "reset",
            "split_chapters",
            "memoir.toml",
            "--database-url",
            "postgresql://nobody:pw@127.0.0.1:1/none",
        ],
    );
    let error = document(&format::ERROR, &unreachable, "cannot_connect");
    assert_eq!(error["command"], "reset");
    assert!(
        !error.to_string().contains(":pw@"),
        "the password is redacted"
    );
}

/// 19: every stage passed on the copy, one held a lock over the plan's budget.
#[test]
fn a_rehearsal_over_its_budget_prints_its_report() {
    let db = TestDb::new();
    db.execute(CUSTOMERS);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plan.toml"),
        r#"[plan]
name = "budgeted"
lock_timeout = "2s"
lock_budget = { strongest = "share", blocks_reads = "100ms" }

[[stage]]
id = "widen"
[[stage.step]]
sql = "ALTER TABLE customers ALTER COLUMN name TYPE varchar(200); SELECT pg_sleep(0.4)"
"#,
    )
    .unwrap();
    let reports = tempfile::tempdir().unwrap();
    let over = document(
        &format::REHEARSAL,
        &run(
            dir.path(),
            &db,
            &[
                "rehearse",
                "plan.toml",
                "--report-dir",
                &reports.path().to_string_lossy(),
            ],
        ),
        "over_budget",
    );
    assert!(
        !over["stages"][0]["over_budget"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{over:#}"
    );
}
