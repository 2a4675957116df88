//! Distributed MinHash dedup, phases 2 (per-bucket pairs) and 3 (clustering), on N
//! synthetic signatures (default 10,000,000).
//!
//! Run: `cargo bench --bench minhash_dist -- [N]
//! [--ranks W] [--buckets B] [--dir D] [--pairs-out DIR]`.
//!
//! Phase 1's output is generated directly through the real phase-1 writer
//! (`SignatureSink::push_signature`: signature file, id file, sorted bucket runs) for W
//! ranks (default 8) over 1,000 splits: each document has a random 128-value signature;
//! every tenth is a near-copy of an earlier document (20 of 128 values changed, so its
//! estimated Jaccard is about 0.84), and every hundredth a copy of a near-copy, so clusters
//! have chains. Ids are 28 bytes. Then every phase-2 unit (B buckets, default 8) and the
//! phase-3 unit run as **separate processes** (this binary re-executed), one at a time;
//! each one's wall time and peak RSS (`wait4` → `ru_maxrss`) are reported. On a cluster
//! the phase-2 units run in parallel: the phase-2 critical path is the slowest bucket.
//! `--pairs-out DIR` also writes the accepted pairs in datatrove's `.dups` format, so its
//! clustering step can be timed on the same pairs (`benches/minhash_dist_datatrove.py`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sluice::document::Origin;
use sluice::stage::BuildCtx;
use sluice::stages::minhash_dedup::bands::band_keys;
use sluice::stages::minhash_dedup::dist::{self, Plan, SignatureSink};
use sluice::stages::minhash_dedup::signature::SplitMix64;
use sluice::stages::minhash_dedup::{Config, Mode};

const SPLITS: usize = 1000;
/// Shingle-set size stored with every synthetic signature (all equal, so the containment
/// test accepts nothing the Jaccard test rejects).
const SET_SIZE: usize = 1000;

fn arg(name: &str) -> Option<String> {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1).cloned())
}

fn cfg(buckets: usize) -> Config {
    Config {
        mode: Mode::Distributed,
        buckets: Some(buckets),
        ..Config::default()
    }
}

fn plan(buckets: usize) -> Plan {
    Plan {
        node: "mh".into(),
        cfg: cfg(buckets),
        buckets,
    }
}

/// Signature of synthetic document `i` (global order index).
fn signature(i: u64, num_perm: usize, out: &mut Vec<u32>) {
    out.clear();
    if i % 10 == 9 {
        // A near-copy of an earlier document (every hundredth: of an earlier near-copy).
        let mut r = SplitMix64(i ^ 0xD1CE);
        let j = if i % 100 == 99 {
            (r.next_u64() % (i / 10)) * 10 + 9
        } else {
            r.next_u64() % i
        };
        let j = j.min(i - 1);
        signature(j, num_perm, out);
        for _ in 0..20 {
            let p = (r.next_u64() % num_perm as u64) as usize;
            out[p] = r.next_u64() as u32;
        }
        return;
    }
    let mut r = SplitMix64(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 7);
    out.extend((0..num_perm).map(|_| r.next_u64() as u32));
}

fn generate(dir: &Path, n: u64, ranks: usize, buckets: usize) {
    let c = cfg(buckets);
    let lsh = c.lsh_params();
    let per_split = n.div_ceil(SPLITS as u64);
    let sig_dir = dist::state_dir(dir, "mh").join("sig");
    let mut sig = Vec::new();
    let mut keys = Vec::new();
    for r in 0..ranks {
        let mut ctx = BuildCtx::for_tests("mh", &sig_dir);
        ctx.out_dir = sig_dir.clone();
        ctx.rank = r;
        ctx.world_size = ranks;
        let mut sink = SignatureSink::new(c.clone(), &ctx).expect("sink");
        for s in (r..SPLITS).step_by(ranks) {
            for rec in 0..per_split {
                let i = s as u64 * per_split + rec;
                if i >= n {
                    break;
                }
                signature(i, c.num_perm, &mut sig);
                band_keys(&sig, lsh, c.seed, &mut keys);
                let id = format!("cc-2024-22/{s:05}/{rec:012}");
                sink.push_signature(Origin::new(s, rec).0, &id, &sig, SET_SIZE, &keys)
                    .expect("push");
            }
        }
        sluice::stage::Sink::finish(&mut sink).expect("finish");
        let m = sig_dir
            .join("ranks")
            .join(format!("r{r:04}-of-{ranks:04}.done"));
        std::fs::create_dir_all(m.parent().unwrap()).unwrap();
        std::fs::write(m, "{}").unwrap();
    }
}

