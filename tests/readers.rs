//! The shards read well in the usual tools (issue 23): a real Chinese run (normalize,
//! langid, segment_zh, heuristic_filter, pii_redact, line_dedup, minhash_dedup, tokenize;
//! several shards) is read back with pyarrow, DuckDB, polars and HF `datasets`. In each, a
//! nested attribute is one field access, integer attributes come back as integers (and
//! equal the `n_tokens` column), and every shard and reject file of the run has the same
//! `attrs` type. The audit's `json_*` functions read the struct with
//! the SQL they always took.

use serde_json::Value;

use crate::common::*;

/// `configs/zh_text.yaml` with line and near-duplicate removal in the chain.
fn yaml() -> String {
    let base = std::fs::read_to_string(root().join("configs/zh_text.yaml")).unwrap();
    let base = base
        .replace("inputs: [pii]", "inputs: [near_dups]")
        .replace(
            "  tok:\n",
            "  lines:\n    kind: line_dedup\n    inputs: [pii]\n    min_chars: 50\n  near_dups:\n    kind: minhash_dedup\n    inputs: [lines]\n    threshold: 0.5\n  tok:\n",
        );
    assert!(base.contains("kind: minhash_dedup"), "{base}");
    format!("{base}    shard_rows: 300\n")
}

const SCRIPT: &str = r#"
import glob, json, os, sys
import pyarrow as pa, pyarrow.parquet as pq
import duckdb, polars as pl

run = sys.argv[1]
shards = sorted(glob.glob(run + "/shards/*.parquet"))
rejects = sorted(glob.glob(run + "/rejects/*.parquet"))
out = {}

# pyarrow: one attrs type in every file, ints typed int64, nested dicts with ints.
types = {str(pq.read_schema(f).field("attrs").type) for f in shards + rejects}
out["files"] = [len(shards), len(rejects)]
out["one_type"] = len(types) == 1
t = pq.read_table(shards)
at = t.schema.field("attrs").type
out["arrow"] = {at.field(i).name: {c.name: str(c.type) for c in at.field(i).type} for i in range(at.num_fields)}
rows = t.select(["n_tokens", "attrs"]).to_pylist()
out["pyarrow_ints"] = all(type(r["attrs"]["tokenize"]["n_tokens"]) is int
                          and r["attrs"]["tokenize"]["n_tokens"] == r["n_tokens"]
                          and type(r["attrs"]["segment_zh"]["words"]) is int
                          and type(r["attrs"]["langid"]["score"]) is float for r in rows)
out["rows"] = len(rows)

# DuckDB: dotted access into the struct, BIGINT kept.
g = run + "/shards/*.parquet"
q = duckdb.sql(f"""
  SELECT count(*) AS n,
         count(*) FILTER (WHERE attrs.tokenize.n_tokens = n_tokens) AS same,
         any_value(typeof(attrs.tokenize.n_tokens)) AS t_int,
         any_value(typeof(attrs.langid.score)) AS t_float,
         sum(attrs.dedup.cluster_size) AS cluster_docs,
         count(*) FILTER (WHERE attrs.langid.score > 0.5) AS zh_conf
  FROM '{g}'""").fetchall()[0]
out["duckdb"] = dict(zip(["n", "same", "t_int", "t_float", "cluster_docs", "zh_conf"], q))
r = duckdb.sql(f"""
  SELECT reason, count(*) AS n, max(attrs.heuristic_filter.chars) AS max_chars
  FROM '{run}/rejects/*.parquet' WHERE stage = 'quality' GROUP BY reason ORDER BY reason""").fetchall()
out["duckdb_rejects"] = [list(x) for x in r]

# polars: struct.field chains, Int64 kept.
df = pl.read_parquet(shards)
n = df.select(pl.col("attrs").struct.field("tokenize").struct.field("n_tokens"))
out["polars_dtype"] = str(n.dtypes[0])
out["polars_same"] = n.to_series().to_list() == df["n_tokens"].cast(pl.Int64).to_list()
flat = df.select(pl.col("attrs").struct.field("heuristic_filter")).unnest("heuristic_filter")
out["polars_hf_chars"] = str(flat.schema["chars"])

