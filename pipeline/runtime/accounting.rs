//! Per-node counters, the accounting check ("nothing vanishes") and the rank's
//! `stats.json` and `manifest.json`, built from the counters once every node has finished.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::{lock, RunOptions};
use crate::graph::Graph;
use crate::stage::{Accounting, Role, ShardInfo, REJECTED};

/// Per node: (`stats()` extra, `manifest()` extra).
pub(super) type Extras = BTreeMap<String, (Option<Value>, Option<Value>)>;

/// One output port's counters.
#[derive(Default)]
pub(super) struct PortStat {
    pub docs: u64,
    pub bytes: u64,
}

/// One node's counters, shared by its thread, the workers and the progress reporter.
#[derive(Default)]
pub(super) struct NodeStats {
    pub docs_in: u64,
    pub bytes_in: u64,
    pub ports: Vec<PortStat>,
    pub rejects: BTreeMap<String, u64>,
    pub busy: Duration,
    pub bad_count: u64,
    pub bad_by_reason: BTreeMap<String, u64>,
    pub bad_examples: Vec<String>,
    pub splits: u64,
    /// The stage's accounting contract, known after `finish` (transforms conserve).
    pub accounting: Option<Accounting>,
}

impl NodeStats {
    /// Zeroed counters for every node of `graph`, one port entry per declared port.
    pub fn for_graph(graph: &Graph) -> Vec<Arc<Mutex<NodeStats>>> {
        graph
            .kinds
            .iter()
            .map(|k| {
                Arc::new(Mutex::new(NodeStats {
                    ports: k.ports.iter().map(|_| PortStat::default()).collect(),
                    ..Default::default()
                }))
            })
            .collect()
    }
}

/// The engine invariant: every document a node takes in leaves through a port.
///
/// * sources: documents emitted = `out` + `rejected` (counted at the source context);
/// * transforms and conserving stages: `in = Σ ports`;
/// * copying stages (`mix` upsampling): `in + extra = Σ ports`;
/// * merging stages (`pack`): `in = consumed + rejected`;
/// * sinks: `in` = rows in the files they wrote;
/// * the rejects writer: rows written = documents routed to it.
///
/// Returns one entry per node (and `_rejects`), each with `ok` and the figures.
pub(super) fn check_accounting(
    graph: &Graph,
    stats: &[Arc<Mutex<NodeStats>>],
    files: &[ShardInfo],
) -> serde_json::Map<String, Value> {
    let mut res = serde_json::Map::new();
    let mut routed_to_rejects = 0u64;
    for (i, s) in graph.spec.nodes.iter().enumerate() {
        let st = lock(&stats[i]);
        let ports: u64 = st.ports.iter().map(|p| p.docs).sum();
        let rejected: u64 = graph.kinds[i]
            .ports
            .iter()
            .enumerate()
            .filter(|(_, n)| **n == REJECTED)
            .map(|(p, _)| st.ports[p].docs)
            .sum();
        for (p, n) in graph.kinds[i].ports.iter().enumerate() {
            if *n == REJECTED && graph.consumers[i][p].is_empty() {
                routed_to_rejects += st.ports[p].docs;
            }
        }
        let role = graph.kinds[i].role;
        let (expected_out, rule, extra) = match (role, st.accounting) {
            (Role::Sink, None | Some(Accounting::Conserving)) => {
                let rows: u64 = files
                    .iter()
                    .filter(|f| f.node == s.name)
                    .map(|f| f.rows)
                    .sum();
                let ok = rows == st.docs_in;
                res.insert(
                    s.name.clone(),
                    json!({
                        "rule": "in = rows written",
                        "in": st.docs_in,
                        "rows_written": rows,
                        "ok": ok,
                        "detail": format!("{} documents in, {} rows written", st.docs_in, rows),
                    }),
                );
                continue;
            }
            (_, Some(Accounting::Copies { extra })) => {
                (st.docs_in + extra, "in + copies = out + rejected", extra)
            }
            (_, Some(Accounting::Merging { consumed })) => {
                let ok = st.docs_in == consumed + rejected;
                res.insert(
                    s.name.clone(),
                    json!({
                        "rule": "in = merged + rejected",
                        "in": st.docs_in,
                        "merged": consumed,
                        "rejected": rejected,
                        "rows_out": ports - rejected,
                        "ok": ok,
                        "detail": format!(
                            "{} documents in, {} merged into rows, {} rejected: {} unaccounted",
                            st.docs_in, consumed, rejected,
                            st.docs_in as i64 - (consumed + rejected) as i64
                        ),
                    }),
                );
                continue;
            }
            _ => (st.docs_in, "in = out + rejected", 0),
        };
        let ok = expected_out == ports;
        res.insert(
            s.name.clone(),
            json!({
                "rule": rule,
                "in": st.docs_in,
                "copies": extra,
                "out": ports - rejected,
                "rejected": rejected,
                "ok": ok,
                "detail": format!(
                    "{} documents in{}, {} out and {} rejected: {} unaccounted",
                    st.docs_in,
                    if extra > 0 { format!(" (+{extra} copies)") } else { String::new() },
                    ports - rejected,
                    rejected,
                    expected_out as i64 - ports as i64
                ),
            }),
        );
    }
    let written: u64 = files
        .iter()
        .filter(|f| f.path.starts_with("rejects/"))
        .map(|f| f.rows)
        .sum();
    res.insert(
        "_rejects".into(),
        json!({
            "rule": "rows written = rejected documents routed to rejects/",
            "in": routed_to_rejects,
            "rows_written": written,
            "ok": written == routed_to_rejects,
            "detail": format!("{routed_to_rejects} rejected documents, {written} reject rows written"),
        }),
    );
    res
}

