//! Graph checks and ordering: every structural problem in a config is found in one pass,
//! each message naming its node (duplicate names, unknown kinds and inputs, ports,
//! roles, the exact path of each cycle). Then each node's builder runs (typed
//! parameters, semantic checks, files), again collecting every problem; an unknown kind
//! in one node hides nothing about the others.

use std::collections::BTreeSet;

use crate::config::{InputRef, PipelineSpec, Report};
use crate::registry;
use crate::stage::{field_problem, BuildCtx, Kind, Node, Role, REJECTED};

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

/// The structure [`check_into`] derives, whatever problems it found.
pub struct Structure {
    /// Registry entry per node; `None` for a missing or unknown kind.
    pub kinds: Vec<Option<Kind>>,
    /// Topological order of the nodes not on or behind a cycle.
    pub order: Vec<usize>,
    /// For each node, for each port, the consumers `(node index, input index)`.
    pub consumers: Vec<Vec<Vec<(usize, usize)>>>,
}

/// Structural checks: kinds, inputs, ports, roles, cycles, consumed outputs. On a
/// problem, every node of a known kind is also built in validate-only mode, so the
/// error lists the nodes' field problems too.
pub fn check(spec: PipelineSpec) -> Result<Graph, Vec<String>> {
    let mut report = Report::default();
    let s = check_into(&spec, &mut report);
    if !report.is_empty() {
        let ctx = BuildCtx::for_validation(&spec.run);
        build_into(&spec, &s.kinds, &ctx, &mut report, |_, _| {});
        return Err(report.into_messages(&spec));
    }
    Ok(into_graph(spec, s))
}

/// Check the structure and build every node of a known kind with `ctx` (which should
/// be validate-only), collecting every problem.
pub fn validate(spec: PipelineSpec, ctx: &BuildCtx) -> Result<Graph, Vec<String>> {
    let mut report = Report::default();
    let s = check_into(&spec, &mut report);
    let names: Vec<String> = spec.nodes.iter().map(|n| n.name.clone()).collect();
    let mut decls = Vec::new();
    build_into(&spec, &s.kinds, ctx, &mut report, |i, node| {
        decls.push((names[i].as_str(), crate::attrs::declared(&node)))
    });
    // Two nodes declaring one attribute with two types: the shard schema cannot hold both.
    if let Err(e) = crate::attrs::AttrSchema::from_nodes(decls) {
        report.tail.push(e.to_string());
    }
    if report.is_empty() {
        Ok(into_graph(spec, s))
    } else {
        Err(report.into_messages(&spec))
    }
}

fn into_graph(spec: PipelineSpec, s: Structure) -> Graph {
    Graph {
        spec,
        // No problem means every kind is known.
        kinds: s.kinds.into_iter().flatten().collect(),
        order: s.order,
        consumers: s.consumers,
    }
}

