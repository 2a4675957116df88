//! Benchmark for `pack` with length buckets: 100 M tokens of mixed lengths into
//! 4k / 32k / 128k / 1M buckets, and one 2 M-token document alone; time, peak RSS and
//! padding per bucket.
//!
//! ```text
//! cargo bench --no-default-features --bench pack_long              # release
//! PACK_LONG_TOKENS=20000000 cargo bench --no-default-features --bench pack_long
//! ```
//! Text: the sample CMRC 2018 Chinese Wikipedia paragraphs (blank-line separated), the
//! GSM8K Q&A and the GAOKAO questions, tokenized once with DeepSeek-V3 into one stream of
//! real tokens (about 0.8 M). Documents are windows of that stream (cyclic) with lengths
//! drawn from a seeded heavy-tailed mix: 90% of documents 64-4k tokens (log-uniform), 8%
//! 4k-32k, 1.7% 32k-128k, 0.3% 128k-1M; they are generated batch by batch, so the RSS is
//! the packer's. The 2 M-token document is the stream repeated (synthetic by
//! concatenation), split at paragraph ends. Shuffle on (spill files in a temp dir). Time
//! includes generating the documents.
//! Each run is a fresh process (the bench re-executes itself), so its peak RSS is the
//! packer's, printed with the RSS before packing (the boundary-token table, the stream).

use std::time::Instant;

use sluice::document::{DocBatch, Document};
use sluice::stage::{parse_config, BuildCtx, Emitter, Stage, OUT_REJECTED};
use sluice::stages::pack::Pack;

const TOK: &str = "samples/tokenizers/deepseek-v3/tokenizer.json";

fn stream() -> Vec<u32> {
    let tok = tokenizers::Tokenizer::from_file(TOK).expect("tokenizer");
    let mut text = String::new();
    let lines = |p: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .expect(p)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    for v in lines("samples/text/cmrc2018_zh.jsonl") {
        text.push_str(v["text"].as_str().unwrap_or(""));
        text.push_str("\n\n");
    }
    for v in lines("samples/benchmarks/gsm8k_test.jsonl") {
        text.push_str(&format!(
            "Question: {}\nAnswer: {}\n\n",
            v["question"].as_str().unwrap_or(""),
            v["answer"].as_str().unwrap_or("")
        ));
    }
    for v in lines("samples/benchmarks/gaokao_mcq_zh.jsonl") {
        text.push_str(v["question"].as_str().unwrap_or(""));
        text.push_str("\n\n");
    }
    tok.encode(text.as_str(), false)
        .expect("encode")
        .get_ids()
        .to_vec()
}

