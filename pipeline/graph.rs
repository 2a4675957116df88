//! Graph checks and ordering: every structural problem in a config is found in one pass,
//! each message naming its node. Then each node's builder runs (typed parameters,
//! semantic checks, files), again collecting every problem.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{InputRef, PipelineSpec};
use crate::registry;
use crate::stage::{BuildCtx, Kind, Node, Role, REJECTED};

/// A checked graph: the spec, the kind of each node and a topological order.
pub struct Graph {
    /// The config.
    pub spec: PipelineSpec,
    /// Registry entry per node (same index as `spec.nodes`).
    pub kinds: Vec<Kind>,
    /// Node indices in topological order (sources first).
    pub order: Vec<usize>,
    /// For each node, for each port, the consumers `(node index, input index)`.
    pub consumers: Vec<Vec<Vec<(usize, usize)>>>,
}

impl Graph {
    /// Index of a node by name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.spec.nodes.iter().position(|n| n.name == name)
    }
}

/// Structural checks: kinds, inputs, ports, roles, cycles, consumed outputs.
pub fn check(spec: PipelineSpec) -> Result<Graph, Vec<String>> {
    let mut problems = Vec::new();
    let all = registry::all();
    let names: Vec<String> = spec.nodes.iter().map(|n| n.name.clone()).collect();
    let mut kinds: Vec<Option<Kind>> = Vec::new();
    for n in &spec.nodes {
        match all
            .iter()
            .find(|k| k.name == n.kind)
            .cloned()
            .or_else(|| registry::internal().into_iter().find(|k| k.name == n.kind))
        {
            Some(k) => kinds.push(Some(k)),
            None => {
                let known: Vec<String> = all.iter().map(|k| k.name.to_string()).collect();
                let hint = nearest(&n.kind, &known)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                problems.push(format!(
                    "node `{}`: unknown kind `{}`{hint}; `sluice stages` lists them",
                    n.name, n.kind
                ));
                kinds.push(None);
            }
        }
    }
    let mut consumers: Vec<Vec<Vec<(usize, usize)>>> = kinds
        .iter()
        .map(|k| vec![Vec::new(); k.as_ref().map(|k| k.ports.len()).unwrap_or(0)])
        .collect();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); spec.nodes.len()];
    for (i, n) in spec.nodes.iter().enumerate() {
        let role = kinds[i].as_ref().map(|k| k.role);
        if role == Some(Role::Source) && !n.inputs.is_empty() {
            problems.push(format!(
                "node `{}`: a source (`{}`) takes no inputs",
                n.name, n.kind
            ));
        }
        if role.is_some() && role != Some(Role::Source) && n.inputs.is_empty() {
            problems.push(format!("node `{}`: missing `inputs:`", n.name));
        }
        let mut seen = BTreeSet::new();
        for (j, InputRef { node, port }) in n.inputs.iter().enumerate() {
            if !seen.insert((node.clone(), port.clone())) {
                problems.push(format!(
                    "node `{}`: input `{node}.{port}` is listed twice",
                    n.name
                ));
            }
            let Some(up) = names.iter().position(|x| x == node) else {
                let hint = nearest(node, &names)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                problems.push(format!(
                    "node `{}`: unknown input node `{node}`{hint}",
                    n.name
                ));
                continue;
            };
            if up == i {
                problems.push(format!("node `{}`: takes its own output as input", n.name));
                continue;
            }
            if let Some(k) = &kinds[up] {
                match k.ports.iter().position(|p| p == port) {
                    Some(pi) => {
                        consumers[up][pi].push((i, j));
                        edges[up].push(i);
                    }
                    None => {
                        let ports = if k.ports.is_empty() {
                            "none (it is a sink)".to_string()
                        } else {
                            k.ports.join(", ")
                        };
                        problems.push(format!(
                            "node `{}`: input `{node}.{port}`: node `{node}` has no port `{port}` (ports: {ports})",
                            n.name
                        ));
                    }
                }
            }
        }
    }
    // Every non-sink node's first port must feed something, or its documents would vanish.
    for (i, n) in spec.nodes.iter().enumerate() {
        if let Some(k) = &kinds[i] {
            if k.role != Role::Sink && !k.ports.is_empty() && consumers[i][0].is_empty() {
                problems.push(format!(
                    "node `{}`: its `{}` port feeds no node; add a sink (e.g. `parquet_shards`) downstream",
                    n.name, k.ports[0]
                ));
            }
        }
    }
    if !kinds.iter().flatten().any(|k| k.role == Role::Sink) {
        problems.push("the pipeline has no sink (e.g. `kind: parquet_shards`)".into());
    }
    // Kahn's algorithm; nodes left over sit on a cycle.
    let mut indeg = vec![0usize; spec.nodes.len()];
    for e in &edges {
        for &t in e {
            indeg[t] += 1;
        }
    }
    let mut ready: Vec<usize> = (0..spec.nodes.len()).filter(|&i| indeg[i] == 0).collect();
    ready.reverse();
    let mut order = Vec::new();
    while let Some(i) = ready.pop() {
        order.push(i);
        for &t in &edges[i] {
            indeg[t] -= 1;
            if indeg[t] == 0 {
                ready.push(t);
            }
        }
    }
    if order.len() < spec.nodes.len() {
        let cyc: Vec<&str> = (0..spec.nodes.len())
            .filter(|i| !order.contains(i))
            .map(|i| spec.nodes[i].name.as_str())
            .collect();
        problems.push(format!("cycle among nodes: {}", cyc.join(" → ")));
    }
    if problems.is_empty() {
        Ok(Graph {
            spec,
            kinds: kinds.into_iter().map(|k| k.expect("checked")).collect(),
            order,
            consumers,
        })
    } else {
        Err(problems)
    }
}

/// The nearest candidate to `s`, if close enough to suggest.
pub fn nearest(s: &str, candidates: &[String]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(s, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.clone())
}

/// Run every node's builder, collecting every problem (prefixed with the node name).
pub fn build(graph: &Graph, base: &BuildCtx) -> Result<Vec<Node>, Vec<String>> {
    let mut problems = Vec::new();
    let mut built: BTreeMap<usize, Node> = BTreeMap::new();
    for (i, n) in graph.spec.nodes.iter().enumerate() {
        let mut ctx = base.clone();
        ctx.node = n.name.clone();
        ctx.inputs = n
            .inputs
            .iter()
            .map(|r| {
                if r.port == "out" {
                    r.node.clone()
                } else {
                    r.to_string()
                }
            })
            .collect();
        ctx.run = graph.spec.run.clone();
        ctx.scratch_dir = base
            .out_dir
            .join("tmp")
            .join(format!("r{:04}", base.rank))
            .join(&n.name);
        match (graph.kinds[i].build)(&n.params, &ctx) {
            Ok(node) => {
                let role_ok = matches!(
                    (&node, graph.kinds[i].role),
                    (Node::Source(_), Role::Source)
                        | (Node::Transform(_), Role::Transform)
                        | (Node::Stage(_), Role::Stage)
                        | (Node::Sink(_), Role::Sink)
                );
                if !role_ok {
                    problems.push(format!(
                        "node `{}`: internal error: builder returned the wrong role",
                        n.name
                    ));
                }
                built.insert(i, node);
            }
            Err(ps) => problems.extend(ps.into_iter().map(|p| format!("node `{}`: {p}", n.name))),
        }
    }
    if problems.is_empty() {
        Ok(built.into_values().collect())
    } else {
        Err(problems)
    }
}

/// Whether a port is the standard rejected port.
pub fn is_rejected(port: &str) -> bool {
    port == REJECTED
}
