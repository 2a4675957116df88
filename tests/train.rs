//! The `feed` loader and `sluice train` on real tokens: Chinese Wikipedia paragraphs from
//! `samples/text/cmrc2018_zh.jsonl`, tokenized with the real Qwen2 tokenizer and packed
//! into shards with the packed schema.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sluice::feed::fixture::{tokenize_jsonl, write_packed_dir};
use sluice::feed::shards::{ShardRows, ShardSet};
use sluice::feed::{Batch, Feed, FeedConfig, SampleKey};
use sluice::train::{train, RunOptions, TrainConfig};

const EOS: u32 = 151_643; // Qwen2 <|endoftext|>

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Packed fixture shards (built once per test binary): 3 shards of 256-token rows.
fn packed() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sluice-train-fixture-{}", std::process::id()));
        let docs = tokenize_jsonl(
            &root().join("samples/text/cmrc2018_zh.jsonl"),
            &root().join("samples/tokenizers/qwen2/tokenizer.json"),
            EOS,
            160,
        )
        .expect("tokenize samples");
        write_packed_dir(&dir, &docs, 256, EOS, 3).expect("write shards");
        dir
    })
}

/// A small corpus for the training tests: the first 12 paragraphs in 64-token rows, so a
/// short run sees each row several times and the loss must fall well below unigram level.
fn small_packed() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sluice-train-small-{}", std::process::id()));
        let docs = tokenize_jsonl(
            &root().join("samples/text/cmrc2018_zh.jsonl"),
            &root().join("samples/tokenizers/qwen2/tokenizer.json"),
            EOS,
            6,
        )
        .expect("tokenize samples");
        write_packed_dir(&dir, &docs, 64, EOS, 2).expect("write shards");
        dir
    })
}

fn cfg(batch_size: usize, seq_len: usize, rank: usize, world: usize) -> FeedConfig {
    let mut c = FeedConfig::new(vec![packed().to_path_buf()]);
    c.batch_size = batch_size;
    c.seq_len = seq_len;
    c.rank = rank;
    c.world_size = world;
    c.seed = 42;
    c
}

fn take(feed: &mut Feed, n: usize) -> Vec<Batch> {
    (0..n).map(|_| feed.next_batch().expect("batch")).collect()
}

/// Every sample of one epoch, computed straight from the shards.
fn all_samples(seq_len: usize) -> BTreeSet<SampleKey> {
    let set = ShardSet::discover(&[packed().to_path_buf()]).unwrap();
    let mut out = BTreeSet::new();
    for (s, info) in set.shards.iter().enumerate() {
        let rows = ShardRows::load(&info.path).unwrap();
        for r in 0..rows.rows() {
            if !rows.valid[r] {
                continue;
            }
            for w in 0..sluice::feed::window_count(rows.real_len(r), seq_len) {
                out.insert(SampleKey {
                    shard: s as u32,
                    row: r as u32,
                    window: w as u32,
                });
            }
        }
    }
    out
}

#[test]
#[allow(clippy::needless_range_loop)]
fn feed_ranks_are_disjoint_and_cover_an_epoch() {
    let (bs, t, world) = (4, 64, 3);
    let all = all_samples(t);
    let n = all.len();
    assert!(n > 100, "fixture too small: {n} samples");
    let steps = n.div_ceil(bs * world) + 1;
    let mut seen: BTreeMap<SampleKey, usize> = BTreeMap::new();
    let mut per_rank = vec![0usize; world];
    for (rank, rank_count) in per_rank.iter_mut().enumerate() {
        let mut feed = Feed::open(cfg(bs, t, rank, world), None).unwrap();
        for b in take(&mut feed, steps) {
            assert_eq!(b.samples.len(), bs);
            for (j, k) in b.samples.iter().enumerate() {
                let g = b.step as usize * bs * world + rank * bs + j;
                if g < n {
                    *seen.entry(*k).or_default() += 1;
                    *rank_count += 1;
                }
            }
        }
    }
    assert!(seen.values().all(|&c| c == 1), "a sample went to two ranks");
    assert_eq!(
        seen.keys().copied().collect::<BTreeSet<_>>(),
        all,
        "ranks do not cover the epoch"
    );
    // Even split up to one batch.
    assert!(per_rank.iter().max().unwrap() - per_rank.iter().min().unwrap() <= bs);
}