pub(super) fn stats_to_json(
    graph: &Graph,
    stats: &[Arc<Mutex<NodeStats>>],
    extras: &Extras,
    wall: f64,
    opts: &RunOptions,
) -> Value {
    let mut nodes = serde_json::Map::new();
    for (i, s) in graph.spec.nodes.iter().enumerate() {
        let st = lock(&stats[i]);
        let mut ports = serde_json::Map::new();
        for (p, name) in graph.kinds[i].ports.iter().enumerate() {
            ports.insert(
                name.to_string(),
                json!({"docs": st.ports[p].docs, "bytes": st.ports[p].bytes}),
            );
        }
        let mut node = json!({
            "kind": s.kind,
            "role": format!("{:?}", graph.kinds[i].role).to_lowercase(),
            "docs_in": st.docs_in,
            "bytes_in": st.bytes_in,
            "ports": ports,
            "rejects": st.rejects,
            "busy_secs": st.busy.as_secs_f64(),
            "extra": extras.get(&s.name).and_then(|e| e.0.clone()).unwrap_or(Value::Null),
        });
        if graph.kinds[i].role == Role::Source {
            node["splits"] = json!(st.splits);
            node["bad_records"] = json!({
                "count": st.bad_count,
                "by_reason": st.bad_by_reason,
                "examples": st.bad_examples,
            });
        }
        nodes.insert(s.name.clone(), node);
    }
    json!({
        "sluice_version": env!("CARGO_PKG_VERSION"),
        "config_hash": graph.spec.config_hash,
        "rank": opts.rank,
        "world_size": opts.world_size,
        "threads": opts.threads,
        "wall_secs": wall,
        "nodes": nodes,
    })
}

