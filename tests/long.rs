//! Long-context data end to end: `configs/long_context.yaml` (length buckets, paragraph
//! splits, long-document upsampling) read back from its Parquet, the loaders' variable-length
//! metadata on that output (Rust against the packed offsets and against Python), and a
//! 500k-token document through every filtering, dedup and tokenize stage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use arrow::array::{Array, ListArray, StringArray, UInt32Array, UInt64Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use sluice::feed::{Feed, FeedConfig};

use crate::common::*;

/// One packed row as written.
struct Row {
    file: String,
    input_ids: Vec<u32>,
    doc_offsets: Vec<u32>,
    doc_ids: Vec<String>,
    doc_starts: Vec<u64>,
    n_pad: u32,
}

fn rows(dir: &Path) -> Vec<Row> {
    let mut out = Vec::new();
    for (name, _) in files(dir, "shards") {
        let f = std::fs::File::open(dir.join("shards").join(&name)).unwrap();
        for b in ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap()
        {
            let b = b.unwrap();
            let ids = sluice::arrow_io::u32_list_column(&b, "input_ids")
                .unwrap()
                .unwrap();
            let offs = sluice::arrow_io::u32_list_column(&b, "doc_offsets")
                .unwrap()
                .unwrap();
            let list = |c: &str| {
                b.column_by_name(c)
                    .unwrap()
                    .as_any()
                    .downcast_ref::<ListArray>()
                    .unwrap()
                    .clone()
            };
            let (dids, dst) = (list("doc_ids"), list("doc_starts"));
            let np = b
                .column_by_name("n_pad")
                .unwrap()
                .as_any()
                .downcast_ref::<UInt32Array>()
                .unwrap()
                .clone();
            for i in 0..b.num_rows() {
                let s = dids.value(i);
                let s = s.as_any().downcast_ref::<StringArray>().unwrap();
                let st = dst.value(i);
                let st = st.as_any().downcast_ref::<UInt64Array>().unwrap();
                out.push(Row {
                    file: name.clone(),
                    input_ids: ids[i].clone().unwrap(),
                    doc_offsets: offs[i].clone().unwrap(),
                    doc_ids: (0..s.len()).map(|k| s.value(k).to_string()).collect(),
                    doc_starts: st.values().to_vec(),
                    n_pad: np.value(i),
                });
            }
        }
    }
    out
}

fn json(dir: &Path, f: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(f)).unwrap()).unwrap()
}

/// `id#u<k>@<start>` → (`id`, `id#u<k>`).
fn doc_of(id: &str) -> (&str, &str) {
    let copy = id.split('@').next().unwrap();
    (copy.split("#u").next().unwrap(), copy)
}

