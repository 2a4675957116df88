//! Mixing, decontamination and packing end to end through the runtime: the shipped
//! `configs/mix_pack.yaml` on the sample data, read back from the Parquet it writes.

use std::path::Path;

use arrow::array::{Array, UInt32Array};
use serde_json::Value;

use crate::common::*;

struct Row {
    input_ids: Vec<u32>,
    n_tokens: u32,
    doc_offsets: Vec<u32>,
    n_pad: u32,
}

fn packed_rows(dir: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in record_batches(dir, "shards") {
        let ids = sluice::arrow_io::u32_list_column(&b, "input_ids")
            .unwrap()
            .unwrap();
        let offs = sluice::arrow_io::u32_list_column(&b, "doc_offsets")
            .unwrap()
            .unwrap();
        let u32col = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_any()
                .downcast_ref::<UInt32Array>()
                .unwrap()
                .clone()
        };
        let (nt, np) = (u32col("n_tokens"), u32col("n_pad"));
        for i in 0..b.num_rows() {
            rows.push(Row {
                input_ids: ids[i].clone().unwrap(),
                n_tokens: nt.value(i),
                doc_offsets: offs[i].clone().unwrap(),
                n_pad: np.value(i),
            });
        }
        assert_eq!(nt.null_count(), 0);
    }
    rows
}

fn json(dir: &Path, f: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(f)).unwrap()).unwrap()
}

