//! The lock keys of a plan (`locks`, `lock_retries`), checks placed after a step
//! (`after_step`) and computed captures (`expr`): read into the model when right,
//! each mistake reported offline with a span on it.

use std::time::Duration;

use planrun_plan::{LockMode, ProblemKind};

mod support;

use support::parse;

#[test]
fn locks_and_their_retry_schedule_are_read_per_plan_and_stage() {
    let plan = parse(
        r#"
[plan]
name = "p"
lock_retries = { attempts = 3, delay = "250ms" }

[[stage]]
id = "move"
locks = [{ table = "public.orders", mode = "exclusive" },
         { table = "archive", mode = "ACCESS EXCLUSIVE" }]
lock_retries = { attempts = 1 }
[[stage.step]]
name = "copy"
sql = "INSERT INTO archive SELECT * FROM orders"
[[stage.step]]
sql = "ALTER TABLE orders DROP COLUMN legacy"
[[stage.verify]]
name = "copied"
sql = "SELECT count(*) FROM archive"
expect = "> 0"
after_step = "copy"
"#,
    )
    .unwrap();
    let retries = plan.lock_retries.as_ref().unwrap();
    assert_eq!(
        (retries.attempts, retries.delay),
        (3, Duration::from_millis(250))
    );
    let stage = &plan.stages[0];
    let locks: Vec<(&str, LockMode)> = stage
        .locks
        .iter()
        .map(|lock| (lock.table.as_str(), lock.mode))
        .collect();
    assert_eq!(
        locks,
        [
            ("public.orders", LockMode::Exclusive),
            ("archive", LockMode::AccessExclusive)
        ]
    );
    assert_eq!(stage.lock_retries.as_ref().unwrap().attempts, 1);
    assert_eq!(stage.verify[0].after_step.as_ref().unwrap().0, "copy");
}

#[test]
fn every_lock_mistake_is_reported_with_its_span() {
    let problems = parse(
        r#"
[plan]
name = "p"
lock_retries = { attempts = 0, delay = "soon" }

[[stage]]
id = "concurrently"
transaction = false
locks = [{ table = "orders", mode = "exclusiv" }, { table = "items", mode = "share" }]
[[stage.step]]
sql = "CREATE INDEX CONCURRENTLY i ON items (id)"
[[stage.verify]]
name = "there"
sql = "SELECT 1"
expect = 1
after_step = "sql#2"
"#,
    )
    .unwrap_err();
    let kinds_and_labels: Vec<(ProblemKind, String)> = problems
        .into_iter()
        .map(|(kind, labels)| (kind, labels.join(" | ")))
        .collect();
    assert!(
        kinds_and_labels.contains(&(ProblemKind::InvalidValue, "0".into())),
        "{kinds_and_labels:?}"
    );
    assert!(kinds_and_labels.contains(&(ProblemKind::InvalidValue, "\"soon\"".into())));
    assert!(kinds_and_labels.contains(&(ProblemKind::InvalidValue, "\"exclusiv\"".into())));
    assert!(kinds_and_labels.contains(&(
        ProblemKind::InvalidValue,
        "{ table = \"items\", mode = \"share\" }".into()
    )));
    assert!(kinds_and_labels.contains(&(ProblemKind::InvalidValue, "\"sql#2\"".into())));
}

#[test]
fn a_computed_capture_reads_only_captures_defined_before_it() {
    let plan = parse(
        r#"
[plan]
name = "p"

[[stage]]
id = "count"
[[stage.capture]]
names = ["before", "quarantined"]
sql = "SELECT 1, 2"
[[stage.capture]]
name = "moved"
expr = "{before} - {quarantined}"
[[stage.step]]
sql = "SELECT 1"
"#,
    )
    .unwrap();
    assert_eq!(plan.stages[0].captures[1].names[0].0, "moved");
    assert!(plan.stages[0].captures[1].expr.is_some());

    let problems = parse(
        r#"
[plan]
name = "p"

[[stage]]
id = "count"
[[stage.capture]]
name = "moved"
expr = "{nowhere} - 1"
[[stage.capture]]
name = "other"
expr = "> 3"
sql = "SELECT 1"
[[stage.step]]
sql = "SELECT 1"
"#,
    )
    .unwrap_err();
    let kinds: Vec<ProblemKind> = problems.iter().map(|(kind, _)| *kind).collect();
    assert!(
        kinds.contains(&ProblemKind::UndefinedCapture),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|(kind, labels)| *kind == ProblemKind::InvalidValue && labels == &["\"> 3\""]),
        "{problems:?}"
    );
}
