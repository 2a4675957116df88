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

use sluice::stage::BuildCtx;
use sluice::stages::minhash_dedup::signature::SplitMix64;
use sluice::stages::minhash_dedup::{Config, MinhashDedup};

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
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
        if stage.insert_signature_for_bench(&id, &sig).expect("insert") {
            dups += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let rss = rss_bytes().saturating_sub(rss0);
    let stats = stage.stats().unwrap_or_default();
    let state = stats["state_bytes"].as_u64().unwrap_or(0);
    let keys = stats["band_keys"].as_u64().unwrap_or(0);
    let spill = 8usize << 20; // spill buffer words, see mod.rs
    let spill_bytes = (spill * 4) as u64;
    let index_slots_bytes = |keys: f64| -> f64 {
        let slots = (keys / 0.875).ceil().max(16.0) as u64;
        (slots.next_power_of_two() * 12) as f64
    };
    let idx_now = index_slots_bytes(keys as f64);
    let per_doc_linear = (state as f64 - idx_now - spill_bytes as f64) / n as f64;
    let keys_per_doc = keys as f64 / n as f64;
    let target = 50_000_000f64;
    let idx_50m = index_slots_bytes(keys_per_doc * target);
    let proj = per_doc_linear * target + idx_50m + spill_bytes as f64;
    let peak = proj + idx_50m / 2.0; // the old table is alive while the index doubles
    let gib = |b: f64| b / (1u64 << 30) as f64;
    println!("# minhash_dedup index memory (num_perm {}, {}×{} bands×rows)\n", cfg.num_perm, lsh.bands, lsh.rows);
    println!("| measure | value |");
    println!("|---|---|");
    println!("| documents inserted | {n} ({dups} flagged as candidates) |");
    println!("| insert time | {secs:.2} s ({:.2} M docs/s, band keys + index only) |", n as f64 / secs / 1e6);
    println!("| band keys stored | {keys} ({keys_per_doc:.2} per doc) |");
    println!("| state_bytes (stage accounting) | {state} ({:.1} B/doc) |", state as f64 / n as f64);
    println!("| RSS growth (process) | {rss} ({:.1} B/doc) |", rss as f64 / n as f64);
    println!("| linear per-doc part (uf, counters, ids) | {per_doc_linear:.1} B/doc |");
    println!("| band index now | {idx_now:.0} B ({:.1} B/doc) |", idx_now / n as f64);
    println!("| projected 50 M docs, steady | {:.2} GiB ({:.0} B/doc) |", gib(proj), proj / target);
    println!("| projected 50 M docs, peak while the index doubles | {:.2} GiB |", gib(peak));
    println!("| projected 50 M docs, pre-sized (`expected_docs: 50000000`) | {:.2} GiB |", gib(per_doc_linear * target + keys_per_doc * target * 12.0 / 0.875 + spill_bytes as f64));
    println!("\nSignatures ({} B/doc) are spilled to the scratch directory, not held in RAM: {:.1} GiB of disk at 50 M docs.", cfg.num_perm * 4, gib(target * cfg.num_perm as f64 * 4.0));
}