#[test]
fn mix_pack_config_end_to_end() {
    let yaml = std::fs::read_to_string(root().join("configs/mix_pack.yaml")).unwrap();
    let a = tempfile::tempdir().unwrap();
    run_yaml(&yaml, a.path(), 2);
    let m = json(a.path(), "manifest.json");
    let mix = &m["nodes"]["mixture"];
    assert_eq!(mix["within_tolerance"], true, "{mix:#}");
    assert_eq!(mix["shortfall"].as_array().unwrap().len(), 0);
    for (src, want) in [("web", 0.85), ("synthetic", 0.15)] {
        let got = mix["sources"][src]["achieved_share"].as_f64().unwrap();
        assert!((got - want).abs() < 0.005, "{src}: {got}");
        assert_eq!(mix["sources"][src]["token_count"], "exact");
    }
    // Synthetic is scarce: it is upsampled to its cap, web is downsampled.
    assert!((mix["sources"]["synthetic"]["epochs"].as_f64().unwrap() - 4.0).abs() < 1e-9);
    let pack = &m["nodes"]["pack"];
    // The sample mix is small (11 synthetic records cap it at ~19k tokens): best-fit uses the
    // minimum possible number of sequences, so all padding is the unavoidable remainder.
    // (The < 2% padding goal is checked on the whole sample corpus in `stages::pack`.)
    let real_tokens = pack["real_tokens"].as_u64().unwrap();
    assert_eq!(
        pack["sequences"].as_u64().unwrap(),
        real_tokens.div_ceil(4096),
        "{pack:#}"
    );

    let rows = packed_rows(a.path());
    assert_eq!(rows.len() as u64, pack["sequences"].as_u64().unwrap());
    let mut real = 0u64;
    let mut segments = 0u64;
    for r in &rows {
        assert_eq!(r.input_ids.len(), 4096);
        assert_eq!(r.n_tokens + r.n_pad, 4096);
        assert_eq!(r.doc_offsets[0], 0);
        for w in r.doc_offsets.windows(2) {
            assert!(w[0] < w[1]);
            assert_eq!(
                r.input_ids[w[1] as usize - 1],
                1,
                "a segment boundary follows EOS"
            );
        }
        assert!(r.input_ids[r.n_tokens as usize..].iter().all(|&t| t == 1));
        real += r.n_tokens as u64;
        segments += r.doc_offsets.len() as u64;
    }
    // Nothing lost or duplicated: real tokens = mixed document tokens (`tokenize` already
    // ended each with EOS, so `pack` adds none).
    let docs: u64 = ["web", "synthetic"]
        .iter()
        .map(|s| mix["sources"][s]["emitted_docs"].as_u64().unwrap())
        .sum();
    assert_eq!(real, mix["total_tokens"].as_u64().unwrap());
    assert!(segments >= docs);
    assert_eq!(m["totals"]["tokens"].as_u64().unwrap(), real);

    let st = json(a.path(), "stats.json");
    assert_eq!(
        st["nodes"]["decont"]["extra"]["benchmarks"]["gsm8k"]["entries"],
        1319
    );
    assert!(
        st["nodes"]["pack"]["extra"]["spill_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );

    // Deterministic whatever the thread count.
    let b = tempfile::tempdir().unwrap();
    run_yaml(&yaml, b.path(), 1);
    assert_eq!(files(a.path(), "shards"), files(b.path(), "shards"));

    // The packed schema as pyarrow sees it, and per-row traceability.
    let Some(py) = python_with(&["pyarrow"]) else {
        eprintln!("skipping pyarrow check: pyarrow not installed");
        return;
    };
    let script = r#"
import sys, glob, pyarrow.parquet as pq, pyarrow as pa
t = pa.concat_tables([pq.read_table(f) for f in sorted(glob.glob(sys.argv[1] + "/shards/*.parquet"))])
s = t.schema
assert s.field("input_ids").type == pa.list_(pa.uint32()), s
assert s.field("doc_offsets").type == pa.list_(pa.uint32()), s
assert pa.types.is_list(s.field("doc_ids").type) and s.field("doc_ids").type.value_type == pa.utf8(), s
st = s.field("source_mix").type.value_type
assert pa.types.is_struct(st) and st.field("source").type == pa.utf8() and st.field("tokens").type == pa.uint32(), s
for r in t.to_pylist():
    assert len(r["doc_ids"]) == len(r["doc_offsets"])
    assert sum(x["tokens"] for x in r["source_mix"]) == r["n_tokens"]
    assert all(i.split(":")[0] in ("web", "synthetic") for i in r["doc_ids"]), r["doc_ids"][:3]
    assert {x["source"] for x in r["source_mix"]} <= {"web", "synthetic"}, r["source_mix"]
print("ok", t.num_rows)
"#;
    run_python(&py, script, &[a.path().as_os_str()]);
}

#[test]
fn decontamination_rejects_planted_benchmark_questions() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("web.jsonl");
    let gsm: Vec<Value> =
        std::fs::read_to_string(root().join("samples/benchmarks/gsm8k_test.jsonl"))
            .unwrap()
            .lines()
            .take(300)
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let mut lines: Vec<String> =
        std::fs::read_to_string(root().join("samples/text/cmrc2018_zh.jsonl"))
            .unwrap()
            .lines()
            .take(50)
            .map(String::from)
            .collect();
    for i in [3usize, 77, 150, 299] {
        let q = gsm[i]["question"].as_str().unwrap();
        lines.push(serde_json::json!({"id": format!("planted{i}"), "text": format!("课后练习：{q} 答案见下页。")}).to_string());
        // A near miss: the same question with one word in ten changed is kept.
        let near: Vec<&str> = q
            .split(' ')
            .enumerate()
            .map(|(j, w)| if j % 10 == 5 { "zebra" } else { w })
            .collect();
        lines.push(
            serde_json::json!({"id": format!("near{i}"), "text": near.join(" ")}).to_string(),
        );
    }
    std::fs::write(&input, lines.join("\n")).unwrap();
    let yaml = format!(
        r#"
nodes:
  web:
    kind: ingest_jsonl
    paths: [{}]
    id_field: id
  decont:
    kind: decontaminate
    inputs: [web]
    benchmarks:
      - name: gsm8k
        paths: [samples/benchmarks/gsm8k_test.jsonl]
        fields: [question]
  shards:
    kind: parquet_shards
    inputs: [decont]
"#,
        input.display()
    );
    let out = dir.path().join("out");
    run_yaml(&yaml, &out, 2);
    let st = json(&out, "stats.json");
    assert_eq!(
        st["nodes"]["decont"]["extra"]["benchmarks"]["gsm8k"]["docs_matched"],
        4
    );
    assert_eq!(st["nodes"]["decont"]["ports"]["rejected"]["docs"], 4);
    assert_eq!(st["nodes"]["decont"]["rejects"]["contaminated"], 4);
    let kept: Vec<String> = read_doc_rows(&out).into_iter().map(|r| r.0).collect();
    assert_eq!(kept.len(), 54);
    assert!(
        kept.iter().filter(|id| id.contains("near")).count() == 4,
        "near misses are kept"
    );
    // Reject rows name the benchmark, the item and its coverage.
    let mut details = Vec::new();
    for b in record_batches(&out, "rejects") {
        details.extend(
            sluice::arrow_io::string_column(&b, "detail")
                .unwrap()
                .unwrap()
                .into_iter()
                .flatten(),
        );
    }
    assert_eq!(details.len(), 4);
    assert!(
        details
            .iter()
            .all(|d| d.starts_with("benchmark=gsm8k item=") && d.contains(" coverage=1.000 ")),
        "{details:?}"
    );
}
