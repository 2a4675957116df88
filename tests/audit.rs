//! Audits over run directories: SQL counts agree with stats.json, every preset runs, several
//! run dirs read as one table, the report escapes hostile text, diff reports changes.
//!
//! `fixture` writes run directories with arrow/parquet directly, following the run-dir
//! schema of the engine (shards, rejects, stats.json, manifest.json).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, ListBuilder, RecordBatch, StringArray, UInt32Array, UInt32Builder,
    UInt64Array,
};
use parquet::arrow::ArrowWriter;
use serde_json::json;
use sluice::audit::{self, presets, report, Audit, Format};

pub const HOSTILE: &str = "<script>alert('x')</script><img src=x onerror=alert(1)> & \"quotes\"";

/// One kept document of the fixture.
struct Doc {
    id: String,
    source: &'static str,
    text: String,
    lang: &'static str,
    url: String,
    n_tokens: u32,
    attrs: std::collections::BTreeMap<String, f64>,
}

/// One rejected document of the fixture.
struct Rej {
    id: String,
    stage: &'static str,
    reason: &'static str,
    score: Option<f64>,
    url: String,
    text: String,
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// The fixture's attribute schema, as a run with a `len` and a `dedup` node declares it.
fn attr_schema() -> sluice::attrs::AttrSchema {
    use sluice::attrs::{AttrDecl, AttrSchema};
    AttrSchema::from_nodes([
        ("len", vec![AttrDecl::int("len.chars")]),
        ("dedup", vec![AttrDecl::int("dedup.cluster_size")]),
    ])
    .unwrap()
}

fn docs_batch(docs: &[Doc]) -> RecordBatch {
    let s = |f: &dyn Fn(&Doc) -> String| -> ArrayRef {
        Arc::new(StringArray::from(docs.iter().map(f).collect::<Vec<_>>()))
    };
    let mut tokens = ListBuilder::new(UInt32Builder::new());
    for d in docs {
        for t in 0..d.n_tokens {
            tokens.values().append_value(t);
        }
        tokens.append(true);
    }
    RecordBatch::try_new(
        sluice::arrow_io::doc_schema(true, &attr_schema()),
        vec![
            s(&|d| d.id.clone()),
            s(&|d| d.source.to_string()),
            s(&|d| d.text.clone()),
            s(&|d| d.lang.to_string()),
            s(&|d| d.url.clone()),
            Arc::new(tokens.finish()),
            Arc::new(UInt32Array::from(
                docs.iter().map(|d| d.n_tokens).collect::<Vec<_>>(),
            )),
            Arc::new(UInt64Array::from(
                docs.iter()
                    .map(|d| d.text.chars().count() as u64)
                    .collect::<Vec<_>>(),
            )),
            attr_schema()
                .to_array(docs.iter().map(|d| (d.id.as_str(), &d.attrs)))
                .unwrap()
                .unwrap(),
            s(&|_| "{}".to_string()),
        ],
    )
    .unwrap()
}

fn rejects_batch(rej: &[Rej]) -> RecordBatch {
    let s = |f: &dyn Fn(&Rej) -> String| -> ArrayRef {
        Arc::new(StringArray::from(rej.iter().map(f).collect::<Vec<_>>()))
    };
    RecordBatch::try_new(
        sluice::arrow_io::reject_schema(&attr_schema()),
        vec![
            s(&|r| r.id.clone()),
            s(&|_| "web".to_string()),
            s(&|r| r.stage.to_string()),
            s(&|r| r.reason.to_string()),
            Arc::new(Float64Array::from(
                rej.iter().map(|r| r.score).collect::<Vec<_>>(),
            )),
            s(&|r| format!("detail of {}", r.text)),
            s(&|r| r.url.clone()),
            Arc::new(UInt64Array::from(
                rej.iter()
                    .map(|r| r.text.chars().count() as u64)
                    .collect::<Vec<_>>(),
            )),
            s(&|r| r.text.clone()),
            {
                let none = std::collections::BTreeMap::new();
                attr_schema()
                    .to_array(rej.iter().map(|r| (r.id.as_str(), &none)))
                    .unwrap()
                    .unwrap()
            },
            s(&|_| "{}".to_string()),
        ],
    )
    .unwrap()
}

/// Write one rank's share of a synthetic run: `n` input documents, of which every 5th is
/// too short, every 7th (of the rest) is a duplicate, and one carries hostile HTML.
/// Returns (kept docs, rejects) counts.
fn fixture(dir: &Path, rank: u32, n: usize) -> (usize, usize) {
    let mut docs = Vec::new();
    let mut rej = Vec::new();
    for i in 0..n {
        let id = format!("web/r{rank}/{i}");
        let url = format!(
            "https://{}example{}.com/p/{i}",
            if i % 2 == 0 { "www." } else { "" },
            i % 3
        );
        let hostile = i == 3;
        let text = if hostile {
            format!("网页正文 {HOSTILE}")
        } else {
            format!("这是第{i}篇中文文档，内容足够长。")
        };
        if i % 5 == 0 {
            rej.push(Rej {
                id,
                stage: "len",
                reason: "too_short",
                score: Some(i as f64),
                url,
                text,
            });
        } else if i % 7 == 0 {
            rej.push(Rej {
                id,
                stage: "dedup",
                reason: "duplicate",
                score: Some(0.9),
                url,
                text,
            });
        } else {
            docs.push(Doc {
                id,
                source: if i % 4 == 0 { "syn" } else { "web" },
                text,
                lang: if i % 6 == 0 { "en" } else { "zh" },
                url,
                n_tokens: (i % 10) as u32 + 1,
                attrs: [
                    ("len.chars".to_string(), i as f64),
                    ("dedup.cluster_size".to_string(), (i % 3 + 1) as f64),
                ]
                .into(),
            });
        }
    }
    let tag = format!("r{rank:04}");
    write_parquet(
        &dir.join(format!("shards/out-{tag}-00000.parquet")),
        &docs_batch(&docs),
    );
    let (short, dup): (Vec<Rej>, Vec<Rej>) = rej.into_iter().partition(|r| r.stage == "len");
    let n_short = short.len();
    let n_dup = dup.len();
    write_parquet(
        &dir.join(format!("rejects/len-{tag}-00000.parquet")),
        &rejects_batch(&short),
    );
    write_parquet(
        &dir.join(format!("rejects/dedup-{tag}-00000.parquet")),
        &rejects_batch(&dup),
    );
    let kept = docs.len();
    let tokens: u64 = docs.iter().map(|d| d.n_tokens as u64).sum();
    let stats = json!({
        "sluice_version": "0.1.0", "config_hash": "abc", "world_size": 1, "wall_secs": 0.1,
        "nodes": {
            "web": {"kind": "ingest_jsonl", "role": "source", "docs_in": 0, "bytes_in": 0,
                    "ports": {"out": {"docs": n, "bytes": 100}, "rejected": {"docs": 0, "bytes": 0}},
                    "rejects": {}, "busy_secs": 0.01,
                    "bad_records": {"count": 2, "by_reason": {"invalid_json": 2}, "examples": []}, "extra": null},
            "len": {"kind": "length_filter", "role": "transform", "docs_in": n, "bytes_in": 100,
                    "ports": {"out": {"docs": n - n_short, "bytes": 90}, "rejected": {"docs": n_short, "bytes": 10}},
                    "rejects": {"too_short": n_short}, "busy_secs": 0.01,
                    "bad_records": {"count": 0, "by_reason": {}, "examples": []}, "extra": null},
            "dedup": {"kind": "exact_dedup", "role": "transform", "docs_in": n - n_short, "bytes_in": 90,
                    "ports": {"out": {"docs": kept, "bytes": 80}, "rejected": {"docs": n_dup, "bytes": 10}},
                    "rejects": {"duplicate": n_dup}, "busy_secs": 0.01,
                    "bad_records": {"count": 0, "by_reason": {}, "examples": []}, "extra": {"index_bytes": 10}},
            "out": {"kind": "parquet_shards", "role": "sink", "docs_in": kept, "bytes_in": 80,
                    "ports": {}, "rejects": {}, "busy_secs": 0.01,
                    "bad_records": {"count": 0, "by_reason": {}, "examples": []}, "extra": null}
        }
    });
    let manifest = json!({
        "sluice_version": "0.1.0", "config_hash": "abc", "world_size": 1,
        "shards": [{"path": format!("shards/out-{tag}-00000.parquet"), "node": "out", "rows": kept, "tokens": tokens, "bytes": 1, "sha256": "00"}],
        "rejects": [],
        "totals": {"rows": kept, "tokens": tokens, "bytes": 1},
        "nodes": {"mix": {"sources": {"web": {"target_share": 0.8, "achieved_share": 0.79, "emitted_tokens": 79}, "syn": {"target_share": 0.2, "achieved_share": 0.21, "emitted_tokens": 21}}}}
    });
    std::fs::write(
        dir.join("stats.json"),
        serde_json::to_string_pretty(&stats).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    (kept, n_short + n_dup)
}

fn scalar(a: &Audit, sql: &str) -> String {
    let (schema, batches) = a.sql(sql).unwrap();
    let csv = audit::format_batches(&schema, &batches, Format::Csv).unwrap();
    csv.lines().nth(1).unwrap_or("").to_string()
}

#[test]
fn sql_counts_match_stats_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (kept, rejected) = fixture(tmp.path(), 0, 100);
    let a = Audit::open(&[tmp.path().to_path_buf()]).unwrap();
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("stats.json")).unwrap())
            .unwrap();
    let sink_in = stats["nodes"]["out"]["docs_in"].as_u64().unwrap();
    assert_eq!(scalar(&a, "SELECT COUNT(*) FROM docs"), sink_in.to_string());
    assert_eq!(kept as u64, sink_in);
    assert_eq!(
        scalar(&a, "SELECT COUNT(*) FROM rejects"),
        rejected.to_string()
    );
    // Per stage and reason, the written rejects equal the counted ones.
    for (stage, reason) in [("len", "too_short"), ("dedup", "duplicate")] {
        let counted = stats["nodes"][stage]["rejects"][reason].as_u64().unwrap();
        let q =
            format!("SELECT COUNT(*) FROM rejects WHERE stage = '{stage}' AND reason = '{reason}'");
        assert_eq!(scalar(&a, &q), counted.to_string());
        let q = format!("SELECT SUM(docs) FROM stats WHERE metric = 'reject' AND node = '{stage}' AND key = '{reason}'");
        assert_eq!(scalar(&a, &q), counted.to_string());
    }
    assert_eq!(
        scalar(&a, "SELECT docs_out FROM nodes WHERE node = 'dedup'"),
        kept.to_string()
    );
    assert_eq!(
        scalar(
            &a,
            "SELECT SUM(docs) FROM stats WHERE metric = 'bad_record'"
        ),
        "2"
    );
    // UDFs.
    assert_eq!(
        scalar(&a, "SELECT COUNT(DISTINCT domain(url)) FROM docs"),
        "3"
    );
    assert_eq!(
        scalar(
            &a,
            "SELECT json_get(extra, 'index_bytes') FROM nodes WHERE node = 'dedup'"
        ),
        "10"
    );
    assert_eq!(
        scalar(
            &a,
            "SELECT MAX(json_get_f64(attrs, 'dedup.cluster_size')) FROM docs"
        ),
        "3.0"
    );
    assert_eq!(
        scalar(&a, "SELECT SUM(rows) FROM manifest WHERE kind = 'shard'"),
        kept.to_string()
    );
    // Seeded samples are reproducible and depend on the seed.
    let sample = |seed: i64| {
        scalar(
            &a,
            &format!("SELECT id FROM docs ORDER BY sample_key(id, {seed}), id LIMIT 1"),
        )
    };
    assert_eq!(sample(7), sample(7));
    assert!((0..5).any(|s| sample(s) != sample(7)));
}

