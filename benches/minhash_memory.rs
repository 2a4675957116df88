//! Index memory of `minhash_dedup` per document, measured on synthetic signatures and
//! extrapolated to 50 million documents.
//!
//! Run: `CARGO_TARGET_DIR=target-rel cargo bench --bench minhash_memory -- [N]`
//! (default N = 3,000,000). Synthetic documents get random 128-value signatures; every
//! tenth is a near-copy of an earlier one (20 of 128 values changed), so the index sees a
//! realistic share of shared band keys. Ids look like `cc-2024-22/00042/000001234567`
//! (28 bytes). Reports the stage's own byte accounting (`state_bytes`: band index,
//! union-find, duplicate counters, id arena, spill buffer) and the process RSS growth,
//! both per document, and projects 50 M documents: per-document parts scale linearly,
//! the band index is sized as the power-of-two table that 50 M × bands keys need.

use std::time::Instant;

use sluice::stage::{BuildCtx, Stage};
use sluice::stages::minhash_dedup::signature::SplitMix64;
use sluice::stages::minhash_dedup::{Config, MinhashDedup};

/// Shingle-set size stored with every synthetic signature (all equal, so the containment
/// test accepts nothing the Jaccard test rejects).
const SET_SIZE: usize = 1000;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3_000_000);
    let cfg = Config::default();
    let lsh = cfg.lsh_params();
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = BuildCtx::for_tests("mh", dir.path());
    let rss0 = rss_bytes();
    let mut stage = MinhashDedup::new(cfg.clone(), &ctx);
    let mut rng = SplitMix64(99);
    let mut recent: Vec<Vec<u32>> = Vec::new();
    let mut sig = vec![0u32; cfg.num_perm];
    let mut dups = 0u64;
    let t = Instant::now();
    for i in 0..n {
        if i % 10 == 9 && !recent.is_empty() {
            let src = &recent[rng.below(recent.len() as u64) as usize];
            sig.copy_from_slice(src);
            for _ in 0..20 {
                let k = rng.below(cfg.num_perm as u64) as usize;
                sig[k] = rng.next_u64() as u32;
            }
        } else {
            for v in sig.iter_mut() {
                *v = rng.next_u64() as u32;
            }
            if recent.len() < 4096 {
                recent.push(sig.clone());
            } else {
                let k = rng.below(4096) as usize;
                recent[k].copy_from_slice(&sig);
            }
        }
        let id = format!("cc-2024-22/{:05}/{:012}", i / 100_000, i);
        if stage
            .insert_signature_for_bench(&id, &sig, SET_SIZE)
            .expect("insert")
        {
            dups += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let rss = rss_bytes().saturating_sub(rss0);
    let stats = stage.stats().unwrap_or_default();
    let state = stats["state_bytes"].as_u64().unwrap_or(0) as f64;
    let keys = stats["band_keys"].as_u64().unwrap_or(0) as f64;
    let idx_now = stats["index_bytes"].as_u64().unwrap_or(0) as f64;
    let spill_bytes = stats["spill_buffer_bytes"].as_u64().unwrap_or(0) as f64;
    let nf = n as f64;
    let per_doc_linear = (state - idx_now - spill_bytes) / nf;
    let keys_per_doc = keys / nf;
    let target = 50_000_000f64;
    let keys_50m = keys_per_doc * target;
    // Segments hold 0.583..0.875 load: 12/0.875 .. 12/0.583 bytes per key.
    let (idx_lo, idx_hi) = (keys_50m * 12.0 / 0.875, keys_50m * 12.0 / 0.5833);
    let gib = |b: f64| b / (1u64 << 30) as f64;
    let total = |idx: f64| per_doc_linear * target + idx + spill_bytes;
    println!(
        "# minhash_dedup index memory (num_perm {}, {}×{} bands×rows)\n",
        cfg.num_perm, lsh.bands, lsh.rows
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!("| documents inserted | {n} ({dups} had an LSH candidate) |");
    println!(
        "| insert time | {secs:.2} s ({:.2} M docs/s: band keys + index + spill, no signature) |",
        nf / secs / 1e6
    );
    println!("| band keys stored | {keys:.0} ({keys_per_doc:.2} per doc) |");
    println!(
        "| state_bytes (stage accounting) | {state:.0} ({:.1} B/doc) |",
        state / nf
    );
    println!(
        "| RSS growth (process) | {rss} ({:.1} B/doc) |",
        rss as f64 / nf
    );
    println!(
        "| band index now | {idx_now:.0} B ({:.1} B/key, {:.1} B/doc) |",
        idx_now / keys.max(1.0),
        idx_now / nf
    );
    println!("| per-doc part (union-find 8, dup counter 4, id offset 8, id bytes) | {per_doc_linear:.1} B/doc |");
    println!(
        "| spill buffer (fixed) | {:.0} MiB |",
        spill_bytes / (1u64 << 20) as f64
    );
    println!(
        "| projected 50 M docs (index load 0.875 .. 0.583) | {:.2} .. {:.2} GiB ({:.0} .. {:.0} B/doc) |",
        gib(total(idx_lo)),
        gib(total(idx_hi)),
        total(idx_lo) / target,
        total(idx_hi) / target
    );
    println!(
        "| projected 50 M docs, pre-sized (`expected_docs: 50000000`) | {:.2} GiB |",
        gib(total(idx_lo))
    );
    // A spilled record is the signature plus the shingle-set size (4 B each).
    let rec = (cfg.num_perm + 1) * 4;
    println!("\nSignature records ({rec} B/doc: signature + set size) are spilled to the scratch directory, not held in RAM: {:.1} GiB of disk at 50 M docs.", gib(target * rec as f64));
}