/// The structural checks, adding each problem to `report` under its node.
pub fn check_into(spec: &PipelineSpec, report: &mut Report) -> Structure {
    let all = registry::all();
    let known: Vec<String> = all.iter().map(|k| k.name.to_string()).collect();
    let n_nodes = spec.nodes.len();
    let names: Vec<String> = spec.nodes.iter().map(|n| n.name.clone()).collect();
    // A name's first node; a later node with the same name is a problem, and inputs that
    // name it refer to the first.
    let first = |name: &str| names.iter().position(|x| x == name);
    let mut kinds: Vec<Option<Kind>> = Vec::new();
    for (i, n) in spec.nodes.iter().enumerate() {
        if let Some(f) = first(&n.name).filter(|&f| f < i) {
            report.node(i).push(format!(
                "duplicate node name: node #{} is also named \"{}\"; names must be unique",
                f + 1,
                n.name
            ));
        }
        let kind = registry::get(&n.kind);
        if kind.is_none() && !n.kind.is_empty() {
            let hint = nearest(&n.kind, &known)
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            report.node(i).push(format!(
                "unknown kind \"{}\"{hint}; `sluice stages` lists them",
                n.kind
            ));
        }
        kinds.push(kind);
    }
    if let Some(allowed) = &spec.run.allowed_licenses {
        for (i, n) in spec.nodes.iter().enumerate() {
            if kinds[i].as_ref().map(|k| k.role) != Some(Role::Source) {
                continue;
            }
            let lic = crate::stage::source_license(&n.params)
                .0
                .unwrap_or_else(|| crate::stage::UNKNOWN_LICENSE.to_string());
            if !allowed.contains(&lic) {
                report.node(i).push(field_problem(
                    "license",
                    format!(
                        "licence {lic:?} is not in run.allowed_licenses ({}){}",
                        allowed
                            .iter()
                            .map(|a| format!("{a:?}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if n.params.get("license").is_none() {
                            "; this source declares no `license:`"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
    }
    let mut consumers: Vec<Vec<Vec<(usize, usize)>>> = kinds
        .iter()
        .map(|k| vec![Vec::new(); k.as_ref().map(|k| k.ports.len()).unwrap_or(0)])
        .collect();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); n_nodes];
    for (i, n) in spec.nodes.iter().enumerate() {
        let role = kinds[i].as_ref().map(|k| k.role);
        if role == Some(Role::Source) && !n.inputs.is_empty() {
            report.node(i).push(field_problem(
                "inputs",
                format!("a source ({}) takes no inputs", n.kind),
            ));
        }
        if role.is_some() && role != Some(Role::Source) && n.inputs.is_empty() {
            report.node(i).push(field_problem(
                "inputs",
                "missing (this kind reads the output of other nodes)",
            ));
        }
        let mut seen = BTreeSet::new();
        for (j, InputRef { node, port }) in n.inputs.iter().enumerate() {
            if !seen.insert((node.clone(), port.clone())) {
                report.node(i).push(field_problem(
                    "inputs",
                    format!("\"{node}.{port}\" is listed twice"),
                ));
            }
            let Some(up) = first(node) else {
                let hint = nearest(node, &names)
                    .map(|s| format!(" (did you mean \"{s}\"?)"))
                    .unwrap_or_default();
                report.node(i).push(field_problem(
                    "inputs",
                    format!("unknown node \"{node}\"{hint}"),
                ));
                continue;
            };
            if up == i {
                report
                    .node(i)
                    .push(field_problem("inputs", "takes its own output as input"));
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
                        report.node(i).push(field_problem(
                            "inputs",
                            format!("\"{node}.{port}\": node \"{node}\" has no port \"{port}\" (ports: {ports})"),
                        ));
                    }
                }
            }
        }
    }
    // Every non-sink node's first port must feed something, or its documents would
    // vanish. (A repeated name can't be referred to; its problem is the name.)
    for (i, n) in spec.nodes.iter().enumerate() {
        if let Some(k) = &kinds[i] {
            if k.role != Role::Sink
                && !k.ports.is_empty()
                && consumers[i][0].is_empty()
                && first(&n.name) == Some(i)
            {
                report.node(i).push(format!(
                    "its \"{}\" port feeds no node; add a sink (e.g. `parquet_shards`) downstream",
                    k.ports[0]
                ));
            }
        }
    }
    // (An unknown kind may be the sink, misspelled; its own problem says so.)
    if n_nodes > 0
        && kinds.iter().all(Option::is_some)
        && !kinds.iter().flatten().any(|k| k.role == Role::Sink)
    {
        report
            .tail
            .push("the pipeline has no sink (e.g. `kind: parquet_shards`)".into());
    }
    let order = topological_order(&edges);
    if order.len() < n_nodes {
        for cycle in cycles(&edges, &order) {
            let path: Vec<&str> = cycle.iter().map(|&i| names[i].as_str()).collect();
            report.tail.push(format!(
                "cycle: {} -> {} (a node cannot read its own output, even through others)",
                path.join(" -> "),
                path[0]
            ));
        }
    }
    Structure {
        kinds,
        order,
        consumers,
    }
}

/// Kahn's algorithm, smallest index first among the ready nodes; nodes left out sit on
/// a cycle or downstream of one.
fn topological_order(edges: &[Vec<usize>]) -> Vec<usize> {
    let n = edges.len();
    let mut indeg = vec![0usize; n];
    for e in edges {
        for &t in e {
            indeg[t] += 1;
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
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
    order
}

/// One shortest cycle per group of nodes left out of `order`, each starting at its
/// first node in file order: exactly the nodes on the cycle, not those downstream of it.
fn cycles(edges: &[Vec<usize>], order: &[usize]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut left = vec![true; n];
    for &i in order {
        left[i] = false;
    }
    let mut covered = vec![false; n];
    let mut out = Vec::new();
    for start in 0..n {
        if !left[start] || covered[start] {
            continue;
        }
        // Breadth-first from `start` among the left-out nodes, back to `start`.
        let mut prev: Vec<Option<usize>> = vec![None; n];
        let mut queue = std::collections::VecDeque::from([start]);
        let mut seen = vec![false; n];
        seen[start] = true;
        let mut closing = None;
        'bfs: while let Some(u) = queue.pop_front() {
            for &v in &edges[u] {
                if !left[v] {
                    continue;
                }
                if v == start {
                    closing = Some(u);
                    break 'bfs;
                }
                if !seen[v] {
                    seen[v] = true;
                    prev[v] = Some(u);
                    queue.push_back(v);
                }
            }
        }
        let Some(mut u) = closing else {
            continue; // downstream of a cycle, not on one
        };
        let mut cycle = vec![u];
        while let Some(p) = prev[u] {
            cycle.push(p);
            u = p;
        }
        cycle.reverse();
        for &c in &cycle {
            covered[c] = true;
        }
        out.push(cycle);
    }
    out
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

/// Build every node of a known kind with `base`, adding each builder problem to `report`
/// under its node and handing each built node to `built`.
pub fn build_into(
    spec: &PipelineSpec,
    kinds: &[Option<Kind>],
    base: &BuildCtx,
    report: &mut Report,
    mut built: impl FnMut(usize, Node),
) {
    for (i, n) in spec.nodes.iter().enumerate() {
        let Some(kind) = &kinds[i] else { continue };
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
        ctx.run = spec.run.clone();
        ctx.scratch_dir = base
            .out_dir
            .join("tmp")
            .join(format!("r{:04}", base.rank))
            .join(&n.name);
        match (kind.build)(&n.params, &ctx) {
            Ok(node) => {
                let role_ok = matches!(
                    (&node, kind.role),
                    (Node::Source(_), Role::Source)
                        | (Node::Transform(_), Role::Transform)
                        | (Node::Stage(_), Role::Stage)
                        | (Node::Sink(_), Role::Sink)
                );
                if role_ok {
                    built(i, node);
                } else {
                    report
                        .node(i)
                        .push("internal error: builder returned the wrong role".into());
                }
            }
            Err(ps) => report.node(i).extend(ps),
        }
    }
}

/// Run every node's builder, collecting every problem (prefixed with the node name).
pub fn build(graph: &Graph, base: &BuildCtx) -> Result<Vec<Node>, Vec<String>> {
    let mut report = Report::default();
    let kinds: Vec<Option<Kind>> = graph.kinds.iter().cloned().map(Some).collect();
    let mut nodes = Vec::with_capacity(kinds.len());
    build_into(&graph.spec, &kinds, base, &mut report, |_, node| {
        nodes.push(node)
    });
    if report.is_empty() {
        Ok(nodes)
    } else {
        Err(report.into_messages(&graph.spec))
    }
}

/// Whether a port is the standard rejected port.
pub fn is_rejected(port: &str) -> bool {
    port == REJECTED
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn problems(yaml: &str) -> Vec<String> {
        let spec = config::parse_lenient(yaml, "t").unwrap().0;
        match validate(spec, &BuildCtx::for_validation(&Default::default())) {
            Ok(_) => Vec::new(),
            Err(p) => p,
        }
    }

    #[test]
    fn cycles_name_exactly_their_nodes() {
        // a feeds b, b feeds c, c feeds a; d sits downstream of the cycle, e and f form a
        // second one.
        let p = problems(
            "nodes:
  src: {kind: ingest_jsonl, paths: [samples/text/cmrc2018_zh.jsonl]}
  a: {kind: length_filter, inputs: [src, c]}
  b: {kind: length_filter, inputs: [a]}
  c: {kind: length_filter, inputs: [b]}
  d: {kind: length_filter, inputs: [c.rejected, f]}
  e: {kind: length_filter, inputs: [f]}
  f: {kind: length_filter, inputs: [e]}
  out: {kind: parquet_shards, inputs: [d, a.rejected, b.rejected, e.rejected, f.rejected]}
",
        );
        let cycles: Vec<&String> = p.iter().filter(|m| m.starts_with("cycle")).collect();
        assert_eq!(
            cycles,
            [
                "cycle: a -> b -> c -> a (a node cannot read its own output, even through others)",
                "cycle: e -> f -> e (a node cannot read its own output, even through others)",
            ],
            "{p:#?}"
        );
        assert_eq!(p.len(), 2, "{p:#?}");
    }

    #[test]
    fn an_unknown_kind_hides_no_other_problem() {
        let p = problems(
            "nodes:
  src: {kind: ingest_jsonl, paths: [samples/text/cmrc2018_zh.jsonl], max_line_bytes: 0}
  f: {kind: lenght_filter, inputs: [src]}
  g: {kind: length_filter, inputs: [f, src.nope], min_chars: x, max_chars: -1}
  g2: {kind: length_filter, inputs: [g]}
  out: {kind: parquet_shards, inputs: [g2, g], row_group_rows: 0}
",
        );
        assert_eq!(
            p,
            [
                r#"node "src" (ingest_jsonl): field "max_line_bytes": expected an integer >= 1, got 0"#,
                r#"node "f": unknown kind "lenght_filter" (did you mean "length_filter"?); `sluice stages` lists them"#,
                r#"node "g" (length_filter): field "inputs": "src.nope": node "src" has no port "nope" (ports: out, rejected)"#,
                r#"node "g" (length_filter): field "min_chars": invalid type: string "x", expected an integer"#,
                r#"node "g" (length_filter): field "max_chars": invalid value: integer `-1`, expected a non-negative integer"#,
                r#"node "out" (parquet_shards): field "row_group_rows": expected an integer >= 1, got 0"#,
            ]
        );
    }

    #[test]
    fn duplicate_names_are_reported_and_inputs_use_the_first() {
        let p = problems(
            "nodes:
  src: {kind: ingest_jsonl, paths: [samples/text/cmrc2018_zh.jsonl]}
  f: {kind: length_filter, inputs: [src]}
  f: {kind: parquet_shards, inputs: [src.rejected]}
  out: {kind: parquet_shards, inputs: [f]}
",
        );
        assert_eq!(
            p,
            [
                r#"node "f" #3 (parquet_shards): duplicate node name: node #2 is also named "f"; names must be unique"#
            ]
        );
    }
}
