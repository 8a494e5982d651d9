//! Renderings of the stage graph for `planrun graph`: a numbered text table, Graphviz
//! dot, Mermaid and a stable JSON shape, the `planrun.graph` document (documented in
//! `docs/plan-format.md`, its schema in `docs/schemas/graph.schema.json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use planrun_contract::{format, Document, Envelope, OutcomeCode};
use schemars::JsonSchema;
use serde::Serialize;

use crate::dag::Dag;
use crate::model::{Plan, StepKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    Text,
    Dot,
    Mermaid,
    Json,
}

/// A stage's state in the ledger, for `planrun graph --status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    Pending,
    Applied,
    Skipped,
    Failed,
    /// A batched stage with some batches committed.
    Partial,
    /// Applied, but its definition has changed since.
    Drifted,
    /// Applied, then undone by `planrun revert`; a later `apply` runs it again.
    Reverted,
}

impl StageState {
    pub fn label(self) -> &'static str {
        match self {
            StageState::Pending => "pending",
            StageState::Applied => "applied",
            StageState::Skipped => "skipped",
            StageState::Failed => "failed",
            StageState::Partial => "partial",
            StageState::Drifted => "drifted",
            StageState::Reverted => "reverted",
        }
    }
}

/// Ledger state per stage id.
pub type GraphStatus = BTreeMap<String, StageState>;

/// The body of the `planrun.graph` document.
#[derive(Serialize, JsonSchema)]
pub struct JsonGraph<'a> {
    plan: &'a str,
    description: Option<&'a str>,
    stages: Vec<JsonStage<'a>>,
    levels: Vec<Vec<&'a str>>,
    edges: Vec<JsonEdge<'a>>,
}

#[derive(Serialize, JsonSchema)]
struct JsonStage<'a> {
    order: usize,
    id: &'a str,
    title: Option<&'a str>,
    level: usize,
    depends_on: Vec<&'a str>,
    optional: bool,
    transaction: bool,
    steps: Vec<JsonStep<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StageState>,
}

#[derive(Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum JsonStep<'a> {
    Sql { name: &'a str },
    SqlFile { name: &'a str, path: &'a str },
    Transform { name: &'a str, transform: &'a str },
}

#[derive(Serialize, JsonSchema)]
struct JsonEdge<'a> {
    from: &'a str,
    to: &'a str,
}

/// Renders the graph of a structurally valid plan; `status` adds ledger state.
pub fn render_graph(
    plan: &Plan,
    dag: &Dag,
    format: GraphFormat,
    status: Option<&GraphStatus>,
) -> String {
    match format {
        GraphFormat::Text => text(plan, dag, status),
        GraphFormat::Dot => dot(plan, dag, status),
        GraphFormat::Mermaid => mermaid(plan, dag, status),
        GraphFormat::Json => json(plan, dag, status),
    }
}

fn state_of(status: Option<&GraphStatus>, id: &str) -> Option<StageState> {
    status.map(|states| states.get(id).copied().unwrap_or(StageState::Pending))
}

fn dependencies(plan: &Plan, stage: usize) -> Vec<&str> {
    plan.stages[stage]
        .depends_on
        .iter()
        .map(|(dependency, _)| dependency.as_str())
        .collect()
}

