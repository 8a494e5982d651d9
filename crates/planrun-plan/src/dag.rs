//! The stage graph: a `petgraph` DAG with an edge from each dependency to its
//! dependent, a deterministic topological order (ties broken by position in the plan
//! file, so the order never changes between runs) and levels (stages at the same
//! level could run side by side).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};

use petgraph::algo::kosaraju_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::model::Plan;

/// Index of a stage in `Plan::stages`.
pub type StageIndex = usize;

#[derive(Debug, Clone)]
pub struct Dag {
    graph: DiGraph<StageIndex, ()>,
    order: Vec<StageIndex>,
    levels: Vec<usize>,
}

impl Dag {
    /// Builds the graph, or returns every dependency cycle, each as the stages in
    /// dependency order starting from the earliest in the file (`[a, b, c]` means `a`
    /// depends on `b`, `b` on `c`, and `c` on `a`). Unknown dependencies are ignored
    /// here; validation reports them.
    pub fn build(plan: &Plan) -> Result<Dag, Vec<Vec<StageIndex>>> {
        let positions = plan.stage_positions();
        let mut graph = DiGraph::with_capacity(plan.stages.len(), plan.stages.len());
        let nodes: Vec<NodeIndex> = (0..plan.stages.len()).map(|i| graph.add_node(i)).collect();
        let mut edges = HashSet::new();
        for (index, stage) in plan.stages.iter().enumerate() {
            for (dependency, _) in &stage.depends_on {
                if let Some(&dep) = positions.get(dependency.as_str()) {
                    if edges.insert((dep, index)) {
                        graph.add_edge(nodes[dep], nodes[index], ());
                    }
                }
            }
        }
        let cycles = find_cycles(plan, &positions, &graph);
        if !cycles.is_empty() {
            return Err(cycles);
        }
        let order = stable_topological_order(&graph);
        let mut levels = vec![0; plan.stages.len()];
        for &stage in &order {
            levels[stage] = graph
                .neighbors_directed(nodes[stage], Direction::Incoming)
                .map(|dep| levels[graph[dep]] + 1)
                .max()
                .unwrap_or(0);
        }
        Ok(Dag {
            graph,
            order,
            levels,
        })
    }

    /// Stage indexes in execution order.
    pub fn order(&self) -> &[StageIndex] {
        &self.order
    }

    pub fn level(&self, stage: StageIndex) -> usize {
        self.levels[stage]
    }

    /// Stages grouped by level, each group in execution order.
    pub fn levels(&self) -> Vec<Vec<StageIndex>> {
        let depth = self.levels.iter().copied().max().map_or(0, |max| max + 1);
        let mut groups = vec![Vec::new(); depth];
        for &stage in &self.order {
            groups[self.levels[stage]].push(stage);
        }
        groups
    }

    /// Every stage `stage` depends on, directly or not.
    pub fn ancestors(&self, stage: StageIndex) -> BTreeSet<StageIndex> {
        self.walk(stage, Direction::Incoming)
    }

    /// Every stage that depends on `stage`, directly or not.
    pub fn descendants(&self, stage: StageIndex) -> BTreeSet<StageIndex> {
        self.walk(stage, Direction::Outgoing)
    }

    fn walk(&self, stage: StageIndex, direction: Direction) -> BTreeSet<StageIndex> {
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([NodeIndex::new(stage)]);
        while let Some(node) = queue.pop_front() {
            for next in self.graph.neighbors_directed(node, direction) {
                if seen.insert(self.graph[next]) {
                    queue.push_back(next);
                }
            }
        }
        seen
    }
}

/// Kahn's algorithm with a min-heap on file position, so that among the stages that
/// are ready the earliest-written one always goes first.
fn stable_topological_order(graph: &DiGraph<StageIndex, ()>) -> Vec<StageIndex> {
    let mut waiting: Vec<usize> = graph
        .node_indices()
        .map(|node| graph.neighbors_directed(node, Direction::Incoming).count())
        .collect();
    let mut ready: BinaryHeap<Reverse<StageIndex>> = graph
        .node_indices()
        .filter(|node| waiting[node.index()] == 0)
        .map(|node| Reverse(graph[node]))
        .collect();
    let mut order = Vec::with_capacity(graph.node_count());
    while let Some(Reverse(stage)) = ready.pop() {
        order.push(stage);
        for next in graph.neighbors_directed(NodeIndex::new(stage), Direction::Outgoing) {
            waiting[next.index()] -= 1;
            if waiting[next.index()] == 0 {
                ready.push(Reverse(graph[next]));
            }
        }
    }
    order
}

/// One cycle per strongly connected component that has one: the shortest way around
/// it from its earliest stage, following `depends_on` in the order written.
/// Kosaraju's algorithm rather than petgraph's Tarjan, whose recursion overflows the
/// stack on a chain of some thousands of stages.
fn find_cycles(
    plan: &Plan,
    positions: &HashMap<&str, StageIndex>,
    graph: &DiGraph<StageIndex, ()>,
) -> Vec<Vec<StageIndex>> {
    let mut cycles: Vec<Vec<StageIndex>> = kosaraju_scc(graph)
        .into_iter()
        .filter(|component| component.len() > 1 || graph.contains_edge(component[0], component[0]))
        .map(|component| {
            let members: BTreeSet<StageIndex> = component.iter().map(|node| graph[*node]).collect();
            let start = *members.first().expect("a component is never empty");
            shortest_cycle(plan, positions, &members, start)
        })
        .collect();
    cycles.sort();
    cycles
}

fn shortest_cycle(
    plan: &Plan,
    positions: &HashMap<&str, StageIndex>,
    members: &BTreeSet<StageIndex>,
    start: StageIndex,
) -> Vec<StageIndex> {
    let mut parent: Vec<Option<StageIndex>> = vec![None; plan.stages.len()];
    let mut queue = VecDeque::from([start]);
    while let Some(stage) = queue.pop_front() {
        for (dependency, _) in &plan.stages[stage].depends_on {
            let Some(&dep) = positions.get(dependency.as_str()) else {
                continue;
            };
            if !members.contains(&dep) {
                continue;
            }
            if dep == start {
                let mut cycle = vec![stage];
                while let Some(previous) = parent[*cycle.last().expect("cycle starts non-empty")] {
                    cycle.push(previous);
                }
                cycle.reverse();
                return cycle;
            }
            if parent[dep].is_none() && dep != start {
                parent[dep] = Some(stage);
                queue.push_back(dep);
            }
        }
    }
    vec![start]
}
