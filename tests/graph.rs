//! `planrun graph`: snapshots of the memoir plan in every format, the order a user
//! sees from the repository root, and the ordering rules on random DAGs.

use std::path::Path;

use planrun_plan::{render_graph, Dag, GraphFormat, Plan};
use planrun_tests::{describe, planrun, repo_path, repo_root};
use proptest::prelude::*;

const PLANRUN: &str = env!("CARGO_BIN_EXE_planrun-under-test");

fn memoir_graph(format: GraphFormat) -> String {
    let plan = Plan::load(&repo_path("plans/memoir.toml")).expect("the memoir plan loads");
    let dag = Dag::build(&plan).expect("the memoir plan has no cycle");
    render_graph(&plan, &dag, format, None)
}

#[test]
fn memoir_graph_as_text() {
    insta::assert_snapshot!(memoir_graph(GraphFormat::Text));
}

#[test]
fn memoir_graph_as_dot() {
    insta::assert_snapshot!(memoir_graph(GraphFormat::Dot));
}

#[test]
fn memoir_graph_as_mermaid() {
    insta::assert_snapshot!(memoir_graph(GraphFormat::Mermaid));
}

/// Stage ids may hold `.` and `-` or be a Mermaid keyword: each stage still gets its
/// own node, and the edges join the right ones.
#[test]
fn mermaid_gives_every_stage_its_own_node_whatever_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.toml");
    std::fs::write(
        &path,
        r#"[plan]
name = "ids"

[[stage]]
id = "load.v1"
[[stage.step]]
sql = "SELECT 1"

[[stage]]
id = "load-v1"
depends_on = ["load.v1"]
[[stage.step]]
sql = "SELECT 1"

[[stage]]
id = "end"
depends_on = ["load-v1"]
[[stage.step]]
sql = "SELECT 1"
"#,
    )
    .unwrap();
    let plan = Plan::load(&path).unwrap();
    let dag = Dag::build(&plan).unwrap();
    let mermaid = render_graph(&plan, &dag, GraphFormat::Mermaid, None);
    let lines: Vec<&str> = mermaid.lines().collect();
    assert_eq!(
        lines,
        [
            "flowchart TD",
            "    s1[\"1. load.v1<br/>SQL\"]",
            "    s2[\"2. load-v1<br/>SQL\"]",
            "    s3[\"3. end<br/>SQL\"]",
            "    s1 --> s2",
            "    s2 --> s3",
        ],
        "{mermaid}"
    );
}

#[test]
fn memoir_graph_as_json() {
    let json = memoir_graph(GraphFormat::Json);
    let value: serde_json::Value = serde_json::from_str(&json).expect("graph json parses");
    assert_eq!(value["format"], "planrun.graph");
    assert_eq!(value["planrun_version"], env!("CARGO_PKG_VERSION"));
    // The snapshot outlives a version bump.
    let version = format!("\"planrun_version\": \"{}\"", env!("CARGO_PKG_VERSION"));
    insta::assert_snapshot!(json.replace(&version, "\"planrun_version\": \"[version]\""));
}