# HF datasets: features typed, rows are nested dicts with ints.
os.environ["HF_HUB_OFFLINE"] = "1"
import datasets
ds = datasets.load_dataset("parquet", data_files=shards, split="train", cache_dir=sys.argv[2])
f = ds.features["attrs"]
out["hf_features"] = [f["tokenize"]["n_tokens"].dtype, f["langid"]["score"].dtype]
out["hf_ints"] = all(type(x["attrs"]["tokenize"]["n_tokens"]) is int
                     and x["attrs"]["tokenize"]["n_tokens"] == x["n_tokens"] for x in ds)
out["hf_rows"] = len(ds)
print(json.dumps(out))
"#;

#[test]
fn attrs_read_as_typed_nested_fields_in_pyarrow_duckdb_polars_and_datasets() {
    let out = tempfile::tempdir().unwrap();
    run_yaml(&yaml(), out.path(), 2);
    let kept = read_doc_rows(out.path()).len();
    assert!(kept > 700, "{kept} documents kept");

    // The engine's own reader: the struct round-trips into the in-memory attributes.
    for b in record_batches(out.path(), "shards") {
        let attrs = sluice::arrow_io::attrs_column(&b).unwrap().unwrap();
        let n_tok = b
            .column_by_name("n_tokens")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::UInt32Array>()
            .unwrap()
            .clone();
        for (i, a) in attrs.iter().enumerate() {
            assert_eq!(a["tokenize.n_tokens"], n_tok.value(i) as f64);
            assert!(a.contains_key("langid.score") && a.contains_key("dedup.cluster_id"));
        }
    }

    #[cfg(feature = "audit")]
    {
        let audit = sluice::audit::Audit::open(&[out.path().to_path_buf()]).unwrap();
        let j = |sql: &str| -> Value {
            let (s, b) = audit.sql(sql).unwrap();
            serde_json::from_str(
                &sluice::audit::format_batches(&s, &b, sluice::audit::Format::Json).unwrap(),
            )
            .unwrap()
        };
        // The SQL written for the JSON strings, unchanged.
        let v = j("SELECT COUNT(*) AS n,
                   SUM(CASE WHEN json_get_f64(attrs, 'tokenize.n_tokens') = n_tokens THEN 1 ELSE 0 END) AS same,
                   SUM(CASE WHEN json_find_f64(attrs, 'n_tokens') = n_tokens THEN 1 ELSE 0 END) AS found,
                   MIN(json_find_f64(attrs, 'cluster_size')) AS min_cluster,
                   SUM(CASE WHEN json_get(attrs, 'segment_zh.words') IS NOT NULL THEN 1 ELSE 0 END) AS words,
                   SUM(CASE WHEN json_get_f64(attrs, 'no.such') IS NULL THEN 1 ELSE 0 END) AS absent
                   FROM docs");
        let n = v[0]["n"].as_u64().unwrap();
        assert_eq!(n as usize, kept);
        for k in ["same", "found", "words", "absent"] {
            assert_eq!(v[0][k].as_u64(), Some(n), "{k}: {v}");
        }
        assert_eq!(v[0]["min_cluster"].as_f64(), Some(1.0), "{v}");
        // json_keys lists the set attributes, sorted: a kept document has every stage's.
        let v = j("SELECT json_keys(attrs) AS k FROM docs ORDER BY id LIMIT 1");
        let keys: Vec<&str> = v[0]["k"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        for k in [
            "dedup.cluster_id",
            "langid.score",
            "heuristic_filter.chars",
            "segment_zh.words",
            "tokenize.n_tokens",
        ] {
            assert!(keys.contains(&k), "{k} not in {keys:?}");
        }
        // A document rejected by `quality` has no attribute of the later stages.
        let v = j("SELECT json_keys(attrs) AS k FROM rejects WHERE stage = 'quality' LIMIT 1");
        let ks = v[0]["k"].to_string();
        assert!(
            ks.contains("heuristic_filter.chars") && !ks.contains("tokenize"),
            "{ks}"
        );
        // Nested access keeps the integer type in DataFusion too.
        let v = j("SELECT SUM(attrs['tokenize']['n_tokens']) AS s, SUM(n_tokens) AS t FROM docs");
        assert_eq!(v[0]["s"], v[0]["t"], "{v}");
        // The `attrs` preset sees every declared key that any kept document set.
        let (_, b) = audit
            .sql(sluice::audit::presets::get("attrs").unwrap().sql)
            .unwrap();
        assert!(b.iter().map(|b| b.num_rows()).sum::<usize>() >= 10);
    }

    let Some(py) = python_with(&["pyarrow", "duckdb", "polars", "datasets"]) else {
        skip(
            "python-readers",
            "python3 with pyarrow, duckdb, polars and datasets (pip install pyarrow duckdb polars datasets)",
        );
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let stdout = run_python(
        &py,
        SCRIPT,
        &[out.path().as_os_str(), cache.path().as_os_str()],
    );
    let v: Value = serde_json::from_slice(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&stdout)));
    eprintln!("{v:#}");
    // Several shards and a rejects file: one `attrs` type in all.
    assert!(v["files"][0].as_u64().unwrap() >= 3 && v["files"][1].as_u64().unwrap() >= 1);
    assert_eq!(v["one_type"], true, "{v}");
    let arrow = &v["arrow"];
    assert_eq!(arrow["tokenize"]["n_tokens"], "int64");
    assert_eq!(arrow["segment_zh"]["words"], "int64");
    assert_eq!(arrow["heuristic_filter"]["chars"], "int64");
    assert_eq!(arrow["dedup"]["cluster_size"], "int64");
    assert_eq!(arrow["pii_redact"]["total"], "int64");
    assert_eq!(arrow["langid"]["score"], "double");
    assert_eq!(arrow["line_dedup"]["removed_frac"], "double");
    assert_eq!(v["rows"].as_u64(), Some(kept as u64));
    assert_eq!(v["pyarrow_ints"], true);
    let d = &v["duckdb"];
    assert_eq!(d["n"].as_u64(), Some(kept as u64));
    assert_eq!(d["same"], d["n"]);
    assert_eq!(d["t_int"], "BIGINT");
    assert_eq!(d["t_float"], "DOUBLE");
    assert!(d["cluster_docs"].as_u64().unwrap() >= kept as u64);
    assert!(
        d["zh_conf"].as_u64().unwrap() * 10 >= kept as u64 * 9,
        "{d}"
    );
    assert!(!v["duckdb_rejects"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(v["polars_dtype"], "Int64");
    assert_eq!(v["polars_same"], true);
    assert_eq!(v["polars_hf_chars"], "Int64");
    assert_eq!(v["hf_features"], serde_json::json!(["int64", "float64"]));
    assert_eq!(v["hf_ints"], true);
    assert_eq!(v["hf_rows"].as_u64(), Some(kept as u64));
}

/// Two nodes declaring one attribute with two types cannot share a shard schema:
/// `sluice validate` says so, naming both nodes, before anything runs.
#[test]
fn conflicting_attribute_types_are_a_config_problem() {
    let yaml = r#"
nodes:
  wiki:
    kind: ingest_jsonl
    paths: [samples/text/cmrc2018_zh.jsonl]
  tok:
    kind: tokenize
    inputs: [wiki]
    tokenizer: samples/tokenizers/qwen2/tokenizer.json
  q:
    kind: quality_classifier
    inputs: [tok]
    model: samples/models/zh_quality.ftz
    label: hq
    attr: tokenize.n_tokens
  shards:
    kind: parquet_shards
    inputs: [q]
"#;
    let spec = sluice::config::parse(yaml, "t.yaml").unwrap();
    let ctx = sluice::stage::BuildCtx::for_validation(&spec.run);
    let Err(problems) = sluice::runtime::validate(spec, &ctx) else {
        panic!("the config validated");
    };
    let all = problems.join("\n");
    assert!(
        all.contains("tokenize.n_tokens") && all.contains("`tok`") && all.contains("`q`"),
        "{all}"
    );
}
