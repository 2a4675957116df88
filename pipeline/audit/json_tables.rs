//! The audit tables built from a run's JSON files (`stats.json`, `manifest.json` of every
//! rank): `stats`, `nodes`, `manifest` and `mixture`.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, RecordBatch, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema};
use serde_json::Value;

use super::RunJson;
use crate::error::Result;

fn u64_of(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn nodes_of(v: &Value) -> impl Iterator<Item = (&String, &Value)> {
    v.get("nodes")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
}

pub(super) fn stats_batch(stats: &[RunJson]) -> Result<RecordBatch> {
    let mut run = StringBuilder::new();
    let mut node = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut role = StringBuilder::new();
    let mut metric = StringBuilder::new();
    let mut key = StringBuilder::new();
    let mut docs = UInt64Builder::new();
    let mut bytes = UInt64Builder::new();
    let mut push =
        |r: &str, n: &str, nv: &Value, m: &str, k: &str, d: Option<u64>, b: Option<u64>| {
            run.append_value(r);
            node.append_value(n);
            kind.append_value(str_of(nv, "kind"));
            role.append_value(str_of(nv, "role"));
            metric.append_value(m);
            key.append_value(k);
            docs.append_option(d);
            bytes.append_option(b);
        };
    for rj in stats {
        for (n, nv) in nodes_of(&rj.value) {
            push(
                &rj.run,
                n,
                nv,
                "docs_in",
                "",
                nv.get("docs_in").and_then(u64_of),
                nv.get("bytes_in").and_then(u64_of),
            );
            for (p, pv) in nv
                .get("ports")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                push(
                    &rj.run,
                    n,
                    nv,
                    "port",
                    p,
                    pv.get("docs").and_then(u64_of),
                    pv.get("bytes").and_then(u64_of),
                );
            }
            for (reason, c) in nv
                .get("rejects")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                push(&rj.run, n, nv, "reject", reason, u64_of(c), None);
            }
            let bad = nv
                .get("bad_records")
                .and_then(|b| b.get("by_reason"))
                .and_then(Value::as_object);
            for (reason, c) in bad.into_iter().flatten() {
                push(&rj.run, n, nv, "bad_record", reason, u64_of(c), None);
            }
        }
    }
    let schema = Schema::new(vec![
        Field::new("run", DataType::Utf8, false),
        Field::new("node", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("docs", DataType::UInt64, true),
        Field::new("bytes", DataType::UInt64, true),
    ]);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(run.finish()),
        Arc::new(node.finish()),
        Arc::new(kind.finish()),
        Arc::new(role.finish()),
        Arc::new(metric.finish()),
        Arc::new(key.finish()),
        Arc::new(docs.finish()),
        Arc::new(bytes.finish()),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), cols)?)
}

pub(super) fn nodes_batch(stats: &[RunJson]) -> Result<RecordBatch> {
    let mut run = StringBuilder::new();
    let mut node = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut role = StringBuilder::new();
    let mut docs_in = UInt64Builder::new();
    let mut bytes_in = UInt64Builder::new();
    let mut docs_out = UInt64Builder::new();
    let mut rejected = UInt64Builder::new();
    let mut bad = UInt64Builder::new();
    let mut busy = Float64Builder::new();
    let mut extra = StringBuilder::new();
    for rj in stats {
        for (n, nv) in nodes_of(&rj.value) {
            run.append_value(&rj.run);
            node.append_value(n);
            kind.append_value(str_of(nv, "kind"));
            role.append_value(str_of(nv, "role"));
            docs_in.append_option(nv.get("docs_in").and_then(u64_of));
            bytes_in.append_option(nv.get("bytes_in").and_then(u64_of));
            let port = |p: &str| {
                nv.get("ports")
                    .and_then(|ps| ps.get(p))
                    .and_then(|pv| pv.get("docs"))
                    .and_then(u64_of)
            };
            docs_out.append_option(port("out"));
            // The `rejected` port counts what was rejected whether or not a node consumed it;
            // fall back to the sum of the reasons for stats written without the port.
            let by_reason: Option<u64> = nv
                .get("rejects")
                .and_then(Value::as_object)
                .map(|m| m.values().filter_map(u64_of).sum());
            rejected.append_option(port("rejected").or(by_reason));
            bad.append_option(
                nv.get("bad_records")
                    .and_then(|b| b.get("count"))
                    .and_then(u64_of),
            );
            busy.append_option(nv.get("busy_secs").and_then(Value::as_f64));
            match nv.get("extra") {
                Some(Value::Null) | None => extra.append_null(),
                Some(v) => extra.append_value(v.to_string()),
            }
        }
    }
    let schema = Schema::new(vec![
        Field::new("run", DataType::Utf8, false),
        Field::new("node", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("docs_in", DataType::UInt64, true),
        Field::new("bytes_in", DataType::UInt64, true),
        Field::new("docs_out", DataType::UInt64, true),
        Field::new("rejected", DataType::UInt64, true),
        Field::new("bad_records", DataType::UInt64, true),
        Field::new("busy_secs", DataType::Float64, true),
        Field::new("extra", DataType::Utf8, true),
    ]);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(run.finish()),
        Arc::new(node.finish()),
        Arc::new(kind.finish()),
        Arc::new(role.finish()),
        Arc::new(docs_in.finish()),
        Arc::new(bytes_in.finish()),
        Arc::new(docs_out.finish()),
        Arc::new(rejected.finish()),
        Arc::new(bad.finish()),
        Arc::new(busy.finish()),
        Arc::new(extra.finish()),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), cols)?)
}