/// The crate's splitmix64 (the same sequence for a seed), with this generator's helpers.
struct Rng(sluice::stages::minhash_dedup::signature::SplitMix64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn log_uniform(&mut self, lo: f64, hi: f64) -> usize {
        (lo * (hi / lo).powf(self.unit())) as usize
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn window(stream: &[u32], off: usize, n: usize) -> Vec<u32> {
    let mut t = Vec::with_capacity(n + 1);
    let mut p = off % stream.len();
    while t.len() < n {
        let take = (n - t.len()).min(stream.len() - p);
        t.extend_from_slice(&stream[p..p + take]);
        p = 0;
    }
    t.push(1);
    t
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn run(label: &str, pack: &mut Pack, batches: impl Iterator<Item = Vec<Document>>) {
    let base = rss_mib();
    let t0 = Instant::now();
    let mut rows = 0usize; // handed over (all of them when shuffled)
    for (i, b) in batches.enumerate() {
        let mut em = Emitter::new(OUT_REJECTED);
        pack.process(DocBatch::new(i as u64, b), &mut em)
            .expect("pack");
        rows += em.take(0).len();
    }
    {
        let mut em = Emitter::with_flush(
            OUT_REJECTED,
            Box::new(|_, docs| {
                rows += docs.len();
                Ok(())
            }),
        );
        pack.finish(&mut em).expect("finish");
    }
    let t = t0.elapsed().as_secs_f64();
    let st = pack.stats().expect("stats");
    println!(
        "{label}: {} docs, {} real tokens, {} rows, {:.1} s ({:.1} M tokens/s), peak RSS {:.0} MiB (before: {base:.0} MiB), padding {:.3}%, split {}",
        st["docs"],
        st["real_tokens"],
        st["sequences"],
        t,
        st["real_tokens"].as_f64().unwrap_or(0.0) / 1e6 / t,
        peak_rss_mib(),
        st["padding_rate"].as_f64().unwrap_or(0.0) * 100.0,
        st["split_boundaries"]
    );
    println!("| bucket | rows | real tokens | padding | fill tokens | share of tokens |");
    println!("|---|---|---|---|---|---|");
    for b in st["buckets"].as_array().into_iter().flatten() {
        println!(
            "| {} | {} | {} | {:.3}% | {} | {:.1}% |",
            b["seq_len"],
            b["sequences"],
            b["real_tokens"],
            b["padding_rate"].as_f64().unwrap_or(0.0) * 100.0,
            b["fill_tokens"],
            b["share"].as_f64().unwrap_or(0.0) * 100.0
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        // A fresh process per run, so its peak RSS is the packer's own (plus the tokenizer
        // vocabulary `pack` reads for split boundaries, and the 2.7 MB token stream).
        let bytes = std::fs::read(&args[i + 1]).expect("stream file");
        let s: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        return child(&args[i + 2], &s);
    }
    let s = stream();
    println!("stream: {} real tokens (DeepSeek-V3)", s.len());
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("stream.u32");
    std::fs::write(
        &f,
        s.iter().flat_map(|t| t.to_le_bytes()).collect::<Vec<u8>>(),
    )
    .expect("write");
    for what in ["mixed", "book"] {
        let st = std::process::Command::new(std::env::current_exe().expect("exe"))
            .arg("--child")
            .arg(&f)
            .arg(what)
            .status()
            .expect("child");
        assert!(st.success());
    }
}

fn child(what: &str, s: &[u32]) {
    let target: usize = std::env::var("PACK_LONG_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let buckets = serde_json::json!([{"seq_len": 4096}, {"seq_len": 32768},
                                     {"seq_len": 131072}, {"seq_len": 1048576}]);
    let ctx = BuildCtx::for_tests("pack", dir.path());
    let shuffle = std::env::var("PACK_LONG_SHUFFLE").map_or(true, |v| v != "0");
    let params = serde_json::json!({"eos_id": 1, "buckets": buckets, "tokenizer": TOK, "seed": 1,
                                    "shuffle": shuffle});
    let mut p = Pack::try_new(parse_config(&params, &ctx).expect("config"), &ctx).expect("pack");
    if what == "book" {
        let mut d = Document::new("book", "books", "");
        d.tokens = Some(window(s, 0, 2_000_000));
        run("one 2 M-token document", &mut p, std::iter::once(vec![d]));
        return;
    }
    let mut rng = Rng(sluice::stages::minhash_dedup::signature::SplitMix64(7));
    let mut made = 0usize;
    let mut k = 0usize;
    let batches = std::iter::from_fn(|| {
        if made >= target {
            return None;
        }
        let mut b = Vec::with_capacity(64);
        while b.len() < 64 && made < target {
            let u = rng.unit();
            let n = if u < 0.90 {
                rng.log_uniform(64.0, 4000.0)
            } else if u < 0.98 {
                rng.log_uniform(4096.0, 32000.0)
            } else if u < 0.997 {
                rng.log_uniform(32768.0, 128000.0)
            } else {
                rng.log_uniform(131072.0, 1_000_000.0)
            };
            let off = rng.next() as usize;
            let mut d = Document::new(format!("g{k}"), "web", "");
            d.tokens = Some(window(s, off, n));
            made += n + 1;
            k += 1;
            b.push(d);
        }
        Some(b)
    });
    run(
        &format!("{} M tokens, mixed lengths", target / 1_000_000),
        &mut p,
        batches,
    );
}
