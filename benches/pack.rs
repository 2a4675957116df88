//! Benchmark for `pack`: packing + global shuffle time against the time to tokenize the
//! same corpus (target: pack + shuffle < 10% of tokenize), and the padding
//! rate of both strategies.
//!
//! ```text
//! cargo bench --bench pack                                   # release
//! SLUICE_BENCH_WIKI=path/to/paragraphs.jsonl cargo bench --bench pack
//! BENCH_REPEAT=2 cargo --config 'profile.dev.package.sluice.opt-level=3' \
//!     bench --bench pack --profile dev                       # reuses the debug deps (fast to build)
//! ```
//! Corpus: the CMRC 2018 Chinese Wikipedia paragraphs (`$SLUICE_BENCH_WIKI`, default
//! `../shared/data/text-zh-wikipedia-cmrc2018/cmrc2018_dev.contexts.jsonl` relative to the
//! repo root when present, else `samples/text/cmrc2018_zh.jsonl`), the GSM8K test Q&A
//! (`samples/benchmarks/gsm8k_test.jsonl`) and the Alpaca-CoT zh records
//! (`samples/synthetic/alpaca_cot_zh.jsonl`), repeated `BENCH_REPEAT` times (default 4)
//! under distinct ids.
//! Tokenizer: DeepSeek-V3 through the real `tokenize` stage (built from the registry, fed
//! batches of 256 as the runtime does). Both sides run on one thread (pack is a sequential
//! stage; tokenize is parallel across documents), so the ratio compares CPU time.

use std::time::Instant;

use sluice::document::{DocBatch, Document};
use sluice::stage::{parse_config, BuildCtx, Emitter, Node, Stage, OUT_REJECTED};
use sluice::stages::pack::Pack;

fn read_jsonl(path: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .map(|s| {
            s.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn corpus(repeat: usize) -> Vec<Document> {
    let mut base: Vec<(String, String)> = Vec::new();
    const SHARED_WIKI: &str =
        "../shared/data/text-zh-wikipedia-cmrc2018/cmrc2018_dev.contexts.jsonl";
    let wiki = std::env::var("SLUICE_BENCH_WIKI").unwrap_or_else(|_| {
        if std::path::Path::new(SHARED_WIKI).exists() {
            SHARED_WIKI.into()
        } else {
            "samples/text/cmrc2018_zh.jsonl".into()
        }
    });
    let wiki_docs = read_jsonl(&wiki);
    assert!(!wiki_docs.is_empty(), "{wiki}: no JSONL records");
    eprintln!("wiki paragraphs: {wiki} ({} records)", wiki_docs.len());
    for v in wiki_docs {
        base.push((
            "web".into(),
            v["text"].as_str().unwrap_or_default().to_string(),
        ));
    }
    for v in read_jsonl("samples/benchmarks/gsm8k_test.jsonl") {
        base.push((
            "qa".into(),
            format!(
                "Question: {}\nAnswer: {}",
                v["question"].as_str().unwrap_or(""),
                v["answer"].as_str().unwrap_or("")
            ),
        ));
    }
    for v in read_jsonl("samples/synthetic/alpaca_cot_zh.jsonl") {
        base.push((
            "synthetic".into(),
            format!(
                "问题：{}\n回答：{}",
                v["instruction"].as_str().unwrap_or(""),
                v["output"].as_str().unwrap_or("")
            ),
        ));
    }
    let mut docs = Vec::new();
    for r in 0..repeat {
        for (i, (src, text)) in base.iter().enumerate() {
            docs.push(Document::new(
                format!("{src}:{r}:{i}"),
                src.clone(),
                text.clone(),
            ));
        }
    }
    docs
}

fn main() {
    let repeat: usize = std::env::var("BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut docs = corpus(repeat);
    let bytes: usize = docs.iter().map(|d| d.text.len()).sum();
    let kind = sluice::registry::get("tokenize").expect("tokenize kind");
    let ctx = BuildCtx::for_tests("tok", std::env::temp_dir());
    let params = serde_json::json!({"tokenizer": "samples/tokenizers/deepseek-v3/tokenizer.json"});
    let Ok(Node::Transform(tok)) = (kind.build)(&params, &ctx) else {
        panic!("tokenize did not build")
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let t0 = Instant::now();
    let mut tokenized = Vec::with_capacity(docs.len());
    pool.install(|| {
        for (i, chunk) in docs.chunks(256).enumerate() {
            let mut em = Emitter::new(OUT_REJECTED);
            tok.process(DocBatch::new(i as u64, chunk.to_vec()), &mut em)
                .expect("tokenize");
            tokenized.extend(em.take(0));
        }
    });
    let t_tok = t0.elapsed().as_secs_f64();
    assert_eq!(tokenized.len(), docs.len());
    docs = tokenized;
    let n_tokens: usize = docs
        .iter()
        .map(|d| d.tokens.as_ref().map_or(0, |t| t.len()))
        .sum();
    println!(
        "corpus: {} docs, {:.1} MB, {} tokens (DeepSeek-V3); tokenize: {:.3} s ({:.2} MB/s)",
        docs.len(),
        bytes as f64 / 1e6,
        n_tokens,
        t_tok,
        bytes as f64 / 1e6 / t_tok
    );
    let dir = tempfile::tempdir().expect("tempdir");
    println!(
        "| strategy | seq_len | shuffle | sequences | padding | pack+shuffle s | % of tokenize |"
    );
    println!("|---|---|---|---|---|---|---|");
    for strategy in ["greedy", "best_fit_decreasing"] {
        for seq_len in [2048usize, 4096] {
            for shuffle in [false, true] {
                let ctx = BuildCtx::for_tests("pack", dir.path());
                let params = serde_json::json!({"seq_len": seq_len, "eos_id": 1, "strategy": strategy, "shuffle": shuffle, "seed": 1});
                let mut p = Pack::new(parse_config(&params, &ctx).expect("config"), &ctx);
                let input = docs.clone();
                let t0 = Instant::now();
                let mut n = 0usize;
                for (i, chunk) in input.chunks(256).enumerate() {
                    let mut em = Emitter::new(OUT_REJECTED);
                    p.process(DocBatch::new(i as u64, chunk.to_vec()), &mut em)
                        .expect("pack");
                    n += em.take(0).len();
                }
                let mut em = Emitter::new(OUT_REJECTED);
                p.finish(&mut em).expect("finish");
                n += em.take(0).len();
                let t = t0.elapsed().as_secs_f64();
                let st = p.stats().expect("stats");
                assert_eq!(st["sequences"].as_u64(), Some(n as u64));
                println!(
                    "| {strategy} | {seq_len} | {shuffle} | {n} | {:.3}% | {t:.4} | {:.2}% |",
                    st["padding_rate"].as_f64().unwrap_or(0.0) * 100.0,
                    t / t_tok * 100.0
                );
            }
        }
    }
}
