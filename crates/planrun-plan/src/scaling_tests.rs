//! Validation, the graph and the lock analysis in time linear in stages and
//! dependencies: a 10,000-stage chain and 10,000 independent stages (issue 26, item
//! 12, where a chain of 3,000 took 9 s, cubic in its length, and 10,000 would take
//! hours). The bound is loose, for a debug build on a shared machine, whose wall clock
//! runs at a tenth of the CPU time under load: linear work takes 3 s of CPU here. The
//! figures are in `docs/performance.md`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::dag::Dag;
use crate::model::{Plan, TransformCatalog};

struct NoTransforms;

impl TransformCatalog for NoTransforms {
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
    fn check_params(&self, _: &str, _: &toml::Table) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// A plan of `stages` stages of one inline SQL step each; `chained` makes each depend
/// on the one before it, and every tenth capture a value the next stage checks.
fn generated(stages: usize, chained: bool) -> String {
    let mut text = String::from("[plan]\nname = \"scale\"\n");
    for i in 0..stages {
        text.push_str(&format!("\n[[stage]]\nid = \"s{i}\"\n"));
        if chained && i > 0 {
            text.push_str(&format!("depends_on = [\"s{}\"]\n", i - 1));
        }
        if chained && i % 10 == 1 {
            text.push_str(&format!(
                "[[stage.precondition]]\nname = \"seen\"\nsql = \"SELECT 1\"\nexpect = \"{{c{}}}\"\n",
                i - 1
            ));
        }
        if chained && i % 10 == 0 {
            text.push_str(&format!(
                "[[stage.capture]]\nname = \"c{i}\"\nsql = \"SELECT 1\"\n"
            ));
        }
        text.push_str(&format!("[[stage.step]]\nsql = \"SELECT {i}\"\n"));
    }
    text
}

fn check_in_time(text: String, stages: usize) {
    let started = Instant::now();
    let plan = Plan::parse(Path::new("plan.toml"), text, Some(&NoTransforms))
        .unwrap_or_else(|errors| panic!("{errors:?}"));
    let dag = Dag::build(&plan).unwrap();
    assert_eq!(dag.order().len(), stages);
    assert_eq!(plan.lock_impact(&dag, &NoTransforms).len(), stages);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(120),
        "checking {stages} stages took {took:?}"
    );
}

#[test]
fn a_chain_of_ten_thousand_stages_checks_in_linear_time() {
    check_in_time(generated(10_000, true), 10_000);
}

#[test]
fn ten_thousand_independent_stages_check_in_linear_time() {
    check_in_time(generated(10_000, false), 10_000);
}