#[test]
fn every_preset_runs_on_full_and_empty_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    fixture(&full, 0, 60);
    // An empty run: a stats.json with no nodes, no shards, no rejects.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("stats.json"), r#"{"nodes": {}}"#).unwrap();
    let a = Audit::open(&[full]).unwrap();
    let e = Audit::open(&[empty]).unwrap();
    for p in presets::PRESETS {
        let (_, batches) = a
            .sql(p.sql)
            .unwrap_or_else(|err| panic!("preset {} on a full run: {err}", p.name));
        let n: usize = batches.iter().map(|b| b.num_rows()).sum();
        // tokens_per_source has no packed shards, but documents; every preset finds data here.
        assert!(
            n > 0,
            "preset {} returned no rows on the full fixture",
            p.name
        );
        let (_, batches) = e
            .sql(p.sql)
            .unwrap_or_else(|err| panic!("preset {} on an empty run: {err}", p.name));
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            0,
            "preset {}",
            p.name
        );
    }
    // Spot-check values against the fixture.
    let (s, b) = a.sql(presets::get("mixture").unwrap().sql).unwrap();
    let csv = audit::format_batches(&s, &b, Format::Csv).unwrap();
    assert!(csv.contains(",mix,syn,20.0,21.0,1.0,21"), "{csv}");
    let (s, b) = a.sql(presets::get("dedup_clusters").unwrap().sql).unwrap();
    let csv = audit::format_batches(&s, &b, Format::Csv).unwrap();
    assert!(
        csv.starts_with("cluster_size,clusters,docs_before_dedup\n1,"),
        "{csv}"
    );
}

