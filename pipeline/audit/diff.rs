//! `sluice diff RUN_A RUN_B`: what changed between two runs, per stage and reason.
//!
//! Both runs are reduced by the same SQL ([`DIFF_SQL`]) to `(section, stage, key, metric,
//! value)` rows, then joined here. Sections:
//! * `node`: per node `docs_in`, `docs_out`, `rejected` (stats.json);
//! * `reject`: per stage and reason, `docs` counted (stats.json) and `chars` of the
//!   written rejects (rejects/);
//! * `output`: per source, `docs` and `tokens` in the document shards;
//! * `sink`: per sink node, `rows` and `tokens` of its shards (manifest.json).
//!
//! A row present in one run only shows the other side as NULL. The result is a table in
//! any [`super::Format`], and the report shows it as a section (`--baseline`).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};

use super::Audit;
use crate::error::Result;

/// The per-run reduction both sides of a diff run.
pub const DIFF_SQL: &str = "
SELECT 'node' AS section, node AS stage, '' AS key, 'docs_in' AS metric, CAST(SUM(docs_in) AS BIGINT) AS value FROM nodes GROUP BY node
UNION ALL SELECT 'node', node, '', 'docs_out', CAST(SUM(docs_out) AS BIGINT) FROM nodes GROUP BY node
UNION ALL SELECT 'node', node, '', 'rejected', CAST(SUM(rejected) AS BIGINT) FROM nodes GROUP BY node
UNION ALL SELECT 'reject', node, key, 'docs', CAST(SUM(docs) AS BIGINT) FROM stats WHERE metric = 'reject' GROUP BY node, key
UNION ALL SELECT 'reject', stage, reason, 'chars', CAST(SUM(n_chars) AS BIGINT) FROM rejects GROUP BY stage, reason
UNION ALL SELECT 'output', source, '', 'docs', CAST(COUNT(*) AS BIGINT) FROM docs WHERE n_chars IS NOT NULL GROUP BY source
UNION ALL SELECT 'output', source, '', 'tokens', CAST(SUM(n_tokens) AS BIGINT) FROM docs WHERE n_chars IS NOT NULL GROUP BY source
UNION ALL SELECT 'sink', node, '', 'rows', CAST(SUM(rows) AS BIGINT) FROM manifest WHERE kind = 'shard' GROUP BY node
UNION ALL SELECT 'sink', node, '', 'tokens', CAST(SUM(tokens) AS BIGINT) FROM manifest WHERE kind = 'shard' GROUP BY node
";

type Key = (u8, String, String, String);

fn section_rank(s: &str) -> u8 {
    match s {
        "node" => 0,
        "reject" => 1,
        "output" => 2,
        _ => 3,
    }
}

fn reduce(audit: &Audit) -> Result<BTreeMap<Key, (String, Option<i64>)>> {
    let (_, batches) = audit.sql(DIFF_SQL)?;
    let mut out = BTreeMap::new();
    for b in &batches {
        let col = |i: usize| arrow::compute::cast(b.column(i), &DataType::Utf8);
        let (sec, stage, key, metric) = (col(0)?, col(1)?, col(2)?, col(3)?);
        let (sec, stage, key, metric) = (
            sec.as_string::<i32>(),
            stage.as_string::<i32>(),
            key.as_string::<i32>(),
            metric.as_string::<i32>(),
        );
        let value = b.column(4).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let s = sec.value(i).to_string();
            let k = (
                section_rank(&s),
                stage.value(i).to_string(),
                key.value(i).to_string(),
                metric.value(i).to_string(),
            );
            let v = (!value.is_null(i)).then(|| value.value(i));
            out.insert(k, (s, v));
        }
    }
    Ok(out)
}

/// Diff two opened runs: columns `section, stage, key, metric, a, b, delta, pct_change`.
/// With `changed_only`, rows whose value is the same on both sides are left out.
pub fn diff(a: &Audit, b: &Audit, changed_only: bool) -> Result<(SchemaRef, RecordBatch)> {
    let ra = reduce(a)?;
    let rb = reduce(b)?;
    let mut keys: Vec<&Key> = ra.keys().chain(rb.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut section = StringBuilder::new();
    let mut stage = StringBuilder::new();
    let mut key = StringBuilder::new();
    let mut metric = StringBuilder::new();
    let mut va = Int64Builder::new();
    let mut vb = Int64Builder::new();
    let mut delta = Int64Builder::new();
    let mut pct = Float64Builder::new();
    for k in keys {
        let name = ra
            .get(k)
            .or_else(|| rb.get(k))
            .map(|(s, _)| s.clone())
            .unwrap_or_default();
        let a_v = ra.get(k).and_then(|v| v.1);
        let b_v = rb.get(k).and_then(|v| v.1);
        if changed_only && a_v.unwrap_or(0) == b_v.unwrap_or(0) {
            continue;
        }
        section.append_value(name);
        stage.append_value(&k.1);
        key.append_value(&k.2);
        metric.append_value(&k.3);
        va.append_option(a_v);
        vb.append_option(b_v);
        let d = b_v.unwrap_or(0) - a_v.unwrap_or(0);
        delta.append_value(d);
        pct.append_option(
            a_v.filter(|x| *x != 0)
                .map(|x| ((d as f64 / x as f64) * 10000.0).round() / 100.0),
        );
    }
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("section", DataType::Utf8, false),
        Field::new("stage", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::Int64, true),
        Field::new("delta", DataType::Int64, false),
        Field::new("pct_change", DataType::Float64, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(section.finish()),
        Arc::new(stage.finish()),
        Arc::new(key.finish()),
        Arc::new(metric.finish()),
        Arc::new(va.finish()),
        Arc::new(vb.finish()),
        Arc::new(delta.finish()),
        Arc::new(pct.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols)?;
    Ok((schema, batch))
}