/// Run this binary with `args`; return (wall seconds, peak RSS bytes).
fn child(args: &[String]) -> (f64, u64) {
    let t0 = Instant::now();
    // Reaped by `wait4` below (which also gives its resource usage), not `Child::wait`.
    #[allow(clippy::zombie_processes)]
    let c = Command::new(std::env::current_exe().unwrap())
        .args(args)
        .spawn()
        .expect("spawn");
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for the child we spawned.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(c.id() as i32, &mut status, 0, &mut ru) };
    assert!(pid > 0, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child {args:?} failed ({status})"
    );
    (t0.elapsed().as_secs_f64(), ru.ru_maxrss as u64 * 1024)
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.get(1).map(String::as_str) == Some("--child") {
        let dir = PathBuf::from(&a[3]);
        let (ranks, buckets): (usize, usize) = (a[4].parse().unwrap(), a[5].parse().unwrap());
        let p = plan(buckets);
        match a[2].as_str() {
            "pairs" => {
                dist::run_pairs(&dir, &p, a[6].parse().unwrap(), ranks).expect("pairs");
            }
            _ => {
                dist::run_clusters(&dir, &p, ranks).expect("clusters");
            }
        }
        return;
    }
    let n: u64 = a
        .iter()
        .skip(1)
        .take_while(|x| !x.starts_with("--"))
        .find_map(|x| x.parse().ok())
        .unwrap_or(10_000_000);
    let ranks: usize = arg("--ranks").and_then(|v| v.parse().ok()).unwrap_or(8);
    let buckets: usize = arg("--buckets").and_then(|v| v.parse().ok()).unwrap_or(8);
    let tmp = tempfile::tempdir_in(arg("--dir").unwrap_or_else(|| "/tmp".into())).unwrap();
    let dir = tmp.path().to_path_buf();
    let d = dir.to_string_lossy().into_owned();

    let t0 = Instant::now();
    generate(&dir, n, ranks, buckets);
    let lsh = cfg(buckets).lsh_params();
    println!(
        "generated phase-1 output: {n} signatures, {ranks} ranks, {} bands × {} rows, {buckets} buckets in {:.1}s",
        lsh.bands,
        lsh.rows,
        t0.elapsed().as_secs_f64()
    );

    let (mut p2_sum, mut p2_max, mut p2_rss) = (0.0f64, 0.0f64, 0u64);
    for b in 0..buckets {
        let (t, rss) = child(&[
            "--child".into(),
            "pairs".into(),
            d.clone(),
            ranks.to_string(),
            buckets.to_string(),
            b.to_string(),
        ]);
        p2_sum += t;
        p2_max = p2_max.max(t);
        p2_rss = p2_rss.max(rss);
    }
    let state = dist::state_dir(&dir, "mh");
    let mut entries = 0u64;
    let mut pairs = 0u64;
    for b in 0..buckets {
        let v: serde_json::Value = serde_json::from_slice(
            &std::fs::read(state.join(format!("pairs/b{b:04}-of-{buckets:04}.done"))).unwrap(),
        )
        .unwrap();
        entries += v["stats"]["entries"].as_u64().unwrap_or(0);
        pairs += v["stats"]["pairs"].as_u64().unwrap_or(0);
    }
    println!(
        "phase 2 (pairs): {buckets} units, {entries} band entries → {pairs} pairs; total {p2_sum:.1}s (one core), slowest unit {p2_max:.1}s, peak RSS per unit {}",
        gib(p2_rss)
    );

    let (t3, rss3) = child(&[
        "--child".into(),
        "clusters".into(),
        d.clone(),
        ranks.to_string(),
        buckets.to_string(),
    ]);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("remove/done")).unwrap()).unwrap();
    println!(
        "phase 3 (clusters): {} distinct pairs, {} duplicates, {} union-find nodes in {t3:.1}s, peak RSS {}, union-find state {} ({:.1} B/pair)",
        v["stats"]["pairs"],
        v["stats"]["duplicates"],
        v["stats"]["nodes"],
        gib(rss3),
        gib(v["stats"]["state_bytes"].as_u64().unwrap_or(0)),
        v["state_bytes_per_pair"].as_f64().unwrap_or(0.0)
    );

    if let Some(out) = arg("--pairs-out") {
        // datatrove's MinhashDedupCluster input: per bucket a `.dups` file of
        // little-endian u32 (file, doc, file, doc) tuples.
        use std::io::Write;
        std::fs::create_dir_all(&out).unwrap();
        let rec = |o: u64| (o & ((1 << Origin::RECORD_BITS) - 1)) as u32;
        for b in 0..buckets {
            let f = std::fs::File::create(Path::new(&out).join(format!("{b:05}_00.dups"))).unwrap();
            let mut w = std::io::BufWriter::new(f);
            for p in dist::read_pairs(&state.join(format!("pairs/b{b:04}.bin"))).unwrap() {
                let p = p.unwrap();
                for v in [
                    Origin(p.rep).split() as u32,
                    rec(p.rep),
                    Origin(p.d).split() as u32,
                    rec(p.d),
                ] {
                    w.write_all(&v.to_le_bytes()).unwrap();
                }
            }
        }
        println!("pairs written to {out} (datatrove .dups format)");
    }
}