#[test]
fn several_run_dirs_read_as_one_table() {
    let tmp = tempfile::tempdir().unwrap();
    let (r0, r1) = (tmp.path().join("r0"), tmp.path().join("r1"));
    let (k0, j0) = fixture(&r0, 0, 50);
    let (k1, j1) = fixture(&r1, 1, 70);
    let a = Audit::open(&[r0.clone(), r1.clone()]).unwrap();
    assert_eq!(
        scalar(&a, "SELECT COUNT(*) FROM docs"),
        (k0 + k1).to_string()
    );
    assert_eq!(
        scalar(&a, "SELECT COUNT(*) FROM rejects"),
        (j0 + j1).to_string()
    );
    assert_eq!(
        scalar(&a, "SELECT SUM(docs_in) FROM nodes WHERE node = 'out'"),
        (k0 + k1).to_string()
    );
    assert_eq!(scalar(&a, "SELECT COUNT(DISTINCT run) FROM stats"), "2");
    // Ids are rank-scoped: no doc counted twice.
    assert_eq!(
        scalar(&a, "SELECT COUNT(DISTINCT id) FROM docs"),
        (k0 + k1).to_string()
    );
}

#[test]
fn output_formats() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path(), 0, 30);
    let a = Audit::open(&[tmp.path().to_path_buf()]).unwrap();
    let (s, b) = a
        .sql("SELECT stage, COUNT(*) AS n FROM rejects GROUP BY stage ORDER BY stage")
        .unwrap();
    let t = audit::format_batches(&s, &b, Format::Table).unwrap();
    let cells = |want: [&str; 2]| {
        t.lines()
            .any(|l| l.split('|').map(str::trim).collect::<Vec<_>>() == ["", want[0], want[1], ""])
    };
    assert!(
        cells(["stage", "n"]) && cells(["dedup", "4"]) && cells(["len", "6"]),
        "{t}"
    );
    assert_eq!(
        audit::format_batches(&s, &b, Format::Csv).unwrap(),
        "stage,n\ndedup,4\nlen,6\n"
    );
    let j: serde_json::Value =
        serde_json::from_str(&audit::format_batches(&s, &b, Format::Json).unwrap()).unwrap();
    assert_eq!(
        j,
        json!([{"stage": "dedup", "n": 4}, {"stage": "len", "n": 6}])
    );
    // CSV has no nested values: the `attrs` struct is written as JSON text.
    let (s, b) = a
        .sql("SELECT id, attrs FROM docs ORDER BY id LIMIT 1")
        .unwrap();
    let csv = audit::format_batches(&s, &b, Format::Csv).unwrap();
    assert!(
        csv.contains(r#""{""dedup"":{""cluster_size"":"#) && csv.contains(r#"""len"":{""chars"":"#),
        "{csv}"
    );
    let (s, b) = a.sql("SELECT * FROM rejects WHERE 1 = 0").unwrap();
    assert_eq!(
        audit::format_batches(&s, &b, Format::Json).unwrap().trim(),
        "[]"
    );
    assert!(audit::format_batches(&s, &b, Format::Csv)
        .unwrap()
        .starts_with("id,source,stage,reason"));
    assert!(Audit::open(&[tmp.path().join("nope")]).is_err());
}