pub(super) fn manifest_json(
    graph: &Graph,
    mut files: Vec<ShardInfo>,
    extras: &Extras,
    opts: &RunOptions,
) -> Value {
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let (rejects, shards): (Vec<ShardInfo>, Vec<ShardInfo>) = files
        .into_iter()
        .partition(|f| f.path.starts_with("rejects/"));
    let mut nodes = serde_json::Map::new();
    for s in &graph.spec.nodes {
        if let Some(v) = extras.get(&s.name).and_then(|e| e.1.clone()) {
            nodes.insert(s.name.clone(), v);
        }
    }
    json!({
        "sluice_version": env!("CARGO_PKG_VERSION"),
        "config_hash": graph.spec.config_hash,
        "config_path": graph.spec.path,
        "rank": opts.rank,
        "world_size": opts.world_size,
        "totals": {
            "rows": shards.iter().map(|s| s.rows).sum::<u64>(),
            "tokens": shards.iter().map(|s| s.tokens).sum::<u64>(),
            "bytes": shards.iter().map(|s| s.bytes).sum::<u64>(),
            "reject_rows": rejects.iter().map(|s| s.rows).sum::<u64>(),
        },
        "shards": shards,
        "rejects": rejects,
        "nodes": nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph;

    fn graph() -> Graph {
        let yaml = "nodes:
  docs:
    kind: ingest_jsonl
    paths: [samples/text/cmrc2018_zh.jsonl]
  long:
    kind: length_filter
    inputs: [docs]
    min_chars: 300
  shards:
    kind: parquet_shards
    inputs: [long]
";
        graph::check(crate::config::parse(yaml, "t.yaml").unwrap()).unwrap()
    }

    fn stats(g: &Graph, f: impl Fn(usize, &mut NodeStats)) -> Vec<Arc<Mutex<NodeStats>>> {
        (0..g.spec.nodes.len())
            .map(|i| {
                let mut s = NodeStats {
                    ports: g.kinds[i]
                        .ports
                        .iter()
                        .map(|_| PortStat::default())
                        .collect(),
                    ..Default::default()
                };
                f(i, &mut s);
                Arc::new(Mutex::new(s))
            })
            .collect()
    }

    fn shard(path: &str, node: &str, rows: u64) -> ShardInfo {
        ShardInfo {
            path: path.into(),
            node: node.into(),
            rows,
            tokens: 0,
            bytes: 0,
            sha256: String::new(),
        }
    }

    /// Source 10 out; filter 10 in, 7 out, 3 rejected; sink 7 rows; rejects 3 rows.
    fn consistent(i: usize, s: &mut NodeStats) {
        match i {
            0 => {
                s.docs_in = 10;
                s.ports[0].docs = 10;
            }
            1 => {
                s.docs_in = 10;
                s.ports[0].docs = 7;
                s.ports[1].docs = 3;
            }
            _ => s.docs_in = 7,
        }
    }

    #[test]
    fn consistent_counts_pass() {
        let g = graph();
        let files = [
            shard("shards/a.parquet", "shards", 7),
            shard("rejects/long.parquet", "long", 3),
        ];
        let acc = check_accounting(&g, &stats(&g, consistent), &files);
        for (k, v) in &acc {
            assert_eq!(v["ok"], true, "{k}: {v}");
        }
    }

    #[test]
    fn a_lost_document_is_caught_and_named() {
        let g = graph();
        let files = [
            shard("shards/a.parquet", "shards", 7),
            shard("rejects/long.parquet", "long", 3),
        ];
        // The filter takes 10 in but only 9 leave: one vanished.
        let st = stats(&g, |i, s| {
            consistent(i, s);
            if i == 1 {
                s.ports[1].docs = 2;
            }
        });
        let acc = check_accounting(&g, &st, &files);
        assert_eq!(acc["long"]["ok"], false);
        assert!(acc["long"]["detail"]
            .as_str()
            .unwrap()
            .contains("1 unaccounted"));
        // A sink that wrote fewer rows than it took in, and a rejects writer that lost one.
        let files = [
            shard("shards/a.parquet", "shards", 6),
            shard("rejects/long.parquet", "long", 2),
        ];
        let acc = check_accounting(&g, &stats(&g, consistent), &files);
        assert_eq!(acc["shards"]["ok"], false);
        assert_eq!(acc["_rejects"]["ok"], false);
        // Copies and merges are judged by their own rule.
        let st = stats(&g, |i, s| {
            consistent(i, s);
            if i == 1 {
                s.ports[0].docs = 9;
                s.accounting = Some(Accounting::Copies { extra: 2 });
            }
        });
        let files = [
            shard("shards/a.parquet", "shards", 7),
            shard("rejects/long.parquet", "long", 3),
        ];
        assert_eq!(check_accounting(&g, &st, &files)["long"]["ok"], true);
        let st = stats(&g, |i, s| {
            consistent(i, s);
            if i == 1 {
                s.ports[0].docs = 1;
                s.accounting = Some(Accounting::Merging { consumed: 7 });
            }
        });
        assert_eq!(check_accounting(&g, &st, &files)["long"]["ok"], true);
    }
}