#[test]
fn feed_batches_are_well_formed() {
    let mut feed = Feed::open(cfg(4, 64, 0, 1), None).unwrap();
    for b in take(&mut feed, 5) {
        for i in 0..b.batch_size * b.seq_len {
            let col = i % b.seq_len;
            if col == 0 {
                assert_eq!(b.doc_start[i], 1);
                assert_eq!(b.position_ids[i], 0);
            } else if b.doc_start[i] == 1 {
                assert_eq!(b.position_ids[i], 0);
            } else {
                assert_eq!(b.position_ids[i], b.position_ids[i - 1] + 1);
            }
            // A label is the next input token unless that token starts a new document.
            if b.labels[i] >= 0 && col + 1 < b.seq_len {
                assert_eq!(b.labels[i], b.input_ids[i + 1] as i64);
                assert_eq!(b.doc_start[i + 1], 0);
            }
            if col + 1 < b.seq_len && b.doc_start[i + 1] == 1 {
                assert_eq!(b.labels[i], -100, "label crosses a document boundary");
            }
        }
        // The EOS that ends a document is the first token of no segment; segments exist.
        assert!(b.doc_start.iter().filter(|&&d| d == 1).count() >= b.batch_size);
    }
}

#[test]
fn feed_resume_is_exact_across_epochs() {
    let (bs, t) = (8, 256);
    let per_epoch = all_samples(t).len();
    let n = per_epoch.div_ceil(bs) + 3; // past the first epoch boundary
    let k = n / 2;
    let mut a = Feed::open(cfg(bs, t, 1, 2), None).unwrap();
    let full = take(&mut a, n);
    assert!(
        full.last().unwrap().state.epoch >= 1,
        "test must cross an epoch"
    );
    let state = full[k - 1].state.clone();
    let json = serde_json::to_string(&state).unwrap();
    let mut b = Feed::open(cfg(bs, t, 1, 2), Some(serde_json::from_str(&json).unwrap())).unwrap();
    let rest = take(&mut b, n - k);
    assert_eq!(&full[k..], &rest[..]);
    // Epochs reshuffle: epoch 1 does not start like epoch 0.
    let e1: Vec<_> = full.iter().filter(|b| b.state.epoch >= 1).collect();
    assert_ne!(full[0].samples, e1.last().unwrap().samples);
}

#[test]
fn feed_refuses_changed_world_size_or_shards() {
    let mut a = Feed::open(cfg(4, 64, 0, 2), None).unwrap();
    let st = take(&mut a, 2).pop().unwrap().state;
    let e = Feed::open(cfg(4, 64, 0, 3), Some(st.clone()))
        .err()
        .expect("must refuse");
    assert!(e.to_string().contains("world size changed"), "{e}");
    // Same shards elsewhere (renamed copy) are accepted: content addressed.
    let moved = std::env::temp_dir().join(format!("sluice-train-moved-{}", std::process::id()));
    let missing = std::env::temp_dir().join(format!("sluice-train-missing-{}", std::process::id()));
    std::fs::create_dir_all(&moved).unwrap();
    std::fs::create_dir_all(&missing).unwrap();
    for (i, p) in ShardSet::discover(&[packed().to_path_buf()])
        .unwrap()
        .shards
        .iter()
        .enumerate()
    {
        std::fs::copy(&p.path, moved.join(format!("renamed-{i}.parquet"))).unwrap();
        if i > 0 {
            std::fs::copy(&p.path, missing.join(format!("s{i}.parquet"))).unwrap();
        }
    }
    let mut c = cfg(4, 64, 0, 2);
    c.data = vec![moved.clone()];
    let mut m = Feed::open(c.clone(), Some(st.clone())).unwrap();
    let mut orig = Feed::open(cfg(4, 64, 0, 2), Some(st.clone())).unwrap();
    assert_eq!(take(&mut m, 2), take(&mut orig, 2));
    c.data = vec![missing.clone()];
    let e = Feed::open(c, Some(st)).err().expect("must refuse");
    assert!(e.to_string().contains("shards changed"), "{e}");
    let _ = std::fs::remove_dir_all(moved);
    let _ = std::fs::remove_dir_all(missing);
}