/// Every tag in the page is one the report itself writes, and no tag carries an event
/// handler or a URL attribute: hostile text can only appear escaped, as text.
pub fn assert_only_safe_markup(html: &str) {
    const ALLOWED: &[&str] = &[
        "!doctype",
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "main",
        "header",
        "h1",
        "h2",
        "h3",
        "div",
        "b",
        "section",
        "svg",
        "text",
        "rect",
        "line",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "p",
        "figure",
        "figcaption",
        "details",
        "summary",
        "pre",
    ];
    let lower = html.to_lowercase();
    let mut rest = lower.as_str();
    while let Some(i) = rest.find('<') {
        let tag = &rest[i + 1..];
        let end = tag.find('>').expect("unclosed tag");
        let inner = &tag[..end];
        let name: String = inner
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '!')
            .collect();
        assert!(ALLOWED.contains(&name.as_str()), "unexpected tag <{inner}>");
        for bad in [" on", "href=", "src=", "javascript:", "url("] {
            assert!(!inner.contains(bad), "tag <{inner}> has `{bad}`");
        }
        rest = &tag[end..];
    }
    assert!(
        !lower.contains("<script"),
        "a <script> tag leaked into the report"
    );
}

fn report_of(dirs: &[PathBuf]) -> String {
    let a = Audit::open(dirs).unwrap();
    report::render(&a, &report::ReportOptions::default(), None).unwrap()
}

