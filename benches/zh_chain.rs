//! Benchmark for the Chinese stages, single thread, release build:
//!
//! 1. `segment_zh` against bare jieba-rs `cut` on the same texts (target ≥ 90%).
//! 2. The chain normalize → langid → segment_zh → heuristic_filter, in docs/s and MB/s
//!    per core, to compare with datatrove's nearest equivalent
//!    (`benches/zh_chain_datatrove.py`, run side by side by `benches/zh_chain.sh`).
//!
//! ```text
//! cargo bench --bench zh_chain -- [JSONL] [ROUNDS]      # or benches/zh_chain.sh for both sides
//! ```
//! JSONL: one `{"text": ...}` per line (default: the CMRC 2018 Wikipedia paragraphs in
//! `../shared/data`, else `samples/text/cmrc2018_zh.jsonl`). Prints one JSON line per
//! measurement.

use std::time::Instant;

use sluice::document::Document;
use sluice::stage::{Emitter, Transform, OUT_REJECTED};
use sluice::stages::{heuristic_filter, langid, normalize, segment_zh};
use sluice::DocBatch;

fn load(path: &str) -> Vec<String> {
    let raw = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    raw.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("text").and_then(|t| t.as_str()).map(str::to_string))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let default = [
        "../shared/data/text-zh-wikipedia-cmrc2018/cmrc2018_dev.contexts.jsonl",
        "samples/text/cmrc2018_zh.jsonl",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).is_file())
    .unwrap_or("samples/text/cmrc2018_zh.jsonl");
    let path = args.first().map(String::as_str).unwrap_or(default);
    let rounds: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(5);
    let texts = load(path);
    let bytes: usize = texts.iter().map(|t| t.len()).sum();
    let mb = bytes as f64 / 1e6;
    let n = texts.len();

    // 1. segment_zh vs bare jieba cut.
    let jieba = segment_zh::default_jieba();
    let seg = segment_zh::SegmentZh::new(segment_zh::Config {
        hmm: true,
        user_dicts: vec![],
        overwrite: true,
    })
    .expect("segment_zh");
    let docs: Vec<Document> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Document::new(format!("d{i}"), "bench", t.as_str()))
        .collect();
    // Interleave the two sides round by round so machine load hits both alike; keep the best.
    // The document clone is outside the segment_zh timing.
    let (mut t_bare, mut t_seg_only) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        let t = Instant::now();
        let n: usize = texts.iter().map(|t| jieba.cut(t, true).len()).sum();
        t_bare = t_bare.min(t.elapsed().as_secs_f64());
        std::hint::black_box(n);
        let mut ds = docs.clone();
        let t = Instant::now();
        for d in &mut ds {
            seg.apply(d);
        }
        t_seg_only = t_seg_only.min(t.elapsed().as_secs_f64());
        std::hint::black_box(&ds);
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "segment_zh_vs_jieba_cut", "docs": n, "mb": mb,
            "jieba_cut_mb_s": mb / t_bare, "segment_zh_mb_s": mb / t_seg_only,
            "ratio": t_bare / t_seg_only,
        })
    );

    // 2. The chain, one thread.
    let norm = normalize::Normalize::new(normalize::Config::default()).expect("normalize");
    let lid = langid::Langid::new(langid::Config {
        model: "samples/models/lid.176.ftz".into(),
        keep: [("zh".to_string(), 0.5)].into_iter().collect(),
    })
    .expect("langid");
    let hf = heuristic_filter::HeuristicFilter::new(heuristic_filter::Config::default())
        .expect("heuristic_filter");
    let stages: [&dyn Transform; 4] = [&norm, &lid, &seg, &hf];
    let mut best = f64::MAX;
    let mut kept = 0;
    for _ in 0..rounds {
        let batches: Vec<Vec<Document>> = docs
            .chunks(256)
            .map(|c| {
                c.iter()
                    .map(|d| Document::new(d.id.clone(), "bench", d.text.clone()))
                    .collect()
            })
            .collect();
        let t = Instant::now();
        kept = 0;
        for (i, b) in batches.into_iter().enumerate() {
            let mut cur = b;
            for s in stages {
                let mut em = Emitter::new(OUT_REJECTED);
                s.process(DocBatch::new(i as u64, cur), &mut em)
                    .expect("process");
                cur = em.take(0);
            }
            kept += cur.len();
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "zh_chain_sluice", "docs": n, "mb": mb, "kept": kept, "secs": best,
            "docs_s_per_core": n as f64 / best, "mb_s_per_core": mb / best,
        })
    );
}