fn text(plan: &Plan, dag: &Dag, status: Option<&GraphStatus>) -> String {
    let mut rows: Vec<[String; 6]> = vec![[
        "#".into(),
        "stage".into(),
        "level".into(),
        "kind".into(),
        "depends on".into(),
        if status.is_some() {
            "state".into()
        } else {
            String::new()
        },
    ]];
    for (position, &index) in dag.order().iter().enumerate() {
        let stage = &plan.stages[index];
        let deps = dependencies(plan, index);
        let mut notes = Vec::new();
        if let Some(state) = state_of(status, &stage.id) {
            notes.push(state.label().to_owned());
        }
        if stage.optional {
            notes.push("(optional)".into());
        }
        if !stage.transaction {
            notes.push("(no transaction)".into());
        }
        rows.push([
            (position + 1).to_string(),
            stage.id.clone(),
            dag.level(index).to_string(),
            stage.kind_label(),
            if deps.is_empty() {
                "-".into()
            } else {
                deps.join(", ")
            },
            notes.join(" "),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let stage_count = plan.stages.len();
    let _ = writeln!(
        out,
        "plan {}: {} stage{}, {} level{}",
        plan.name,
        stage_count,
        if stage_count == 1 { "" } else { "s" },
        dag.levels().len(),
        if dag.levels().len() == 1 { "" } else { "s" },
    );
    if let Some(description) = &plan.description {
        let _ = writeln!(out, "{description}");
    }
    out.push('\n');
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column == 0 {
                let _ = write!(line, "{cell:>width$}", width = widths[0]);
            } else {
                let _ = write!(line, "  {cell:<width$}", width = widths[column]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn quote_dot(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn dot(plan: &Plan, dag: &Dag, status: Option<&GraphStatus>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote_dot(&plan.name));
    out.push_str("  rankdir=TB;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n");
    for (position, &index) in dag.order().iter().enumerate() {
        let stage = &plan.stages[index];
        let mut label = format!("{}. {}\\n{}", position + 1, stage.id, stage.kind_label());
        if let Some(state) = state_of(status, &stage.id) {
            let _ = write!(label, "\\n[{}]", state.label());
        }
        let mut attributes = vec![format!("label=\"{}\"", label.replace('"', "\\\""))];
        if stage.optional {
            attributes.push("style=\"rounded,dashed\"".into());
        }
        let _ = writeln!(
            out,
            "  {} [{}];",
            quote_dot(&stage.id),
            attributes.join(", ")
        );
    }
    for &index in dag.order() {
        for dependency in dependencies(plan, index) {
            let _ = writeln!(
                out,
                "  {} -> {};",
                quote_dot(dependency),
                quote_dot(&plan.stages[index].id)
            );
        }
    }
    out.push_str("}\n");
    out
}

/// A stage's Mermaid node: `s` and its position in the file. Ids may hold `.` and
/// `-`, or be a Mermaid keyword such as `end`, so they go only into labels.
fn mermaid_id(plan: &Plan, id: &str) -> String {
    format!(
        "s{}",
        plan.stage_position(id).map_or(0, |position| position + 1)
    )
}

fn mermaid(plan: &Plan, dag: &Dag, status: Option<&GraphStatus>) -> String {
    let mut out = String::from("flowchart TD\n");
    for (position, &index) in dag.order().iter().enumerate() {
        let stage = &plan.stages[index];
        let mut label = format!("{}. {}<br/>{}", position + 1, stage.id, stage.kind_label());
        if stage.optional {
            label.push_str("<br/>(optional)");
        }
        if let Some(state) = state_of(status, &stage.id) {
            let _ = write!(label, "<br/>[{}]", state.label());
        }
        let _ = writeln!(
            out,
            "    {}[\"{}\"]",
            mermaid_id(plan, &stage.id),
            label.replace('"', "#quot;")
        );
    }
    for &index in dag.order() {
        for dependency in dependencies(plan, index) {
            let arrow = if plan.stages[index].optional {
                "-.->"
            } else {
                "-->"
            };
            let _ = writeln!(
                out,
                "    {} {arrow} {}",
                mermaid_id(plan, dependency),
                mermaid_id(plan, &plan.stages[index].id)
            );
        }
    }
    out
}

fn json(plan: &Plan, dag: &Dag, status: Option<&GraphStatus>) -> String {
    let stages = dag
        .order()
        .iter()
        .enumerate()
        .map(|(position, &index)| {
            let stage = &plan.stages[index];
            JsonStage {
                order: position + 1,
                id: &stage.id,
                title: stage.title.as_deref(),
                level: dag.level(index),
                depends_on: dependencies(plan, index),
                optional: stage.optional,
                transaction: stage.transaction,
                steps: stage
                    .steps
                    .iter()
                    .map(|step| match &step.kind {
                        StepKind::Sql { .. } => JsonStep::Sql { name: &step.name },
                        StepKind::SqlFile { path, .. } => JsonStep::SqlFile {
                            name: &step.name,
                            path,
                        },
                        StepKind::Transform { name, .. } => JsonStep::Transform {
                            name: &step.name,
                            transform: name,
                        },
                    })
                    .collect(),
                status: state_of(status, &stage.id),
            }
        })
        .collect();
    let graph = JsonGraph {
        plan: &plan.name,
        description: plan.description.as_deref(),
        stages,
        levels: dag
            .levels()
            .into_iter()
            .map(|group| {
                group
                    .into_iter()
                    .map(|i| plan.stages[i].id.as_str())
                    .collect()
            })
            .collect(),
        edges: dag
            .order()
            .iter()
            .flat_map(|&index| {
                dependencies(plan, index)
                    .into_iter()
                    .map(move |from| JsonEdge {
                        from,
                        to: &plan.stages[index].id,
                    })
            })
            .collect(),
    };
    let document = Document::new(Envelope::timeless(&format::GRAPH, OutcomeCode::Ok), graph);
    let mut out =
        serde_json::to_string_pretty(&document).expect("the graph model always serialises");
    out.push('\n');
    out
}