#[test]
fn report_escapes_hostile_text() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path(), 0, 40);
    // Make sure the hostile document is among the samples: ask for all of them.
    let a = Audit::open(&[tmp.path().to_path_buf()]).unwrap();
    let opts = report::ReportOptions {
        samples: 1000,
        ..Default::default()
    };
    let html = report::render(&a, &opts, None).unwrap();
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "hostile text not shown escaped"
    );
    assert_only_safe_markup(&html);
    for id in [
        "funnel",
        "rejects",
        "lengths",
        "scores",
        "languages",
        "domains",
        "dedup",
        "mixture",
        "tokens",
        "samples",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "section {id} missing"
        );
    }
    // Deterministic: same run, same seed, same bytes.
    assert_eq!(html, report::render(&a, &opts, None).unwrap());
    assert_eq!(
        report_of(&[tmp.path().to_path_buf()]),
        report_of(&[tmp.path().to_path_buf()])
    );
}

#[test]
fn diff_reports_changes_per_stage_and_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    fixture(&a_dir, 0, 50);
    fixture(&b_dir, 0, 100);
    let a = Audit::open(&[a_dir]).unwrap();
    let b = Audit::open(&[b_dir]).unwrap();
    let (s, batch) = audit::diff::diff(&a, &b, true).unwrap();
    let csv = audit::format_batches(&s, &[batch], Format::Csv).unwrap();
    // 50 → 100 docs: too_short 10 → 20.
    assert!(
        csv.contains("reject,len,too_short,docs,10,20,10,100.0"),
        "{csv}"
    );
    assert!(
        csv.lines().any(|l| l.starts_with("output,web,,tokens,")),
        "{csv}"
    );
    let (_, same) = audit::diff::diff(&a, &a, true).unwrap();
    assert_eq!(same.num_rows(), 0);
}

// ---------------------------------------------------------------------------------------
// Real runs, made by the sluice binary on the sample corpus.
// ---------------------------------------------------------------------------------------

mod real {
    use super::HOSTILE;
    use crate::common::bin;
    use serde_json::Value;
    use std::io::Write;
    use std::path::Path;

