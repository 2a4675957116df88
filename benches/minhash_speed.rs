//! MinHash signature throughput of `minhash_dedup`, on one core.
//!
//! Run it side by side with the peers through `benches/minhash_peers.py` (which calls this
//! program, times rensa and datatrove on the same documents and the same shingles, and
//! prints the comparison), or alone:
//! `CARGO_TARGET_DIR=target-rel cargo bench --bench minhash_speed`.
//!
//! Documents: English `articles_2500.train` (whitespace-word 5-grams) and Chinese CMRC 2018
//! paragraphs (character 5-grams). Timed on the calling thread only (no rayon):
//! * `text_to_signature`: tokens + shingle set + 128-value signature per document;
//! * `signature_only`: the signature from the precomputed shingle set (u64 hashes), which
//!   is exactly what rensa's `digest_matrix_from_flat_token_hashes` computes.
//!
//! The shingle sets are written to `$MINHASH_BENCH_DIR` (default
//! `/tmp/sluice-minhash-bench`) as flat little-endian u64 plus u64 row offsets, so the
//! peers hash the very same shingles. Output: one `RESULT {json}` line per corpus.

mod shared_data;
use shared_data::shared_data;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use sluice::stages::minhash_dedup::signature::{shingles, tokens, MinHasher, ShingleMode};

const NUM_PERM: usize = 128;
const SEED: u64 = 1;
const REPEATS: usize = 5;

fn english() -> Vec<String> {
    let p = shared_data().join("dedup-minhash-articles-groundtruth/articles_2500.train");
    let txt = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    txt.lines()
        .filter_map(|l| l.split_once(' ').map(|(_, t)| t.to_string()))
        .collect()
}

fn chinese() -> Vec<String> {
    let p = shared_data().join("text-zh-wikipedia-cmrc2018/cmrc2018_dev.contexts.jsonl");
    let txt = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    txt.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("text").and_then(|t| t.as_str()).map(str::to_string))
        .collect()
}

fn best_of<F: FnMut() -> u64>(mut f: F) -> (f64, u64) {
    let mut best = f64::INFINITY;
    let mut check = 0;
    for _ in 0..REPEATS {
        let t = Instant::now();
        check = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best, check)
}

fn run(name: &str, docs: &[String], mode: ShingleMode, n: usize, out_dir: &PathBuf) {
    let h = MinHasher::new(NUM_PERM, SEED);
    let bytes: usize = docs.iter().map(|d| d.len()).sum();
    // Precompute shingle sets (also exported for the peers).
    let mut sets: Vec<Vec<u64>> = Vec::with_capacity(docs.len());
    let mut toks = Vec::new();
    for d in docs {
        tokens(d, None, mode, SEED, &mut toks);
        let mut s = Vec::new();
        shingles(&toks, n, SEED, &mut s);
        sets.push(s);
    }
    let n_shingles: usize = sets.iter().map(|s| s.len()).sum();
    std::fs::create_dir_all(out_dir).expect("bench dir");
    let mut flat = Vec::with_capacity(n_shingles * 8);
    let mut offs = Vec::with_capacity((sets.len() + 1) * 8);
    let mut o = 0u64;
    offs.extend_from_slice(&o.to_le_bytes());
    for s in &sets {
        for x in s {
            flat.extend_from_slice(&x.to_le_bytes());
        }
        o += s.len() as u64;
        offs.extend_from_slice(&o.to_le_bytes());
    }
    std::fs::File::create(out_dir.join(format!("{name}.shingles.u64")))
        .and_then(|mut f| f.write_all(&flat))
        .expect("write shingles");
    std::fs::File::create(out_dir.join(format!("{name}.offsets.u64")))
        .and_then(|mut f| f.write_all(&offs))
        .expect("write offsets");

    let mut sig = vec![0u32; NUM_PERM];
    let (t_sig, c1) = best_of(|| {
        let mut acc = 0u64;
        for s in &sets {
            h.signature(s, &mut sig);
            acc = acc.wrapping_add(sig[0] as u64);
        }
        acc
    });
    let (t_e2e, c2) = best_of(|| {
        let mut acc = 0u64;
        let mut toks = Vec::new();
        let mut sh = Vec::new();
        for d in docs {
            tokens(d, None, mode, SEED, &mut toks);
            shingles(&toks, n, SEED, &mut sh);
            h.signature(&sh, &mut sig);
            acc = acc.wrapping_add(sig[0] as u64);
        }
        acc
    });
    assert_eq!(c1, c2, "both paths must compute the same signatures");
    let j = serde_json::json!({
        "corpus": name,
        "docs": docs.len(),
        "bytes": bytes,
        "shingles": n_shingles,
        "num_perm": NUM_PERM,
        "signature_only_secs": t_sig,
        "signature_only_docs_per_sec": docs.len() as f64 / t_sig,
        "signature_only_mshingles_per_sec": n_shingles as f64 / t_sig / 1e6,
        "text_to_signature_secs": t_e2e,
        "text_to_signature_docs_per_sec": docs.len() as f64 / t_e2e,
        "text_to_signature_mb_per_sec": bytes as f64 / t_e2e / 1e6,
    });
    println!("RESULT {j}");
}

fn main() {
    let out_dir = PathBuf::from(
        std::env::var("MINHASH_BENCH_DIR").unwrap_or_else(|_| "/tmp/sluice-minhash-bench".into()),
    );
    run("en", &english(), ShingleMode::Whitespace, 5, &out_dir);
    run("zh", &chinese(), ShingleMode::Chars, 5, &out_dir);
}
