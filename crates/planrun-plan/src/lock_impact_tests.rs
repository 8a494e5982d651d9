//! The plan's lock impact end to end, on plans parsed from text: `allow` on stages and
//! steps (and its errors), tables created by an earlier stage, and `require-lock-timeout`
//! for a transform's declared lock.

use std::path::Path;

use crate::dag::Dag;
use crate::model::{Plan, TransformCatalog};
use crate::problem::ProblemKind;

struct NoTransforms;

impl TransformCatalog for NoTransforms {
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
    fn check_params(&self, _: &str, _: &toml::Table) -> Vec<(String, String)> {
        Vec::new()
    }
}

fn parse(text: &str) -> Result<Plan, crate::PlanErrors> {
    Plan::parse(Path::new("plan.toml"), text.to_owned(), None)
}

const PLAN: &str = r#"
[plan]
name = "shop"
lock_timeout = "1s"

[[stage]]
id = "index"
allow = [{ rule = "require-concurrent-index-creation", reason = "orders holds 40 rows" }]
[[stage.step]]
sql = "CREATE INDEX orders_at ON orders (created_at)"

[[stage]]
id = "cleanup"
depends_on = ["index"]
[[stage.step]]
sql = "ALTER TABLE orders DROP COLUMN note"
allow = [{ rule = "ban-drop-column", reason = "the application stopped reading note in 4.2" }]
[[stage.step]]
sql = "ALTER TABLE orders DROP COLUMN legacy"
"#;

#[test]
fn stages_and_steps_accept_rules_with_a_reason() {
    let plan = parse(PLAN).unwrap();
    assert_eq!(
        plan.stages[0].allow[0].rule,
        "require-concurrent-index-creation"
    );
    assert_eq!(
        plan.stages[1].steps[0].allow[0].reason,
        "the application stopped reading note in 4.2"
    );
    let dag = Dag::build(&plan).unwrap();
    let impact = plan.lock_impact(&dag, &NoTransforms);
    let accepted: Vec<(&str, Option<&str>)> = impact
        .iter()
        .flat_map(|stage| &stage.findings)
        .map(|finding| (finding.rule.id(), finding.allowed.as_deref()))
        .collect();
    assert_eq!(
        accepted,
        [
            (
                "require-concurrent-index-creation",
                Some("orders holds 40 rows")
            ),
            (
                "ban-drop-column",
                Some("the application stopped reading note in 4.2")
            ),
            ("ban-drop-column", None),
        ]
    );
}

#[test]
fn an_unknown_rule_is_a_plan_error_at_its_name_with_the_nearest_id() {
    let text = PLAN.replace("\"ban-drop-column\"", "\"ban-drop-colum\"");
    let errors = parse(&text).unwrap_err();
    assert_eq!(errors.problems.len(), 1);
    let problem = &errors.problems[0];
    assert_eq!(problem.kind, ProblemKind::UnknownRule);
    assert_eq!(
        problem.help.as_deref(),
        Some("did you mean \"ban-drop-column\"?")
    );
    let span = problem.labels[0].0.clone();
    assert_eq!(&text[span], "\"ban-drop-colum\"");
}

#[test]
fn a_reason_is_required_and_not_blank() {
    let missing = PLAN.replace(", reason = \"orders holds 40 rows\"", "");
    let errors = parse(&missing).unwrap_err();
    assert_eq!(errors.problems[0].kind, ProblemKind::MissingKey);
    assert!(errors.problems[0].message.contains("`reason`"));

    let blank = PLAN.replace("orders holds 40 rows", " ");
    let errors = parse(&blank).unwrap_err();
    assert_eq!(errors.problems[0].kind, ProblemKind::InvalidValue);
    assert_eq!(
        errors.problems[0].message,
        "allowing `require-concurrent-index-creation` needs a reason"
    );
}

/// A transform that declares EXCLUSIVE on `orders`.
struct LockingTransform;

impl TransformCatalog for LockingTransform {
    fn names(&self) -> Vec<String> {
        vec!["archive".into()]
    }
    fn check_params(&self, _: &str, _: &toml::Table) -> Vec<(String, String)> {
        Vec::new()
    }
    fn locks(&self, _: &str, _: &toml::Table) -> Vec<crate::TableLock> {
        vec![crate::TableLock::new(
            "orders",
            crate::LockMode::Exclusive,
            "archive",
        )]
    }
}