#[test]
fn long_context_config_end_to_end() {
    let yaml = std::fs::read_to_string(root().join("configs/long_context.yaml")).unwrap();
    let a = tempfile::tempdir().unwrap();
    run_yaml(&yaml, a.path(), 2);
    let m = json(a.path(), "manifest.json");
    let pack = &m["nodes"]["pack"];
    let rows = rows(a.path());
    assert_eq!(rows.len() as u64, pack["sequences"].as_u64().unwrap());

    // One shard series per bucket; every row has its file's length; totals per bucket.
    let mut per_len: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    for r in &rows {
        let l: usize = r
            .file
            .split("-L")
            .nth(1)
            .unwrap()
            .split('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(r.input_ids.len(), l, "{}", r.file);
        let e = per_len.entry(l).or_default();
        e.0 += 1;
        e.1 += (l - r.n_pad as usize) as u64;
    }
    for b in pack["buckets"].as_array().unwrap() {
        let l = b["seq_len"].as_u64().unwrap() as usize;
        let (n, real) = per_len.get(&l).copied().unwrap_or_default();
        assert_eq!(b["sequences"].as_u64().unwrap(), n, "{b}");
        assert_eq!(b["real_tokens"].as_u64().unwrap(), real, "{b}");
    }
    assert!(per_len.len() >= 3, "three buckets used: {per_len:?}");

    // Traceability: doc_starts = the `@` suffix; every segment boundary follows EOS; no
    // row holds two copies of one document (books are upsampled ×2).
    let mut segs: BTreeMap<String, Vec<(u64, usize, bool)>> = BTreeMap::new();
    let mut copies = 0;
    for r in &rows {
        assert_eq!(r.doc_starts.len(), r.doc_ids.len());
        let real = r.input_ids.len() - r.n_pad as usize;
        let mut seen = BTreeSet::new();
        for (i, id) in r.doc_ids.iter().enumerate() {
            let start = id
                .split_once('@')
                .map_or(0, |(_, k)| k.parse::<u64>().unwrap());
            assert_eq!(r.doc_starts[i], start, "{id}");
            let (doc, copy) = doc_of(id);
            assert!(
                seen.insert(doc.to_string()),
                "two copies of {doc} in one row"
            );
            copies += copy.contains("#u") as usize;
            let end = r.doc_offsets.get(i + 1).map_or(real, |&x| x as usize);
            if i > 0 {
                assert_eq!(r.input_ids[r.doc_offsets[i] as usize - 1], 1);
            }
            segs.entry(copy.to_string()).or_default().push((
                start,
                end - r.doc_offsets[i] as usize,
                r.input_ids[end - 1] == 1,
            ));
        }
    }
    assert!(copies > 0, "upsampled copies were packed");
    // The 307k-character book (longer than the 128k bucket) is split at paragraph ends
    // into contiguous segments, in order, the last ending with EOS; so is its copy.
    for key in ["books:long_concat_6", "books:long_concat_6#u1"] {
        let mut s = segs.remove(key).unwrap_or_else(|| panic!("{key} missing"));
        s.sort();
        assert!(s.len() >= 2, "{key}: {s:?}");
        let mut pos = 0;
        for (k, &(start, len, ends_eos)) in s.iter().enumerate() {
            assert_eq!(start, pos, "{key}: segments are contiguous");
            assert!(len <= 131072);
            assert_eq!(
                ends_eos,
                k + 1 == s.len(),
                "{key}: only the last segment ends with EOS"
            );
            pos += len as u64;
        }
    }
    assert_eq!(
        pack["split_boundaries"]["paragraph"].as_u64().unwrap()
            + pack["split_boundaries"]["line"].as_u64().unwrap(),
        pack["docs_split"].as_u64().unwrap(),
        "{pack:#}"
    );
    // Every other document is whole: one segment.
    for (k, s) in &segs {
        assert_eq!(s.len(), 1, "{k} is split");
    }
    // No book was rejected for its size.
    let rej = reject_rows(a.path());
    assert!(rej.iter().all(|r| !r.0.starts_with("books:")), "{rej:?}");
    // The books' token share is kept or reported; padding is reported per bucket.
    let up = &pack["upsample"]["sources"]["books"];
    assert!(up["long_share_out"].as_f64().unwrap() > up["long_share_in"].as_f64().unwrap());

    // Deterministic whatever the thread count.
    let b = tempfile::tempdir().unwrap();
    run_yaml(&yaml, b.path(), 1);
    assert_eq!(files(a.path(), "shards"), files(b.path(), "shards"));

    varlen_on(a.path(), &rows);
}

/// The Rust loader's `cu_seqlens` on the bucketed output: every boundary is a window start,
/// a document offset of the row or the start of padding; Python yields the same.
fn varlen_on(dir: &Path, rows: &[Row]) {
    let (bs, t) = (3usize, 4096usize);
    let mut c = FeedConfig::new(vec![dir.to_path_buf()]);
    c.batch_size = bs;
    c.seq_len = t;
    c.seed = 5;
    let mut feed = Feed::open(c, None).unwrap();
    let by_path: BTreeMap<String, Vec<&Row>> = rows.iter().fold(BTreeMap::new(), |mut m, r| {
        m.entry(r.file.clone()).or_default().push(r);
        m
    });
    let paths: Vec<String> = feed
        .shards()
        .shards
        .iter()
        .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let n = 8;
    let mut rust = Vec::new();
    for _ in 0..n {
        let b = feed.next_batch().unwrap();
        assert_eq!(b.seqs_per_row.len(), bs);
        assert_eq!(*b.cu_seqlens.last().unwrap() as usize, bs * t);
        let mut k = 0;
        for (slot, key) in b.samples.iter().enumerate() {
            let row = by_path[&paths[key.shard as usize]][key.row as usize];
            let w0 = key.window as usize * t;
            let real = row.input_ids.len() - row.n_pad as usize;
            let mut want: Vec<i32> = vec![0];
            for &o in &row.doc_offsets {
                let o = o as usize;
                if o > w0 && o < w0 + t {
                    want.push((o - w0) as i32);
                }
            }
            if real > w0 && real < w0 + t {
                want.push((real - w0) as i32);
            }
            let got: Vec<i32> = b.cu_seqlens[k..k + b.seqs_per_row[slot] as usize]
                .iter()
                .map(|&x| x - (slot * t) as i32)
                .collect();
            assert_eq!(got, want, "batch {} slot {slot}", b.step);
            k += b.seqs_per_row[slot] as usize;
        }
        let lens = b.cu_seqlens.windows(2).map(|w| (w[1] - w[0]) as usize);
        assert_eq!(lens.max().unwrap(), b.max_seqlen);
        rust.push(b);
    }

    let Some(py) = python_with(&["pyarrow", "numpy"]) else {
        skip(
            "pyarrow",
            "varlen parity with Python: no python3 with pyarrow and numpy",
        );
        return;
    };
    let out = Command::new(&py)
        .env("PYTHONPATH", root().join("python"))
        .args(["-m", "sluice_feed"])
        .arg(dir)
        .args(["--batches", &n.to_string(), "--batch-size", &bs.to_string()])
        .args(["--seq-len", &t.to_string(), "--seed", "5"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pyb: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(pyb.len(), n);
    for (r, p) in rust.iter().zip(&pyb) {
        let v = |k: &str| -> Vec<i64> {
            p[k].as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect()
        };
        assert_eq!(
            v("cu_seqlens"),
            r.cu_seqlens.iter().map(|&x| x as i64).collect::<Vec<_>>()
        );
        assert_eq!(
            v("seqs_per_row"),
            r.seqs_per_row.iter().map(|&x| x as i64).collect::<Vec<_>>()
        );
        assert_eq!(p["max_seqlen"].as_u64().unwrap() as usize, r.max_seqlen);
        assert_eq!(
            v("input_ids"),
            r.input_ids.iter().map(|&x| x as i64).collect::<Vec<_>>()
        );
    }
}

/// A ~500k-token document (synthetic by concatenation: every CMRC 2018 paragraph and every
/// GAOKAO question of the samples, joined with blank lines) through normalize, langid,
/// segment_zh, heuristic_filter, pii_redact, length_filter, line_dedup, exact_dedup,
/// minhash_dedup, decontaminate (GSM8K), tokenize (Qwen2) and pack with a 1M bucket, all
/// with default settings: it is rejected nowhere and reaches one row whole.
#[test]
fn a_500k_token_document_survives_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    let read = |p: &str, f: &str| -> Vec<String> {
        std::fs::read_to_string(root().join(p))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()[f]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let parts: Vec<String> = read("samples/text/cmrc2018_zh.jsonl", "text")
        .into_iter()
        .chain(read("samples/benchmarks/gaokao_mcq_zh.jsonl", "question"))
        .collect();
    text.push_str(&parts.join("\n\n"));
    let input = dir.path().join("in.jsonl");
    let mut lines = vec![serde_json::json!({"id": "book", "text": text}).to_string()];
    for (i, a) in read("samples/text/articles_en.jsonl", "text")
        .into_iter()
        .enumerate()
    {
        lines.push(serde_json::json!({"id": format!("news{i}"), "text": a}).to_string());
    }
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let yaml = format!(
        "nodes:
  src: {{kind: ingest_jsonl, paths: [\"{}\"], id_field: id}}
  norm: {{kind: normalize, inputs: [src]}}
  lang: {{kind: langid, inputs: [norm]}}
  seg: {{kind: segment_zh, inputs: [lang]}}
  heur: {{kind: heuristic_filter, inputs: [seg], other_langs: pass}}
  pii: {{kind: pii_redact, inputs: [heur]}}
  len: {{kind: length_filter, inputs: [pii]}}
  lines: {{kind: line_dedup, inputs: [len]}}
  exact: {{kind: exact_dedup, inputs: [lines]}}
  near: {{kind: minhash_dedup, inputs: [exact]}}
  decont:
    kind: decontaminate
    inputs: [near]
    benchmarks: [{{name: gsm8k, paths: [samples/benchmarks/gsm8k_test.jsonl], fields: [question]}}]
  tok: {{kind: tokenize, inputs: [decont], tokenizer: samples/tokenizers/qwen2/tokenizer.json}}
  pack:
    kind: pack
    inputs: [tok]
    eos_id: 151643
    buckets: [{{seq_len: 4096}}, {{seq_len: 131072}}, {{seq_len: 1048576}}]
  shards: {{kind: parquet_shards, inputs: [pack]}}
",
        input.display()
    );
    let out = dir.path().join("out");
    run_yaml(&yaml, &out, 2);
    let rej = reject_rows(&out);
    assert!(
        rej.iter().all(|r| r.0 != "src:book" && r.0 != "book"),
        "the book was rejected: {:?}",
        rej.iter()
            .filter(|r| r.0.contains("book"))
            .collect::<Vec<_>>()
    );
    let rows = rows(&out);
    let mut found = 0;
    for r in &rows {
        for (i, id) in r.doc_ids.iter().enumerate() {
            if id.contains("book") {
                found += 1;
                assert_eq!(r.input_ids.len(), 1048576);
                assert_eq!(r.doc_starts[i], 0);
                let real = r.input_ids.len() - r.n_pad as usize;
                let end = r.doc_offsets.get(i + 1).map_or(real, |&x| x as usize);
                let n = end - r.doc_offsets[i] as usize;
                assert!(n > 400_000, "{n} tokens");
                assert_eq!(r.input_ids[end - 1], 151643);
                eprintln!("the book: {n} tokens, whole in one 1M row");
            }
        }
    }
    assert_eq!(found, 1, "the book is one segment");
}
