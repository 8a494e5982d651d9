//! The pages with hostile names and statements in them: every value arrives escaped,
//! every stage is drawn, and the timeline draws what the locks blocked.

use std::collections::BTreeMap;
use std::path::Path;

use planrun_plan::{Dag, Plan};
use planrun_report::{CheckResult, Command, RunReport, StageReport, StageStatus, StepReport};

use crate::{graph_svg, run_html};

const HOSTILE: &str = "<script>alert('x')</script>\"&";

fn plan() -> Plan {
    let text = format!(
        r#"
[plan]
name = "shop"
lock_budget = {{ blocks_reads = "1s", blocks_writes = "30s" }}

[[stage]]
id = "first"
[[stage.step]]
sql = "SELECT 1"

[[stage]]
id = "middle"
title = "{}"
depends_on = ["first"]
[[stage.step]]
sql = "SELECT 2"

[[stage]]
id = "last"
depends_on = ["first", "middle"]
[[stage.step]]
sql = "SELECT 3"
"#,
        toml_escape(HOSTILE)
    );
    Plan::parse(Path::new("plans/shop.toml"), text, None).expect("the test plan is valid")
}

fn toml_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

fn report(plan: &Plan) -> RunReport {
    let mut report = RunReport::new(
        Command::Apply,
        "shop",
        &"postgresql://db",
        &"--database-url",
        false,
    );
    for stage in &plan.stages {
        let mut stage_report =
            StageReport::new(&stage.id, stage.title.as_deref(), StageStatus::Applied);
        stage_report.duration_ms = 2_000;
        stage_report.rows_quarantined = 7;
        stage_report.locks.push(planrun_report::HeldLock {
            table: format!("public.{HOSTILE}"),
            mode: "ACCESS EXCLUSIVE".into(),
            declared_by: "stage".into(),
            attempts: 1,
            waited_ms: 0,
        });
        stage_report.steps.push(StepReport {
            name: HOSTILE.into(),
            kind: "sql".into(),
            duration_ms: 1_500,
            rows_affected: 3,
            rows_read: None,
            rows_quarantined: Some(7),
            notes: Vec::new(),
        });
        stage_report.verifications.push(CheckResult::error(
            HOSTILE,
            "= 1".into(),
            format!("syntax error at {HOSTILE}"),
        ));
        report.stages.push(stage_report);
    }
    report
}

#[test]
fn a_hostile_stage_name_and_statement_arrive_escaped() {
    let plan = plan();
    let dag = Dag::build(&plan).unwrap();
    let html = run_html(&report(&plan), &plan, &dag);
    assert!(!html.contains("<script"), "unescaped markup in the page");
    assert!(
        !html.contains("alert('x')"),
        "an unescaped quote in the page"
    );
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"));
    assert!(
        !html.contains(" src=") && !html.contains("href=\"http"),
        "something fetched"
    );
}

#[test]
fn every_stage_has_its_box_its_section_and_its_timeline() {
    let plan = plan();
    let dag = Dag::build(&plan).unwrap();
    let html = run_html(&report(&plan), &plan, &dag);
    for stage in &plan.stages {
        let id = crate::escape::escape(&stage.id);
        assert!(
            html.contains(&format!("<g class=\"stage\" data-stage=\"{id}\">")),
            "{id}: no box"
        );
        assert!(
            html.contains(&format!("data-stage=\"{id}\">\n<h2>")),
            "{id}: no section"
        );
        assert!(
            html.contains(&format!("lock timeline of stage {id}")),
            "{id}: no timeline"
        );
    }
    assert_eq!(html.matches("<section class=\"stage\"").count(), 3);
    assert_eq!(html.matches("class=\"bar lock-bar blocks-all\"").count(), 3);
    assert_eq!(html.matches("class=\"budget-line\"").count(), 6);
    assert!(html.contains("@media print"));
    assert!(html.contains("break-before: page"));
}

#[test]
fn the_graph_has_an_edge_per_dependency() {
    let plan = plan();
    let dag = Dag::build(&plan).unwrap();
    let svg = graph_svg(&plan, &dag, &BTreeMap::new());
    assert_eq!(svg.matches("<path class=\"edge\"").count(), 3);
    assert_eq!(svg.matches("<g class=\"stage\"").count(), 3);
    assert!(svg.contains("data-from=\"first\" data-to=\"last\""));
}

fn target(name: &str, state: &str, report: Option<RunReport>) -> planrun_report::TargetRun {
    planrun_report::TargetRun {
        name: name.into(),
        host: "db1:5432".into(),
        state: state.into(),
        outcome: None,
        exit_code: None,
        run_id: report.as_ref().map(|_| 7),
        duration_ms: 1_200,
        revisits: 0,
        message: (state == "failed").then(|| format!("stage `first`: {HOSTILE}")),
        stage_durations_ms: BTreeMap::new(),
        longest_lock_wait_ms: 900,
        replica_lag_ms: None,
        gate_checks: vec![planrun_report::GateCheck {
            limit: "max_lock_wait".into(),
            stage: None,
            measured_ms: 900,
            limit_ms: 500,
            canary_ms: None,
            passed: false,
        }],
        report: report.map(Box::new),
    }
}

#[test]
fn a_fleet_page_shows_each_target_by_wave_escaped_and_links_those_that_ran() {
    let plan = plan();
    let dag = Dag::build(&plan).unwrap();
    let wave = |name: &str, gate: &str, targets| planrun_report::WaveReport {
        name: name.into(),
        gate: gate.into(),
        gate_failures: vec![format!("{HOSTILE}: failed")],
        limits: planrun_report::GateLimits {
            max_lock_wait_ms: Some(500),
            ..Default::default()
        },
        targets,
    };
    let report = planrun_report::FleetReport {
        plan: "shop".into(),
        fleet: "fleet.toml".into(),
        dry_run: false,
        waves: vec![
            wave(
                "canary",
                "failed",
                vec![target(HOSTILE, "failed", Some(report(&plan)))],
            ),
            wave(
                "rest",
                "not_started",
                vec![target("t2", "not_started", None)],
            ),
        ],
        halted: Some(format!("wave `canary`'s gate failed: {HOSTILE}")),
        counts: [("failed".to_owned(), 1), ("not_started".to_owned(), 1)].into(),
    };
    let html = crate::fleet_html(&report, &plan, &dag);
    assert!(!html.contains("<script") && !html.contains("alert('x')"));
    assert!(html.contains("data-wave=\"canary\"") && html.contains("data-wave=\"rest\""));
    assert!(
        html.contains("<a href=\"#target-0\">"),
        "the run target links to its stages"
    );
    assert!(
        html.contains("id=\"target-0-stage-2\""),
        "its stages have anchors of their own"
    );
    assert!(
        !html.contains("href=\"#target-1\""),
        "a target that did not run has no section"
    );
    assert!(html.contains("bad\">failed</span>") && html.contains("neutral\">not started</span>"));
    assert!(html.contains("<span class=\"over\">lock wait 900 ms &gt; 500 ms</span>"));
}
