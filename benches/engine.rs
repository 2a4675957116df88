//! Engine benchmarks (issue: engine), side by side in one run:
//!
//! 1. pass-through `ingest_jsonl → parquet_shards` over a large generated JSONL file vs a
//!    bare loop that only reads and parses the same file with serde_json;
//! 2. the `tokenize` stage (through the runtime) vs bare `Tokenizer::encode_batch` on the
//!    same documents with the same thread count.
//!
//! Run: `cargo bench --bench engine` (env `SLUICE_BENCH_MB`, default 200, sets the input
//! size; `SLUICE_BENCH_THREADS`, default 2; `SLUICE_BENCH_TOK_DOCS`, default 60,000;
//! `SLUICE_BENCH_ONLY=pass` stops after the pass-through; `tok-bare` / `tok-stage` run one
//! tokenize side once, for profiling). Prints throughputs and ratios;
//! asserts nothing.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::time::Instant;

use sluice::config;
use sluice::runtime::{run, RunOptions};
use tokenizers::Tokenizer;

fn make_input(path: &std::path::Path, target_mb: usize) -> (usize, u64) {
    let mut lines = Vec::new();
    for f in [
        "samples/text/cmrc2018_zh.jsonl",
        "samples/text/articles_en.jsonl",
    ] {
        for l in std::fs::read_to_string(f)
            .expect("run from the repo root")
            .lines()
        {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            lines.push(v["text"].as_str().unwrap().to_string());
        }
    }
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let (mut n, mut bytes) = (0usize, 0u64);
    while bytes < (target_mb as u64) << 20 {
        for t in &lines {
            let l = serde_json::json!({"id": format!("d{n}"), "text": t, "url": format!("https://example.com/{n}")}).to_string();
            bytes += l.len() as u64 + 1;
            writeln!(w, "{l}").unwrap();
            n += 1;
        }
    }
    w.flush().unwrap();
    (n, bytes)
}

/// Wall seconds of one full pipeline run (overwriting `out`).
fn timed_run(yaml: &str, out: &std::path::Path, threads: usize) -> f64 {
    let spec = config::parse(yaml, "bench").unwrap();
    let mut o = RunOptions::new(out, threads);
    o.overwrite = true;
    let t0 = Instant::now();
    run(spec, &o).unwrap();
    t0.elapsed().as_secs_f64()
}

/// CPU seconds (user + system) this process has used so far.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Repeats of each measurement (interleaved; the best of each side is reported).
const REPEATS: usize = 3;