fn python_with_pyarrow() -> Option<String> {
    crate::common::python_with(&["pyarrow", "numpy"])
}

/// `python3 -m sluice_feed ...` from this tree's `python/` package (not an installed copy).
fn sluice_feed_cli(py: &str) -> Command {
    let mut c = Command::new(py);
    c.env("PYTHONPATH", root().join("python"))
        .args(["-m", "sluice_feed"]);
    c
}

#[test]
fn python_feed_yields_the_same_batches() {
    let Some(py) = python_with_pyarrow() else {
        crate::common::skip("pyarrow", "python_feed_yields_the_same_batches: python3 with pyarrow and numpy not found (set SLUICE_PYTHON)");
        return;
    };
    let (bs, t, rank, world) = (3, 96, 1, 2);
    let n = 6;
    let mut feed = Feed::open(cfg(bs, t, rank, world), None).unwrap();
    let rust = take(&mut feed, n + 4);
    let run = |extra: &[&str], batches: usize| -> Vec<serde_json::Value> {
        let out = sluice_feed_cli(&py)
            .arg(packed())
            .args(["--batches", &batches.to_string()])
            .args([
                "--batch-size",
                &bs.to_string(),
                "--seq-len",
                &t.to_string(),
                "--seed",
                "42",
            ])
            .args([
                "--rank",
                &rank.to_string(),
                "--world-size",
                &world.to_string(),
            ])
            .args(extra)
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let check = |rb: &Batch, pb: &serde_json::Value| {
        let v = |k: &str| -> Vec<i64> {
            pb[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect()
        };
        assert_eq!(pb["step"].as_u64().unwrap(), rb.step);
        assert_eq!(
            v("input_ids"),
            rb.input_ids.iter().map(|&x| x as i64).collect::<Vec<_>>()
        );
        assert_eq!(v("labels"), rb.labels);
        assert_eq!(
            v("position_ids"),
            rb.position_ids
                .iter()
                .map(|&x| x as i64)
                .collect::<Vec<_>>()
        );
        assert_eq!(
            v("doc_start"),
            rb.doc_start.iter().map(|&x| x as i64).collect::<Vec<_>>()
        );
        let st: sluice::feed::FeedState = serde_json::from_value(pb["state"].clone()).unwrap();
        assert_eq!(st, rb.state, "state after step {}", rb.step);
    };
    let pyb = run(&[], n);
    assert_eq!(pyb.len(), n);
    for (rb, pb) in rust.iter().zip(&pyb) {
        check(rb, pb);
    }
    // Python resumes from the Rust loader's saved state.
    let st = std::env::temp_dir().join(format!("sluice-train-state-{}.json", std::process::id()));
    std::fs::write(&st, serde_json::to_string(&rust[n - 1].state).unwrap()).unwrap();
    let resumed = run(&["--state-in", st.to_str().unwrap()], 4);
    for (rb, pb) in rust[n..].iter().zip(&resumed) {
        check(rb, pb);
    }
    let _ = std::fs::remove_file(st);
}

fn tiny_config(steps: u64, out_name: &str) -> (TrainConfig, PathBuf) {
    let yaml = format!(
        r#"
model: {{vocab_size: 151936, d_model: 32, n_layers: 2, n_heads: 2, n_experts: 8, top_k: 2, d_expert: 32, n_shared_experts: 1}}
optim: {{lr: 0.01, warmup_steps: 5, decay_steps: 60, weight_decay: 0.0}}
feed: {{data: ["{}"], batch_size: 4, seq_len: 64, seed: 7}}
steps: {steps}
save_every: 0
"#,
        small_packed().display()
    );
    let cfg: TrainConfig = serde_norway::from_str(&yaml).unwrap();
    let out = std::env::temp_dir().join(format!("sluice-train-{out_name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    (cfg, out)
}

#[test]
fn train_loss_falls_and_expert_shares_sum_to_one() {
    let (cfg, out) = tiny_config(40, "loss");
    let rep = train(
        &cfg,
        &RunOptions {
            out: out.clone(),
            resume: None,
            verbose: false,
        },
    )
    .unwrap();
    assert_eq!(rep.log.len(), 40);
    let first = rep.log[0].ce;
    let last: f32 = rep.log[35..].iter().map(|l| l.ce).sum::<f32>() / 5.0;
    assert!(
        (first - (151_936f32).ln()).abs() < 1.0,
        "initial loss {first} is not ~ln(vocab)"
    );
    let curve: Vec<String> = rep.log.iter().map(|l| format!("{:.2}", l.ce)).collect();
    assert!(
        last < 0.7 * first,
        "loss did not fall 30%: {first} -> {last}; curve {curve:?}"
    );
    for l in &rep.log {
        assert_eq!(l.expert_share.len(), 2);
        for layer in &l.expert_share {
            assert_eq!(layer.len(), 8);
            let s: f64 = layer.iter().sum();
            assert!((s - 1.0).abs() < 1e-9, "shares sum to {s}");
        }
        assert_eq!(l.dropped_slots, 0, "dropless dispatch dropped tokens");
    }
    // Checkpoint written with weights, optimizer moments and loader state.
    let ck = rep.checkpoint.unwrap();
    assert!(ck.join("model.safetensors").is_file() && ck.join("state.json").is_file());
    let log = std::fs::read_to_string(out.join("train_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 40);
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn train_resume_continues_exactly() {
    let opts = |out: &Path, resume: bool| RunOptions {
        out: out.to_path_buf(),
        resume: resume.then(|| out.to_path_buf()),
        verbose: false,
    };
    let (full_cfg, a) = tiny_config(6, "full");
    let full = train(&full_cfg, &opts(&a, false)).unwrap();
    let (mut part_cfg, b) = tiny_config(3, "part");
    train(&part_cfg, &opts(&b, false)).unwrap();
    part_cfg.steps = 6;
    let rest = train(&part_cfg, &opts(&b, true)).unwrap();
    assert_eq!(rest.log.len(), 3);
    for (x, y) in full.log[3..].iter().zip(&rest.log) {
        assert_eq!(x.step, y.step);
        assert_eq!(
            x.batch_xxh3, y.batch_xxh3,
            "different batch after resume at step {}",
            x.step
        );
        assert_eq!(
            x.loss.to_bits(),
            y.loss.to_bits(),
            "loss differs at step {}: {} vs {}",
            x.step,
            x.loss,
            y.loss
        );
        assert_eq!(x.expert_share, y.expert_share);
    }
    let _ = std::fs::remove_dir_all(a);
    let _ = std::fs::remove_dir_all(b);
}

#[test]
fn every_training_config_parses() {
    let mut n = 0;
    for e in std::fs::read_dir(root().join("configs/train"))
        .unwrap()
        .flatten()
    {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("yaml") {
            continue;
        }
        let c = TrainConfig::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let mut problems = c.model.problems();
        problems.extend(c.optim.problems());
        assert!(problems.is_empty(), "{}: {problems:?}", p.display());
        n += 1;
    }
    assert!(n >= 1);
}

/// `sluice run configs/quickstart_packed.yaml` into a fresh temporary directory.
fn quickstart_packed_run(name: &str) -> PathBuf {
    let out = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let st = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(root())
        .args([
            "run",
            "configs/quickstart_packed.yaml",
            "--no-progress",
            "-q",
            "--out",
        ])
        .arg(&out)
        .status()
        .expect("run sluice");
    assert!(st.success());
    out
}

/// The real thing: `sluice run` packs the quickstart corpus (pack stage + parquet_shards),
/// and the loader reads the run directory through its manifest, the same way in Rust and
/// Python.
#[test]
fn feed_reads_a_real_run_directory() {
    let out = quickstart_packed_run("sluice-train-run");
    let set = ShardSet::discover(std::slice::from_ref(&out)).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let listed: BTreeSet<String> = manifest["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sha256"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        set.shards
            .iter()
            .map(|s| s.sha256.clone())
            .collect::<BTreeSet<_>>(),
        listed
    );
    let mut c = FeedConfig::new(vec![out.clone()]);
    c.batch_size = 2;
    c.seq_len = 512;
    c.world_size = 2;
    c.rank = 1;
    let mut feed = Feed::open(c, None).unwrap();
    let batches = take(&mut feed, 3);
    for b in &batches {
        assert!(b.real_tokens() > 0);
        assert!(b.input_ids.iter().all(|&t| t < 151_936));
    }
    if let Some(py) = python_with_pyarrow() {
        let o = sluice_feed_cli(&py)
            .arg(&out)
            .args([
                "--batches",
                "3",
                "--batch-size",
                "2",
                "--seq-len",
                "512",
                "--seed",
                "1234",
            ])
            .args(["--rank", "1", "--world-size", "2"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let lines: Vec<serde_json::Value> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for (rb, pb) in batches.iter().zip(&lines) {
            let ids: Vec<u32> = pb["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            let labels: Vec<i64> = pb["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect();
            assert_eq!(ids, rb.input_ids);
            assert_eq!(labels, rb.labels);
        }
    } else {
        crate::common::skip(
            "pyarrow",
            "python half of feed_reads_a_real_run_directory: no python3 with pyarrow",
        );
    }
    let _ = std::fs::remove_dir_all(out);
}

/// The Python package's own tests (`tests/python/`, pytest + torch CPU): DataLoader workers
/// split the stream exactly, resume across a change of worker count, auto-batching is
/// refused, `cu_seqlens` agree with the packed offsets, the Megatron export reads back.
/// They run against a packed run made here by `sluice run configs/quickstart_packed.yaml`.
#[test]
fn python_package_tests_pass() {
    let Some(py) = crate::common::python_with(&["pytest", "torch", "numpy", "pyarrow"]) else {
        crate::common::skip(
            "torch",
            "python_package_tests_pass: no python3 with pytest, torch, numpy and pyarrow \
             (pip install ./python pytest torch; or set SLUICE_PYTHON)",
        );
        return;
    };
    let out = quickstart_packed_run("sluice-pytest-run");
    let o = Command::new(&py)
        .current_dir(root())
        .env("SLUICE_TEST_RUN", &out)
        .args([
            "-m",
            "pytest",
            "tests/python",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
        ])
        .output()
        .expect("run pytest");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "pytest tests/python failed:\n{text}");
    assert!(text.contains(" passed"), "pytest ran no test:\n{text}");
    if text.contains("skipped") {
        eprintln!("{text}");
    }
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn an_unpacked_run_is_refused_with_the_fix() {
    // A run of documents (the quickstart has no `pack` node) is no training data: the
    // error names the fix.
    let out = std::env::temp_dir().join(format!("sluice-train-unpacked-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let st = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(root())
        .args(["run", "configs/quickstart.yaml", "--out"])
        .arg(&out)
        .arg("-q")
        .status()
        .unwrap();
    assert!(st.success());
    let e = ShardSet::discover(std::slice::from_ref(&out)).expect_err("must refuse");
    let msg = e.to_string();
    assert!(
        msg.contains("hold documents, not training sequences")
            && msg.contains("add a `tokenize` and a `pack` node"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(out);
}