#[test]
fn planrun_graph_from_the_repository_root_lists_the_memoir_stages_in_order() {
    let output = planrun(PLANRUN, &repo_root(), &["graph"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let ids = [
        "sections_schema",
        "split_chapters",
        "images_schema",
        "collect_images",
        "section_image_fk",
    ];
    let positions: Vec<usize> = ids
        .iter()
        .map(|id| {
            stdout
                .find(&format!("  {id}  "))
                .unwrap_or_else(|| panic!("{id} missing:\n{stdout}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "{stdout}"
    );
    let last_line = stdout
        .lines()
        .find(|line| line.contains("section_image_fk"))
        .unwrap();
    assert!(last_line.ends_with("(optional)"), "{last_line}");
}

#[test]
fn planrun_check_on_a_cycle_exits_invalid_and_names_all_three_stages() {
    let output = planrun(
        PLANRUN,
        &repo_root(),
        &["check", "tests/plans/broken/cycle.toml"],
        &[],
    );
    assert_eq!(
        output.status.code(),
        Some(planrun_engine::exit_codes::INVALID_PLAN),
        "{}",
        describe(&output)
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("alpha -> gamma -> beta -> alpha"),
        "{stderr}"
    );
}

#[test]
fn planrun_check_on_the_memoir_plan_summarises_it() {
    let output = planrun(PLANRUN, &repo_root(), &["check"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("plan memoir (plans/memoir.toml): valid"),
        "{stdout}"
    );
    assert!(stdout.contains("5 stages (1 optional)"), "{stdout}");
}

/// A plan of `n` stages in which stage `i` depends on the stages listed in `deps[i]`
/// (all earlier in a random permutation, so there is no cycle), written in a
/// shuffled file order.
fn random_plan(n: usize, edges: &[(usize, usize)], file_order: &[usize]) -> String {
    let mut text = String::from("[plan]\nname = \"random\"\n");
    for &stage in file_order {
        let deps: Vec<String> = edges
            .iter()
            .filter(|(_, to)| *to == stage)
            .map(|(from, _)| format!("\"s{from}\""))
            .collect();
        text.push_str(&format!(
            "\n[[stage]]\nid = \"s{stage}\"\ndepends_on = [{}]\n[[stage.step]]\nsql = \"SELECT {stage}\"\n",
            deps.join(", ")
        ));
    }
    assert!(n == file_order.len());
    text
}

fn dag_case() -> impl Strategy<Value = (usize, Vec<(usize, usize)>, Vec<usize>)> {
    (1usize..12)
        .prop_flat_map(|n| {
            let edges = proptest::collection::vec((0..n, 0..n), 0..(n * 2));
            let order = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
            (Just(n), edges, order)
        })
        .prop_map(|(n, edges, order)| {
            // Orient every edge along a hidden ranking (stage numbers) so there is no cycle.
            let edges = edges
                .into_iter()
                .filter(|(a, b)| a != b)
                .map(|(a, b)| (a.min(b), a.max(b)))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            (n, edges, order)
        })
}

proptest! {
    #[test]
    fn order_respects_every_edge_and_is_stable((n, edges, file_order) in dag_case()) {
        let text = random_plan(n, &edges, &file_order);
        let plan = Plan::parse(Path::new("random.toml"), text.clone(), None).expect("random plan is valid");
        let dag = Dag::build(&plan).expect("no cycle by construction");
        let order: Vec<&str> = dag.order().iter().map(|&i| plan.stages[i].id.as_str()).collect();
        prop_assert_eq!(order.len(), n);
        let position = |id: String| order.iter().position(|o| *o == id).unwrap();
        for (from, to) in &edges {
            let (before, after) = (position(format!("s{from}")), position(format!("s{to}")));
            prop_assert!(before < after);
        }
        for &stage in dag.order() {
            for (dep, _) in &plan.stages[stage].depends_on {
                let dep = plan.stage_position(dep).unwrap();
                prop_assert!(dag.level(stage) > dag.level(dep));
            }
        }
        let again = Plan::parse(Path::new("random.toml"), text, None).unwrap();
        let again_order: Vec<usize> = Dag::build(&again).unwrap().order().to_vec();
        prop_assert_eq!(dag.order().to_vec(), again_order);
        // Ties go to the stage written first: a stage with no unmet dependency never
        // waits behind one written after it.
        let mut done = std::collections::BTreeSet::new();
        for &stage in dag.order() {
            for earlier in 0..stage {
                let ready = plan.stages[earlier].depends_on.iter().all(|(dep, _)| {
                    done.contains(&plan.stage_position(dep).unwrap())
                });
                let waited = ready && !done.contains(&earlier);
                prop_assert!(!waited, "stage at file position {} was ready but waited behind {}", earlier, stage);
            }
            done.insert(stage);
        }
    }
}

/// `graph --format svg`: well-formed XML that any SVG viewer opens, a box for every
/// stage and an arrow for every dependency, drawn without Graphviz.
#[test]
fn memoir_graph_as_svg_has_every_stage_and_an_edge_per_dependency() {
    let output = planrun(
        PLANRUN,
        &repo_root(),
        &["graph", "plans/memoir.toml", "--format", "svg"],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let text = String::from_utf8(output.stdout).expect("SVG is UTF-8");
    let svg = roxmltree::Document::parse(&text).expect("the SVG is well-formed XML");
    let root = svg.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let plan = Plan::load(&repo_path("plans/memoir.toml")).expect("the memoir plan loads");
    let drawn = |class: &str| {
        svg.descendants()
            .filter(move |node| node.attribute("class") == Some(class))
            .collect::<Vec<_>>()
    };
    let mut boxes: Vec<&str> = drawn("stage")
        .iter()
        .filter_map(|node| node.attribute("data-stage"))
        .collect();
    let mut stages: Vec<&str> = plan.stages.iter().map(|stage| stage.id.as_str()).collect();
    boxes.sort_unstable();
    stages.sort_unstable();
    assert_eq!(boxes, stages, "one box per stage");
    let mut edges: Vec<(String, String)> = drawn("edge")
        .iter()
        .map(|node| {
            let end = |name| {
                node.attribute(name)
                    .expect("an edge names its ends")
                    .to_owned()
            };
            (end("data-from"), end("data-to"))
        })
        .collect();
    let mut dependencies: Vec<(String, String)> = plan
        .stages
        .iter()
        .flat_map(|stage| {
            stage
                .depends_on
                .iter()
                .map(|(dependency, _)| (dependency.clone(), stage.id.clone()))
        })
        .collect();
    edges.sort();
    dependencies.sort();
    assert!(!dependencies.is_empty());
    assert_eq!(edges, dependencies, "one arrow per dependency");
}
