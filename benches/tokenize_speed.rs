//! Tokenize stage alone vs bare Hugging Face `encode_batch`, same documents, same threads.
//!
//!   tokenize_speed --side hf|stage|stage-hf --threads N --tokenizer PATH FILE.jsonl...
//!
//! Reads the `text` field (else the longest string field) of every line of the JSONL files into memory, then times only the
//! encoding: `hf` is `Tokenizer::encode_batch` over groups of at most 4 MiB of text (what
//! the stage's HF engine does), `stage` is the `tokenize` stage's `process` (engine
//! `auto`: fast for the shipped tokenizers) over batches of 512 documents, `stage-hf` the
//! stage with `engine: hf`. All on one rayon pool of N threads. Prints one line: CPU
//! seconds of the process (all threads, `getrusage`) and wall seconds spent encoding, and
//! a checksum of the ids so sides can be compared. Driven by `benches/tokenize_speed.sh`.

use std::path::PathBuf;
use std::time::Instant;

use sluice::document::{DocBatch, Document};
use sluice::stage::{Emitter, Transform, OUT_REJECTED};
use sluice::stages::tokenize::{Config, Engine, Tokenize};

fn cpu_s() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn main() {
    let mut side = String::from("stage");
    let mut threads = 2usize;
    let mut tokenizer = None;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--side" => side = args.next().expect("--side"),
            "--threads" => threads = args.next().expect("--threads").parse().unwrap(),
            "--tokenizer" => tokenizer = Some(PathBuf::from(args.next().expect("--tokenizer"))),
            "--bench" => {}
            _ => files.push(PathBuf::from(a)),
        }
    }
    let tokenizer = tokenizer.expect("--tokenizer PATH");
    let mut texts = Vec::new();
    for f in &files {
        let s = std::fs::read_to_string(f).unwrap();
        for line in s.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            // `text`, else the longest string field (e.g. a benchmark's `question`).
            let t = v["text"].as_str().or_else(|| {
                v.as_object()?
                    .values()
                    .filter_map(|x| x.as_str())
                    .max_by_key(|x| x.len())
            });
            texts.push(t.unwrap_or_default().to_string());
        }
    }
    let bytes: usize = texts.iter().map(String::len).sum();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut sum = 0u64;
    let mut n_tokens = 0usize;
    let (c0, t0);
    match side.as_str() {
        "hf" => {
            let tok = tokenizers::Tokenizer::from_file(&tokenizer).unwrap();
            let mut groups: Vec<Vec<&str>> = vec![Vec::new()];
            let mut gb = 0;
            for t in &texts {
                if gb + t.len() > 4 << 20 && !groups.last().unwrap().is_empty() {
                    groups.push(Vec::new());
                    gb = 0;
                }
                gb += t.len();
                groups.last_mut().unwrap().push(t);
            }
            c0 = cpu_s();
            t0 = Instant::now();
            pool.install(|| {
                for g in groups {
                    for e in tok.encode_batch(g, false).unwrap() {
                        n_tokens += e.get_ids().len();
                        sum = e
                            .get_ids()
                            .iter()
                            .fold(sum, |s, &x| s.wrapping_mul(31).wrapping_add(x as u64));
                    }
                }
            });
        }
        "stage" | "stage-hf" => {
            let t = Tokenize::new(Config {
                tokenizer: tokenizer.clone(),
                add_special_tokens: false,
                append_eos: false,
                eos_token: None,
                max_unsplit_bytes: 1 << 20,
                engine: if side == "stage" {
                    Engine::Auto
                } else {
                    Engine::Hf
                },
            })
            .unwrap();
            eprintln!("engine: {}", t.engine());
            let mut batches = Vec::new();
            let mut docs = Vec::new();
            for (i, text) in texts.iter().enumerate() {
                docs.push(Document::new(format!("d{i}"), "bench", text.clone()));
                if docs.len() == 512 {
                    batches.push(DocBatch::new(
                        batches.len() as u64,
                        std::mem::take(&mut docs),
                    ));
                }
            }
            batches.push(DocBatch::new(batches.len() as u64, docs));
            c0 = cpu_s();
            t0 = Instant::now();
            pool.install(|| {
                for b in batches {
                    let mut em = Emitter::new(OUT_REJECTED);
                    t.process(b, &mut em).unwrap();
                    for d in em.take(0) {
                        let ids = d.tokens.as_ref().unwrap();
                        n_tokens += ids.len();
                        sum = ids
                            .iter()
                            .fold(sum, |s, &x| s.wrapping_mul(31).wrapping_add(x as u64));
                    }
                }
            });
        }
        s => panic!("unknown side {s}"),
    }
    let (cpu, wall) = (cpu_s() - c0, t0.elapsed().as_secs_f64());
    let mb = bytes as f64 / 1e6;
    println!(
        "side={side} threads={threads} docs={} mb={mb:.1} tokens={n_tokens} cpu_s={cpu:.2} wall_s={wall:.2} mb_per_cpu_s={:.2} checksum={sum:016x}",
        texts.len(),
        mb / cpu
    );
}