#[test]
fn without_lock_timeout_a_stage_gets_one_finding_for_its_first_blocking_lock() {
    let text = r#"
[plan]
name = "no-timeout"
[[stage]]
id = "archive"
[[stage.step]]
transform = "archive"
[[stage.step]]
sql = "ALTER TABLE orders ADD COLUMN archived_at timestamptz; ALTER TABLE lines ADD COLUMN note text"
"#;
    let plan = parse(text).unwrap();
    let dag = Dag::build(&plan).unwrap();
    let impact = plan.lock_impact(&dag, &LockingTransform);
    let findings: Vec<(&str, &str)> = impact[0]
        .findings
        .iter()
        .map(|finding| (finding.rule.id(), finding.place.as_str()))
        .collect();
    assert_eq!(findings, [("require-lock-timeout", "step `archive`")]);

    let with_timeout = text.replace(
        "name = \"no-timeout\"",
        "name = \"t\"\nlock_timeout = \"1s\"",
    );
    let plan = parse(&with_timeout).unwrap();
    let impact = plan.lock_impact(&Dag::build(&plan).unwrap(), &LockingTransform);
    assert!(impact[0].findings.is_empty(), "{impact:?}");
}

#[test]
fn a_table_an_earlier_stage_created_raises_no_lock_finding() {
    let text = r#"
[plan]
name = "new"
lock_timeout = "1s"
[[stage]]
id = "create"
[[stage.step]]
sql = "CREATE TABLE shipments (id bigint PRIMARY KEY, order_id bigint)"
[[stage]]
id = "index"
depends_on = ["create"]
[[stage.step]]
sql = "CREATE INDEX shipments_order ON shipments (order_id); ALTER TABLE shipments ADD FOREIGN KEY (order_id) REFERENCES orders (id)"
"#;
    let plan = parse(text).unwrap();
    let dag = Dag::build(&plan).unwrap();
    let impact = plan.lock_impact(&dag, &NoTransforms);
    assert!(
        impact.iter().all(|stage| stage.findings.is_empty()),
        "{impact:?}"
    );
    assert!(impact[1].locks[0].new);
}

/// In a transactional stage a lock is held from the first statement that takes it to
/// the commit: a table that was new then stays new for the stage, however the stage
/// fills it afterwards, since no one else sees its rows before the commit. Outside a
/// transaction each statement commits, so a later lock is on a live table.
#[test]
fn a_table_new_when_the_stage_first_locks_it_stays_new_for_a_transactional_stage() {
    let plan_with = |transaction: bool| {
        format!(
            r#"
[plan]
name = "fill"
lock_timeout = "1s"
[[stage]]
id = "create"
[[stage.step]]
sql = "CREATE TABLE shipments (id bigint PRIMARY KEY, order_id bigint)"
[[stage]]
id = "fill"
depends_on = ["create"]
transaction = {transaction}
[[stage.step]]
sql = "INSERT INTO shipments SELECT id, id FROM orders"
[[stage.step]]
sql = "ALTER TABLE shipments ADD COLUMN note text"
"#
        )
    };
    for (transaction, new) in [(true, true), (false, false)] {
        let plan = parse(&plan_with(transaction)).unwrap();
        let dag = Dag::build(&plan).unwrap();
        let impact = plan.lock_impact(&dag, &NoTransforms);
        let shipments = impact[1]
            .locks
            .iter()
            .find(|lock| lock.relation == "shipments")
            .unwrap();
        assert_eq!(
            shipments.new, new,
            "transaction = {transaction}: {impact:?}"
        );
    }
}

#[test]
fn a_key_validated_after_the_commit_is_validated_in_a_later_transaction() {
    let plan = |after_commit: &str| {
        format!(
            "[plan]\nname = \"keys\"\nlock_timeout = \"1s\"\n[[stage]]\nid = \"key\"\n\
             [[stage.step]]\nsql = \"ALTER TABLE orders ADD CONSTRAINT orders_customer_fkey FOREIGN KEY (customer_id) REFERENCES customers(id) NOT VALID\"\n\
             [[stage.step]]\nsql = \"ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_fkey\"\n{after_commit}"
        )
    };
    let rules = |text: &str| -> Vec<String> {
        let plan = parse(text).unwrap();
        let dag = Dag::build(&plan).unwrap();
        plan.lock_impact(&dag, &NoTransforms)
            .iter()
            .flat_map(|stage| &stage.findings)
            .map(|finding| finding.rule.id().to_owned())
            .collect()
    };
    assert!(rules(&plan("")).contains(&"validate-constraint-in-same-transaction".to_owned()));
    assert!(!rules(&plan("after_commit = true\n"))
        .contains(&"validate-constraint-in-same-transaction".to_owned()));
}