    /// Split the sample corpus into `n` JSONL files with `url` fields (a few domains) and
    /// one hostile web page long enough to pass the length filter.
    pub fn inputs(dir: &Path, n: usize) {
        let root = crate::common::root();
        let mut lines = Vec::new();
        for f in [
            "samples/text/cmrc2018_zh.jsonl",
            "samples/text/articles_en.jsonl",
        ] {
            let text = std::fs::read_to_string(root.join(f)).unwrap();
            for l in text.lines().filter(|l| !l.trim().is_empty()) {
                lines.push(serde_json::from_str::<Value>(l).unwrap());
            }
        }
        let hostile = format!("{HOSTILE} {}", "这是一个包含脚本的网页。".repeat(40));
        lines.push(serde_json::json!({"id": "hostile", "text": hostile, "url": "https://evil.example/<script>"}));
        lines.push(serde_json::json!({"id": "hostile-short", "text": HOSTILE, "url": "https://evil.example/x"}));
        let domains = [
            "https://zh.wikipedia.org/wiki/",
            "https://www.news.example.com/a/",
            "https://blog.example.cn/p/",
        ];
        let mut files: Vec<std::fs::File> = (0..n)
            .map(|i| std::fs::File::create(dir.join(format!("part-{i}.jsonl"))).unwrap())
            .collect();
        for (k, mut v) in lines.into_iter().enumerate() {
            if v.get("url").is_none() {
                v["url"] = Value::String(format!("{}{k}", domains[k % domains.len()]));
            }
            writeln!(files[k % n], "{v}").unwrap();
        }
    }

    pub fn config(inputs: &Path, min_chars: usize) -> String {
        format!(
            r#"
run:
  batch_size: 64
nodes:
  web:
    kind: ingest_jsonl
    paths: ["{}/*.jsonl"]
    id_field: id
  keep:
    kind: length_filter
    inputs: [web]
    min_chars: {min_chars}
  tok:
    kind: tokenize
    inputs: [keep]
    tokenizer: samples/tokenizers/qwen2/tokenizer.json
  shards:
    kind: parquet_shards
    inputs: [tok]
    shard_rows: 200
"#,
            inputs.display()
        )
    }