pub(super) fn manifest_batch(manifests: &[RunJson]) -> Result<RecordBatch> {
    let mut run = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut path = StringBuilder::new();
    let mut node = StringBuilder::new();
    let mut rows = UInt64Builder::new();
    let mut tokens = UInt64Builder::new();
    let mut bytes = UInt64Builder::new();
    let mut sha = StringBuilder::new();
    for rj in manifests {
        for (k, list) in [("shard", "shards"), ("reject", "rejects")] {
            for e in rj
                .value
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                run.append_value(&rj.run);
                kind.append_value(k);
                path.append_value(str_of(e, "path"));
                node.append_value(str_of(e, "node"));
                rows.append_option(e.get("rows").and_then(u64_of));
                tokens.append_option(e.get("tokens").and_then(u64_of));
                bytes.append_option(e.get("bytes").and_then(u64_of));
                sha.append_value(str_of(e, "sha256"));
            }
        }
    }
    let schema = Schema::new(vec![
        Field::new("run", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("node", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, true),
        Field::new("tokens", DataType::UInt64, true),
        Field::new("bytes", DataType::UInt64, true),
        Field::new("sha256", DataType::Utf8, false),
    ]);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(run.finish()),
        Arc::new(kind.finish()),
        Arc::new(path.finish()),
        Arc::new(node.finish()),
        Arc::new(rows.finish()),
        Arc::new(tokens.finish()),
        Arc::new(bytes.finish()),
        Arc::new(sha.finish()),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), cols)?)
}

/// `(source, target share, achieved share, tokens)` of one mixture row.
pub(super) type MixRow = (String, Option<f64>, Option<f64>, Option<u64>);

/// Rows `(source, target, achieved, tokens)` of one node's manifest entry when it is a
/// `mix` report: `{sources: {src: {target_share, achieved_share, emitted_tokens, ..}}}`
/// (the format `stages/mix.rs` writes; `tests/mix.rs` checks this reader on a real run).
pub(super) fn mixture_rows(v: &Value) -> Vec<MixRow> {
    if let Some(ranks) = v.get("per_rank").and_then(Value::as_array) {
        return merge_rank_mixtures(ranks.iter().map(mixture_rows).collect());
    }
    let Some(sources) = v.get("sources").and_then(Value::as_object) else {
        return Vec::new();
    };
    sources
        .iter()
        .filter_map(|(s, sv)| {
            let t = sv.get("target_share").and_then(Value::as_f64);
            let a = sv.get("achieved_share").and_then(Value::as_f64);
            let k = sv.get("emitted_tokens").and_then(u64_of);
            (t.is_some() || a.is_some()).then(|| (s.clone(), t, a, k))
        })
        .collect()
}

/// A merged run keeps node manifests `per_rank`: targets agree, tokens add up, and the
/// achieved share is recomputed from the summed tokens when every rank reported tokens
/// (else it is the mean of the ranks' shares).
fn merge_rank_mixtures(ranks: Vec<Vec<MixRow>>) -> Vec<MixRow> {
    type Acc = (Option<f64>, Vec<f64>, Option<u64>, bool);
    let mut acc: std::collections::BTreeMap<String, Acc> = Default::default();
    for rows in &ranks {
        for (s, t, a, k) in rows {
            let e = acc
                .entry(s.clone())
                .or_insert((None, Vec::new(), Some(0), true));
            e.0 = e.0.or(*t);
            e.1.extend(a);
            match k {
                Some(k) => e.2 = e.2.map(|x| x + k),
                None => e.3 = false,
            }
        }
    }
    let all_tokens = acc.values().all(|e| e.3);
    let total: u64 = acc.values().filter_map(|e| e.2).sum();
    acc.into_iter()
        .map(|(s, (t, shares, tokens, _))| {
            let achieved = if all_tokens && total > 0 {
                tokens.map(|k| k as f64 / total as f64)
            } else if shares.is_empty() {
                None
            } else {
                Some(shares.iter().sum::<f64>() / shares.len() as f64)
            };
            (s, t, achieved, if all_tokens { tokens } else { None })
        })
        .collect()
}

pub(super) fn mixture_batch(manifests: &[RunJson]) -> Result<RecordBatch> {
    let mut run = StringBuilder::new();
    let mut node = StringBuilder::new();
    let mut source = StringBuilder::new();
    let mut target = Float64Builder::new();
    let mut achieved = Float64Builder::new();
    let mut tokens = UInt64Builder::new();
    for rj in manifests {
        for (n, nv) in nodes_of(&rj.value) {
            for (s, t, a, k) in mixture_rows(nv) {
                run.append_value(&rj.run);
                node.append_value(n);
                source.append_value(s);
                target.append_option(t);
                achieved.append_option(a);
                tokens.append_option(k);
            }
        }
    }
    let schema = Schema::new(vec![
        Field::new("run", DataType::Utf8, false),
        Field::new("node", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("target", DataType::Float64, true),
        Field::new("achieved", DataType::Float64, true),
        Field::new("tokens", DataType::UInt64, true),
    ]);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(run.finish()),
        Arc::new(node.finish()),
        Arc::new(source.finish()),
        Arc::new(target.finish()),
        Arc::new(achieved.finish()),
        Arc::new(tokens.finish()),
    ];
    Ok(RecordBatch::try_new(Arc::new(schema), cols)?)
}