fn main() {
    // As the `sluice` binary does at startup.
    sluice::runtime::tune_allocator();
    let mb: usize = std::env::var("SLUICE_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let threads: usize = std::env::var("SLUICE_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    let (ndocs, bytes) = make_input(&input, mb);
    println!(
        "input: {ndocs} docs, {:.1} MB; threads {threads}",
        bytes as f64 / 1e6
    );

    // 1. Pass-through vs bare read + parse.
    let bare_loop = || {
        let t0 = Instant::now();
        let r = BufReader::with_capacity(1 << 16, std::fs::File::open(&input).unwrap());
        let mut chars = 0usize;
        for l in r.lines() {
            let v: serde_json::Value = serde_json::from_str(&l.unwrap()).unwrap();
            chars += v["text"].as_str().map(|s| s.len()).unwrap_or(0);
        }
        black_box(chars);
        t0.elapsed().as_secs_f64()
    };
    let yaml = format!(
        "run:\n  batch_size: 512\nnodes:\n  docs:\n    kind: ingest_jsonl\n    paths: [\"{}\"]\n  shards:\n    kind: parquet_shards\n    inputs: [docs]\n",
        input.display()
    );
    // Interleaved repeats, best of each: drift in machine load hits both sides alike.
    let (mut bare, mut pass, mut pass_cpu) = (f64::INFINITY, f64::INFINITY, 0.0);
    for _ in 0..REPEATS {
        bare = bare.min(bare_loop());
        let c0 = cpu_secs();
        let t = timed_run(&yaml, &dir.path().join("pass"), threads);
        if t < pass {
            (pass, pass_cpu) = (t, cpu_secs() - c0);
        }
    }
    let mbs = |s: f64| bytes as f64 / 1e6 / s;
    println!(
        "passthrough: bare serde_json loop {:.1} MB/s, ingest_jsonl→parquet_shards {:.1} MB/s, ratio {:.2} \
         (pipeline used {:.2} cores, {:.2} CPU-ms per MB)",
        mbs(bare),
        mbs(pass),
        bare / pass,
        pass_cpu / pass,
        pass_cpu * 1e3 / (bytes as f64 / 1e6)
    );

    if std::env::var("SLUICE_BENCH_ONLY").as_deref() == Ok("pass") {
        return;
    }

    // 2. Tokenize stage vs bare encode_batch on the same documents.
    let tok_docs: usize = std::env::var("SLUICE_BENCH_TOK_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000)
        .min(ndocs);
    let small = dir.path().join("tok.jsonl");
    {
        let r = BufReader::new(std::fs::File::open(&input).unwrap());
        let mut w = std::fs::File::create(&small).unwrap();
        for l in r.lines().take(tok_docs) {
            writeln!(w, "{}", l.unwrap()).unwrap();
        }
    }
    let texts: Vec<String> = BufReader::new(std::fs::File::open(&small).unwrap())
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let tbytes: usize = texts.iter().map(|t| t.len()).sum();
    let tok_file = "samples/tokenizers/qwen2/tokenizer.json";
    let t0 = Instant::now();
    Tokenizer::from_file(tok_file).unwrap();
    let load_secs = t0.elapsed().as_secs_f64();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    // A fresh tokenizer each time (loaded outside the timing): the stage starts each run
    // with a cold BPE word cache too, so neither side profits from an earlier repeat.
    let encode = |fast: bool| {
        let tok = Tokenizer::from_file(tok_file).unwrap();
        let t0 = Instant::now();
        let enc = pool.install(|| {
            let texts: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
            if fast {
                tok.encode_batch_fast(texts, false).unwrap()
            } else {
                tok.encode_batch(texts, false).unwrap()
            }
        });
        black_box(enc.len());
        t0.elapsed().as_secs_f64()
    };
    let yaml = format!(
        "run:\n  batch_size: 256\nnodes:\n  docs:\n    kind: ingest_jsonl\n    paths: [\"{}\"]\n  tok:\n    kind: tokenize\n    inputs: [docs]\n    tokenizer: samples/tokenizers/qwen2/tokenizer.json\n  shards:\n    kind: parquet_shards\n    inputs: [tok]\n    write_text: false\n",
        small.display()
    );
    if let Ok(only) = std::env::var("SLUICE_BENCH_ONLY") {
        // For profiling one side alone: `tok-bare` or `tok-stage`.
        let t = match only.as_str() {
            "tok-bare" => encode(false),
            _ => timed_run(&yaml, &dir.path().join("tok"), threads),
        };
        println!("{only}: {:.2} MB/s", tbytes as f64 / 1e6 / t);
        return;
    }
    let (mut bare_tok, mut bare_fast, mut stage) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    for _ in 0..REPEATS {
        bare_tok = bare_tok.min(encode(false));
        bare_fast = bare_fast.min(encode(true));
        stage = stage.min(timed_run(&yaml, &dir.path().join("tok"), threads));
    }
    let tmb = |s: f64| tbytes as f64 / 1e6 / s;
    println!(
        "tokenize ({tok_docs} docs, {:.1} MB): bare encode_batch {:.2} MB/s, bare encode_batch_fast {:.2} MB/s, \
         pipeline ingest→tokenize→parquet {:.2} MB/s; ratio vs encode_batch {:.2}, vs encode_batch_fast {:.2}",
        tbytes as f64 / 1e6,
        tmb(bare_tok),
        tmb(bare_fast),
        tmb(stage),
        bare_tok / stage,
        bare_fast / stage
    );
    println!(
        "  (the pipeline's time includes loading tokenizer.json once, {load_secs:.2} s; bare sides exclude it)"
    );
}