    /// `sluice run` with extra args; panics with stderr on failure.
    pub fn run(cfg: &Path, out: &Path, extra: &[&str]) {
        let o = bin()
            .args(["run"])
            .arg(cfg)
            .arg("--out")
            .arg(out)
            .args(["--no-progress", "--threads", "2"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "sluice run failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// `sluice audit DIRS... ARGS` → stdout; panics with stderr on failure.
    pub fn audit(dirs: &[&Path], args: &[&str]) -> String {
        let o = bin().arg("audit").args(dirs).args(args).output().unwrap();
        assert!(
            o.status.success(),
            "sluice audit {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    pub fn json_rows(dirs: &[&Path], sql: &str) -> Vec<Value> {
        serde_json::from_str::<Vec<Value>>(&audit(dirs, &["--sql", sql, "--format", "json"]))
            .unwrap()
    }

    /// One sample run (inputs in 3 files), shared setup of the tests below.
    pub fn sample_run(tmp: &Path, min_chars: usize) -> std::path::PathBuf {
        let inp = tmp.join(format!("in-{min_chars}"));
        std::fs::create_dir_all(&inp).unwrap();
        inputs(&inp, 3);
        let cfg = tmp.join(format!("cfg-{min_chars}.yaml"));
        std::fs::write(&cfg, config(&inp, min_chars)).unwrap();
        let out = tmp.join(format!("out-{min_chars}"));
        run(&cfg, &out, &[]);
        out
    }
}

#[test]
fn real_run_sql_counts_equal_stats_json() {
    let tmp = tempfile::tempdir().unwrap();
    let out = real::sample_run(tmp.path(), 300);
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let d = [out.as_path()];
    // Rejects per stage and reason, written vs counted.
    let rows = real::json_rows(&d, "SELECT stage, reason, COUNT(*) AS n FROM rejects GROUP BY stage, reason ORDER BY stage, reason");
    assert!(!rows.is_empty(), "the sample run rejects short documents");
    for r in &rows {
        let (stage, reason) = (r["stage"].as_str().unwrap(), r["reason"].as_str().unwrap());
        assert_eq!(
            r["n"], stats["nodes"][stage]["rejects"][reason],
            "{stage}/{reason}"
        );
    }
    let counted: u64 = stats["nodes"]["keep"]["rejects"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let written = real::json_rows(&d, "SELECT COUNT(*) AS n FROM rejects WHERE stage = 'keep'");
    assert_eq!(written[0]["n"].as_u64().unwrap(), counted);
    // Documents and tokens in the shards equal the sink's input and the manifest totals.
    let t = real::json_rows(&d, "SELECT COUNT(*) AS docs, SUM(n_tokens) AS tokens, SUM(array_length(tokens)) AS listed FROM docs");
    assert_eq!(t[0]["docs"], stats["nodes"]["shards"]["docs_in"]);
    assert_eq!(t[0]["docs"], manifest["totals"]["rows"]);
    assert_eq!(t[0]["tokens"], manifest["totals"]["tokens"]);
    // The stats table is stats.json, flattened.
    let f = real::json_rows(
        &d,
        "SELECT node, docs_in, docs_out, rejected FROM nodes ORDER BY node",
    );
    for r in &f {
        let n = &stats["nodes"][r["node"].as_str().unwrap()];
        assert_eq!(r["docs_in"], n["docs_in"]);
        if let Some(out) = n["ports"].get("out") {
            assert_eq!(r["docs_out"], out["docs"]);
        }
    }
    let funnel = real::audit(&d, &["--preset", "funnel", "--format", "csv"]);
    assert!(
        funnel
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("web,ingest_jsonl,source,"),
        "{funnel}"
    );
}

#[test]
fn real_run_every_preset_runs_and_shows_sql() {
    let tmp = tempfile::tempdir().unwrap();
    let out = real::sample_run(tmp.path(), 300);
    for p in sluice::audit::presets::PRESETS {
        for fmt in ["table", "csv", "json"] {
            real::audit(&[out.as_path()], &["--preset", p.name, "--format", fmt]);
        }
        let sql = real::audit(&[out.as_path()], &["--preset", p.name, "--show-sql"]);
        assert!(sql.contains(p.sql), "--show-sql prints the preset's SQL");
    }
    // This run has no dedup and no mix node: those presets are empty, not errors.
    for empty in ["dedup_clusters", "mixture"] {
        let rows = real::json_rows(
            &[out.as_path()],
            sluice::audit::presets::get(empty).unwrap().sql,
        );
        assert!(rows.is_empty(), "{empty}: {rows:?}");
    }
    let langs = real::audit(
        &[out.as_path()],
        &["--preset", "tokens_per_source", "--format", "csv"],
    );
    assert!(langs.contains("documents,web,"), "{langs}");
    let list = real::audit(&[], &["--list-presets"]);
    assert!(list.contains("rejects") && list.contains("mixture"));
    let bad = crate::common::bin()
        .args(["audit"])
        .arg(&out)
        .args(["--preset", "reject"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("did you mean `rejects`"));
}

#[test]
fn real_multi_rank_run_reads_as_one_table() {
    let tmp = tempfile::tempdir().unwrap();
    let single = real::sample_run(tmp.path(), 300);
    let cfg = tmp.path().join("cfg-300.yaml");
    let q = "SELECT COUNT(*) AS docs, SUM(n_tokens) AS tokens, COUNT(DISTINCT id) AS ids FROM docs";
    let want = real::json_rows(&[single.as_path()], q);
    let want_rej = real::json_rows(&[single.as_path()], "SELECT COUNT(*) AS n FROM rejects");
    // Ranks written to separate run directories, read together.
    let (r0, r1) = (tmp.path().join("rank0"), tmp.path().join("rank1"));
    real::run(&cfg, &r0, &["--rank", "0", "--world-size", "2"]);
    real::run(&cfg, &r1, &["--rank", "1", "--world-size", "2"]);
    let one = real::json_rows(&[r0.as_path()], q);
    assert!(
        one[0]["docs"].as_u64().unwrap() < want[0]["docs"].as_u64().unwrap(),
        "rank 0 alone is a part"
    );
    assert_eq!(real::json_rows(&[r0.as_path(), r1.as_path()], q), want);
    assert_eq!(
        real::json_rows(
            &[r0.as_path(), r1.as_path()],
            "SELECT COUNT(*) AS n FROM rejects"
        ),
        want_rej
    );
    let sums = "SELECT SUM(docs_in) AS n FROM nodes WHERE node = 'shards'";
    assert_eq!(
        real::json_rows(&[r0.as_path(), r1.as_path()], sums),
        real::json_rows(&[single.as_path()], sums)
    );
    // Both ranks in one run directory: before the merge (per-rank stats) and after.
    let shared = tmp.path().join("shared");
    real::run(&cfg, &shared, &["--rank", "0", "--world-size", "2"]);
    assert!(!shared.join("stats.json").exists());
    assert_eq!(
        real::json_rows(&[shared.as_path()], sums),
        real::json_rows(&[r0.as_path()], sums)
    );
    real::run(&cfg, &shared, &["--rank", "1", "--world-size", "2"]);
    assert!(shared.join("stats.json").exists());
    assert_eq!(real::json_rows(&[shared.as_path()], q), want);
    assert_eq!(
        real::json_rows(&[shared.as_path()], sums),
        real::json_rows(&[single.as_path()], sums)
    );
}

#[test]
fn real_report_escapes_hostile_text_and_renders_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let out = real::sample_run(tmp.path(), 300);
    let html_path = tmp.path().join("report.html");
    let o = crate::common::bin()
        .arg("report")
        .arg(&out)
        .arg("-o")
        .arg(&html_path)
        .args(["--samples", "2000"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&html_path).unwrap();
    // The hostile page is both kept (long) and rejected (short): both samples show it escaped.
    assert!(
        html.matches("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;")
            .count()
            >= 2,
        "hostile text not shown escaped twice"
    );
    assert!(
        html.contains("evil.example/&lt;script&gt;"),
        "hostile URL not escaped"
    );
    assert_only_safe_markup(&html);
    // A real browser: sections render, no console errors, no network requests.
    let shot = std::env::var("SLUICE_REPORT_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| tmp.path().join("report.png"));
    let script = crate::common::root().join("tests/browser/check_report.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(&script).arg(&html_path).arg(&shot);
    for s in [
        "funnel",
        "rejects",
        "lengths",
        "scores",
        "languages",
        "domains",
        "dedup",
        "mixture",
        "tokens",
        "samples",
    ] {
        cmd.arg(s);
    }
    cmd.args(["--expect-text", "<script>alert('x')</script>"]);
    let o = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            crate::common::skip(
                "chromium",
                &format!("browser check: python3 not runnable: {e}"),
            );
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&o.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&o.stderr));
    if o.status.code() == Some(77) {
        crate::common::skip("chromium", &format!("browser check: {stdout}"));
        return;
    }
    assert!(o.status.success(), "Chromium check failed:\n{stdout}");
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "no screenshot"
    );
}

#[test]
fn real_diff_between_two_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let a = real::sample_run(tmp.path(), 300);
    let b = real::sample_run(tmp.path(), 600);
    let o = crate::common::bin()
        .arg("diff")
        .arg(&a)
        .arg(&b)
        .args(["--format", "csv"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = String::from_utf8(o.stdout).unwrap();
    let sa: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("stats.json")).unwrap()).unwrap();
    let sb: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("stats.json")).unwrap()).unwrap();
    let (ra, rb) = (
        &sa["nodes"]["keep"]["rejects"]["too_short"],
        &sb["nodes"]["keep"]["rejects"]["too_short"],
    );
    let line = format!(
        "reject,keep,too_short,docs,{ra},{rb},{}",
        rb.as_i64().unwrap() - ra.as_i64().unwrap()
    );
    assert!(csv.contains(&line), "missing `{line}` in\n{csv}");
    assert!(
        csv.lines().any(|l| l.starts_with("output,web,,tokens,")),
        "{csv}"
    );
    // The same diff as a report section.
    let html = tmp.path().join("r.html");
    let o = crate::common::bin()
        .arg("report")
        .arg(&b)
        .arg("-o")
        .arg(&html)
        .arg("--baseline")
        .arg(&a)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .contains("<section id=\"diff\">"));
}
