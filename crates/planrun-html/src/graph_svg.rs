//! The stage graph as SVG, without Graphviz: stages in columns by dependency depth
//! (the DAG's levels, each column in execution order), an arrow per `depends_on`
//! from the stage depended on to the one that depends on it. Colours are attributes,
//! not CSS, so the file draws the same on its own and inside a report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use planrun_plan::{Dag, Plan};

use crate::escape::{escape, shorten};

const NODE_WIDTH: usize = 170;
const NODE_HEIGHT: usize = 38;
const COLUMN_GAP: usize = 44;
const ROW_GAP: usize = 14;
const MARGIN: usize = 12;
/// Characters of a stage id drawn in a box; the whole id is in the hover title.
const LABEL_CHARS: usize = 22;

/// How a stage went, for its box's colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Neutral,
    Warning,
    Bad,
}

impl Tone {
    fn fill(self) -> &'static str {
        match self {
            Tone::Good => "#e3f4e1",
            Tone::Neutral => "#eef1f5",
            Tone::Warning => "#fff1d6",
            Tone::Bad => "#fbe0e0",
        }
    }

    fn stroke(self) -> &'static str {
        match self {
            Tone::Good => "#2e7d32",
            Tone::Neutral => "#5b6b7f",
            Tone::Warning => "#b26a00",
            Tone::Bad => "#c62828",
        }
    }
}

/// A stage's state, drawn under its id.
#[derive(Debug, Clone)]
pub struct NodeMark {
    pub label: String,
    pub tone: Tone,
}

/// Where each stage's box is: its column and row.
struct Layout {
    position: BTreeMap<usize, (usize, usize)>,
    columns: usize,
    rows: usize,
}

fn layout(dag: &Dag) -> Layout {
    let levels = dag.levels();
    let mut position = BTreeMap::new();
    for (column, stages) in levels.iter().enumerate() {
        for (row, &stage) in stages.iter().enumerate() {
            position.insert(stage, (column, row));
        }
    }
    Layout {
        position,
        columns: levels.len().max(1),
        rows: levels.iter().map(Vec::len).max().unwrap_or(0).max(1),
    }
}

fn origin((column, row): (usize, usize)) -> (usize, usize) {
    (
        MARGIN + column * (NODE_WIDTH + COLUMN_GAP),
        MARGIN + row * (NODE_HEIGHT + ROW_GAP),
    )
}

/// The SVG element (no XML declaration) of the plan's stage graph; `marks` colours
/// and labels the stages it names.
pub fn graph_svg(plan: &Plan, dag: &Dag, marks: &BTreeMap<String, NodeMark>) -> String {
    let layout = layout(dag);
    let width = 2 * MARGIN + layout.columns * NODE_WIDTH + (layout.columns - 1) * COLUMN_GAP;
    let height = 2 * MARGIN + layout.rows * NODE_HEIGHT + (layout.rows - 1) * ROW_GAP;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"stage-graph\" width=\"{width}\" \
         height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" \
         font-family=\"system-ui, sans-serif\" font-size=\"12\">\n\
         <title>stage graph of {}</title>\n\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
         markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
         <path d=\"M0,0 L10,5 L0,10 z\" fill=\"#5b6b7f\"/></marker></defs>\n",
        escape(&plan.name)
    );
    for (index, stage) in plan.stages.iter().enumerate() {
        let Some(&to) = layout.position.get(&index) else {
            continue;
        };
        for (dependency, _) in &stage.depends_on {
            let Some(from_index) = plan.stage_position(dependency) else {
                continue;
            };
            let from = layout.position[&from_index];
            push_edge(&mut out, from, to, &plan.stages[from_index].id, &stage.id);
        }
    }
    for &index in dag.order() {
        let stage = &plan.stages[index];
        let mark = marks.get(&stage.id);
        let (x, y) = origin(layout.position[&index]);
        push_node(&mut out, (x, y), stage, mark);
    }
    out.push_str("</svg>\n");
    out
}

fn push_edge(
    out: &mut String,
    from: (usize, usize),
    to: (usize, usize),
    from_id: &str,
    to_id: &str,
) {
    let (fx, fy) = origin(from);
    let (tx, ty) = origin(to);
    let (x1, y1) = (fx + NODE_WIDTH, fy + NODE_HEIGHT / 2);
    let (x2, y2) = (tx, ty + NODE_HEIGHT / 2);
    let bend = COLUMN_GAP / 2;
    let _ = writeln!(
        out,
        "<path class=\"edge\" data-from=\"{}\" data-to=\"{}\" d=\"M{x1},{y1} C{},{y1} {},{y2} {x2},{y2}\" \
         fill=\"none\" stroke=\"#5b6b7f\" stroke-width=\"1.4\" marker-end=\"url(#arrow)\">\
         <title>{} depends on {}</title></path>",
        escape(from_id),
        escape(to_id),
        x1 + bend,
        x2.saturating_sub(bend),
        escape(to_id),
        escape(from_id),
    );
}

fn push_node(
    out: &mut String,
    (x, y): (usize, usize),
    stage: &planrun_plan::Stage,
    mark: Option<&NodeMark>,
) {
    let tone = mark.map_or(Tone::Neutral, |mark| mark.tone);
    let mut hover = stage.id.clone();
    if let Some(title) = &stage.title {
        let _ = write!(hover, ": {title}");
    }
    if let Some(mark) = mark {
        let _ = write!(hover, " ({})", mark.label);
    }
    if stage.optional {
        hover.push_str(" [optional]");
    }
    let dash = if stage.optional {
        " stroke-dasharray=\"4 3\""
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "<g class=\"stage\" data-stage=\"{}\"><title>{}</title>\
         <rect x=\"{x}\" y=\"{y}\" width=\"{NODE_WIDTH}\" height=\"{NODE_HEIGHT}\" rx=\"6\" \
         fill=\"{}\" stroke=\"{}\" stroke-width=\"1.5\"{dash}/>\
         <text x=\"{}\" y=\"{}\" font-weight=\"600\" fill=\"#1d2733\">{}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"10.5\" fill=\"{}\">{}</text></g>",
        escape(&stage.id),
        escape(&hover),
        tone.fill(),
        tone.stroke(),
        x + 8,
        y + 16,
        escape(&shorten(&stage.id, LABEL_CHARS)),
        x + 8,
        y + 31,
        tone.stroke(),
        escape(&mark.map_or(String::new(), |mark| shorten(&mark.label, 27))),
    );
}
