//! Lock analysis end to end: `planrun check` on a scenario plan shows each stage's
//! locks and findings (accepted or not) and still exits 0; and the corpus
//! (`tests/lock_corpus/`): every dangerous statement gets at least one planrun finding
//! and no safe one does, analysed as a stage with the plan's `lock_timeout` set. `docs/lock-analysis.md` compares the same corpus with squawk;
//! `PLANRUN_LOCK_CORPUS_OUT=<file>` writes planrun's findings per line for that table.

use std::fmt::Write as _;

use planrun_sql::{analyze_script, AnalysisContext};
use planrun_tests::{describe, planrun, repo_path};

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

#[test]
fn planrun_check_lists_locks_and_findings_per_stage_and_exits_0() {
    let dir = repo_path("tests/plans/scenarios/locks");
    let output = planrun(PLANRUN, &dir, &["check", "plan.toml"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let analysis = &stdout[stdout.find("  lock analysis").expect(&stdout)..];
    insta::assert_snapshot!(analysis);
}

#[test]
fn the_memoir_plan_has_no_lock_finding_left_to_review() {
    let output = planrun(
        PLANRUN,
        &repo_path(""),
        &["check", "plans/memoir.toml"],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    // Stage 2's and stage 5's keys are added NOT VALID and validated after their
    // stage's commit (`after_commit`), a later transaction: neither
    // `adding-foreign-key-constraint` nor `validate-constraint-in-same-transaction`
    // applies; left to accept are the drops of columns and stage 5's index on
    // planrun's own table of stage 4's digests, which no application writes.
    assert!(
        stdout.contains("lock findings: 0 to review, 4 accepted by `allow`"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("validate-constraint-in-same-transaction"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("adding-foreign-key-constraint"),
        "{stdout}"
    );
    // The analysis reads the DO block that adds stage 2's key, and sees the step that
    // validates it after the commit.
    assert!(
        stdout.contains("memoir/02_chapter_sections_foreign_key.sql line 10, memoir/02_validate_chapter_sections_fk.sql line 9"),
        "{stdout}"
    );
    // chapter_sections is new when stage 2 takes its lock, held to the commit: no one
    // else sees the rows the split writes before the key is added.
    assert!(
        stdout.contains(
            "ACCESS EXCLUSIVE public.chapter_sections [new, scans] by memoir.split_chapters"
        ),
        "{stdout}"
    );
}

/// `(line number, script)` of every non-comment line of a corpus file.
fn corpus(name: &str) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(repo_path(&format!("tests/lock_corpus/{name}"))).unwrap();
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with("--"))
        .map(|(index, line)| (index + 1, line.to_owned()))
        .collect()
}

/// The rule ids planrun reports for one script, as a fresh transactional stage.
fn findings(script: &str) -> Vec<String> {
    let mut context = AnalysisContext::new();
    context.begin_stage(true, true);
    let analyzed = analyze_script(script, &mut context).unwrap_or_else(|error| {
        panic!("{script}: {error:?}");
    });
    let mut ids: Vec<String> = analyzed
        .iter()
        .flat_map(|statement| &statement.impact.findings)
        .map(|finding| finding.rule.id().to_owned())
        .collect();
    ids.dedup();
    ids
}

/// The same dangerous statement on a table the stage has just created is no lock
/// finding: only the rules about column types, databases and CASCADE remain.
#[test]
fn a_dangerous_statement_on_a_table_created_just_before_raises_no_lock_finding() {
    for (line, script) in corpus("dangerous.sql") {
        let mut context = AnalysisContext::new();
        context.begin_stage(true, true);
        let analyzed = analyze_script(&script, &mut context).unwrap();
        let relations: Vec<String> = analyzed
            .iter()
            .flat_map(|statement| &statement.impact.findings)
            .filter_map(|finding| finding.relation.clone())
            .collect();
        let created: String = relations
            .iter()
            .map(|relation| format!("CREATE TABLE {relation} ();\n"))
            .collect();
        let mut context = AnalysisContext::new();
        context.begin_stage(true, true);
        let analyzed = analyze_script(&format!("{created}{script}"), &mut context).unwrap();
        let left: Vec<_> = analyzed
            .iter()
            .flat_map(|statement| &statement.impact.findings)
            .filter(|finding| !finding.rule.applies_to_new_tables())
            .collect();
        assert!(
            left.is_empty(),
            "dangerous.sql:{line}: {script} -> {left:?}"
        );
    }
}

#[test]
fn every_dangerous_statement_is_flagged_and_no_safe_one() {
    let dangerous = corpus("dangerous.sql");
    let safe = corpus("safe.sql");
    assert!(dangerous.len() >= 40 && safe.len() >= 40);
    let mut report = String::new();
    let mut wrong = Vec::new();
    for (file, lines, want_findings) in [
        ("dangerous.sql", &dangerous, true),
        ("safe.sql", &safe, false),
    ] {
        for (line, script) in lines {
            let ids = findings(script);
            let _ = writeln!(report, "{file}\t{line}\t{}", ids.join(","));
            if ids.is_empty() == want_findings {
                wrong.push(format!("{file}:{line}: {script} -> {ids:?}"));
            }
        }
    }
    if let Ok(out) = std::env::var("PLANRUN_LOCK_CORPUS_OUT") {
        std::fs::write(out, &report).unwrap();
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `planrun plan` weighs each open finding by the table on the target: the same
/// unconcurrent index is harmless on an empty `orders` and to review on one with rows.
#[test]
fn planrun_plan_weighs_findings_by_the_tables_on_the_target() {
    let plan_finding = |rows: i64| {
        let db = planrun_tests::TestDb::new();
        db.execute(&format!(
            "CREATE TABLE customers (id bigint PRIMARY KEY);
             CREATE TABLE coupons (id bigint PRIMARY KEY);
             CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint, coupon_id bigint,
                                  total integer, created_at timestamptz);
             INSERT INTO orders (id, total) SELECT g, g FROM generate_series(1, {rows}) g;
             ANALYZE orders;"
        ));
        let output = planrun(
            PLANRUN,
            &repo_path("tests/plans/scenarios/locks"),
            &["plan", "plan.toml", "--database-url", &db.url],
            &[],
        );
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find(|line| line.contains("[require-concurrent-index-creation]"))
            .unwrap_or_else(|| panic!("no weighed finding:\n{}", describe(&output)))
            .to_owned()
    };
    let empty = plan_finding(0);
    assert!(
        empty.contains("harmless here (new or empty table)"),
        "{empty}"
    );
    let live = plan_finding(500);
    assert!(live.trim_start().starts_with("review"), "{live}");
}

/// The old type decides whether `ALTER COLUMN ... TYPE` rewrites: offline `check`
/// cannot see it and flags the change for review; `plan` reads it from the target and
/// says which: widening `varchar(20)` to `varchar(40)` is free, narrowing `text` to
/// `varchar(20)` checks and rewrites every row under ACCESS EXCLUSIVE.
#[test]
fn a_type_change_is_flagged_offline_and_decided_by_plan_on_the_target() {
    let check_lines = |new_type: &str, old_type: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("plan.toml"),
            "[plan]\nname = \"types\"\nlock_timeout = \"1s\"\n\n[[stage]]\nid = \"narrow\"\n[[stage.step]]\nsql_file = \"change.sql\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("change.sql"),
            format!("ALTER TABLE big ALTER COLUMN note TYPE {new_type};\n"),
        )
        .unwrap();
        let check = planrun(PLANRUN, dir.path(), &["check", "plan.toml"], &[]);
        assert_eq!(check.status.code(), Some(0), "{}", describe(&check));
        let db = planrun_tests::TestDb::new();
        db.execute(&format!(
            "CREATE TABLE big (id bigint PRIMARY KEY, note {old_type});
             INSERT INTO big SELECT g, 'n' || g FROM generate_series(1, 100) g; ANALYZE big;"
        ));
        let plan = planrun(
            PLANRUN,
            dir.path(),
            &["plan", "plan.toml", "--database-url", &db.url],
            &[],
        );
        assert_eq!(plan.status.code(), Some(0), "{}", describe(&plan));
        (
            String::from_utf8_lossy(&check.stdout).into_owned(),
            String::from_utf8_lossy(&plan.stdout).into_owned(),
        )
    };

    let (offline, widened) = check_lines("varchar(40)", "varchar(20)");
    assert!(
        offline.contains("[changing-column-type]") && offline.contains("old type"),
        "check flags what it cannot see:\n{offline}"
    );
    let big = |plan: &str| {
        plan.lines()
            .filter(|line| line.contains("big"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        !widened.contains("[changing-column-type]") && !big(&widened).contains("rewrites"),
        "widening varchar is free:\n{widened}"
    );
    assert!(big(&widened).contains("ACCESS EXCLUSIVE"), "{widened}");

    let (_, narrowed) = check_lines("varchar(20)", "text");
    let lines = big(&narrowed);
    assert!(
        lines.contains("[changing-column-type]")
            && lines.contains("from text to varchar(20)")
            && lines.contains("ACCESS EXCLUSIVE big [rewrites"),
        "narrowing text rewrites under ACCESS EXCLUSIVE:\n{narrowed}"
    );
}

/// `lock_budget`: `check` names a lock stronger than the budget allows on a live
/// table, and during `apply` no lock attempt waits longer than the budget, however
/// long `lock_timeout` is (the application queues behind a waiting lock request).
#[test]
fn a_lock_budget_is_checked_offline_and_bounds_every_lock_wait() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plan.toml"),
        r#"[plan]
name = "budget"
lock_timeout = "10s"
lock_budget = { strongest = "share row exclusive", blocks_writes = "300ms" }
lock_retries = { attempts = 2, delay = "100ms" }

[[stage]]
id = "fill"
locks = [{ table = "customers", mode = "exclusive" }]
[[stage.step]]
sql = "UPDATE customers SET name = upper(name)"
"#,
    )
    .unwrap();
    let check = planrun(PLANRUN, dir.path(), &["check", "plan.toml"], &[]);
    assert_eq!(check.status.code(), Some(0), "{}", describe(&check));
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains("over budget: EXCLUSIVE on customers is stronger than the lock budget's SHARE ROW EXCLUSIVE"),
        "{text}"
    );

    let db = planrun_tests::TestDb::new();
    db.execute(planrun_tests::CUSTOMERS);
    let mut holder = db.client();
    let mut open = holder.transaction().unwrap();
    open.batch_execute("LOCK TABLE customers IN ROW EXCLUSIVE MODE")
        .unwrap();
    let started = std::time::Instant::now();
    let apply = planrun(
        PLANRUN,
        dir.path(),
        &[
            "apply",
            "plan.toml",
            "--no-backup",
            "--database-url",
            &db.url,
        ],
        &[],
    );
    let took = started.elapsed();
    open.rollback().unwrap();
    assert_eq!(
        apply.status.code(),
        Some(planrun_engine::exit_codes::STEP_FAILED),
        "{}",
        describe(&apply)
    );
    // Two attempts capped at 300 ms instead of two of 10 s.
    assert!(
        took < std::time::Duration::from_secs(8),
        "took {took:?}: {}",
        describe(&apply)
    );
}

/// A finding a stage accepts with `allow` is recorded in the ledger with the stage's
/// result: the rule, the reason and where, so that who accepted which risk is known
/// after the run, not only in the plan file of the day.
#[test]
fn accepted_findings_are_recorded_in_the_ledger_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plan.toml"),
        r#"[plan]
name = "accepted"
lock_timeout = "2s"

[[stage]]
id = "drop_name"
allow = [{ rule = "ban-drop-column", reason = "release 4.2 stopped reading customers.name" }]
[[stage.step]]
sql = "ALTER TABLE customers DROP COLUMN name"

[[stage]]
id = "count"
depends_on = ["drop_name"]
[[stage.step]]
sql = "SELECT count(*) FROM customers"
"#,
    )
    .unwrap();
    let db = planrun_tests::TestDb::new();
    db.execute(planrun_tests::CUSTOMERS);
    let apply = planrun(
        PLANRUN,
        dir.path(),
        &[
            "apply",
            "plan.toml",
            "--no-backup",
            "--database-url",
            &db.url,
        ],
        &[],
    );
    assert_eq!(apply.status.code(), Some(0), "{}", describe(&apply));
    let recorded = |stage: &str| {
        db.scalar(&format!(
            "SELECT accepted_findings::text FROM planrun.stage_results WHERE stage_id = '{stage}'"
        ))
    };
    let accepted: serde_json::Value = serde_json::from_str(&recorded("drop_name")).unwrap();
    assert_eq!(accepted[0]["rule"], "ban-drop-column", "{accepted:#}");
    assert_eq!(
        accepted[0]["reason"], "release 4.2 stopped reading customers.name",
        "{accepted:#}"
    );
    assert_eq!(accepted[0]["relation"], "customers", "{accepted:#}");
    assert_eq!(recorded("count"), "[]");
}
