//! Loader throughput against the training step's consumption, side by side.
//!
//! The loader must never be what a training step waits on. This measures, at the example
//! size (`configs/train/moe_tiny.yaml`), the `feed` loader's batch rate (tokens/s, the
//! consumer pulling as fast as it can) and the training step's rate (tokens/s of forward,
//! backward and AdamW), and checks the loader is at least 50× faster. With python3 +
//! pyarrow available it also times `python/sluice_feed` on the same shards.
//!
//! ```text
//! CARGO_TARGET_DIR=target-rel cargo bench --bench feed                    # fixture shards
//! CARGO_TARGET_DIR=target-rel cargo bench --bench feed -- --data out      # a run directory
//! ```
//! Fixture shards are the 848 cmrc2018 paragraphs (samples/) tokenized with Qwen2 and
//! packed into 2048-token rows, repeated to about 2M tokens.

use std::path::PathBuf;
use std::time::Instant;

use sluice::feed::fixture::{tokenize_jsonl, write_packed_dir};
use sluice::feed::Feed;
use sluice::train::model::Model;
use sluice::train::optim::AdamW;
use sluice::train::TrainConfig;

/// CPU seconds (user + system, all threads) of this process: on a shared machine the wall
/// clock measures the neighbours too, so the ratio is also reported on CPU time.
fn cpu_secs() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = match args.iter().position(|a| a == "--data") {
        Some(i) => PathBuf::from(&args[i + 1]),
        None => {
            let dir = std::env::temp_dir().join("sluice-bench-feed");
            if !dir.join("packed-00000.parquet").exists() {
                let docs = tokenize_jsonl(
                    &root.join("samples/text/cmrc2018_zh.jsonl"),
                    &root.join("samples/tokenizers/qwen2/tokenizer.json"),
                    151_643,
                    usize::MAX,
                )?;
                let mut many = Vec::new();
                for rep in 0..8 {
                    many.extend(
                        docs.iter()
                            .map(|(id, t)| (format!("{id}#{rep}"), t.clone())),
                    );
                }
                write_packed_dir(&dir, &many, 2048, 151_643, 8)?;
            }
            dir
        }
    };
    let mut cfg = TrainConfig::load(&root.join("configs/train/moe_tiny.yaml"))?;
    cfg.feed.data = vec![data.clone()];
    let (bs, t) = (cfg.feed.batch_size, cfg.feed.seq_len);
    let tok_per_batch = (bs * t) as f64;

    // Loader: pull batches as fast as possible for ~3 s (cycling epochs as needed).
    let mut feed = Feed::open(cfg.feed.clone(), None)?;
    let _ = feed.next_batch()?;
    let t0 = Instant::now();
    let c0 = cpu_secs();
    let mut n = 0u64;
    while t0.elapsed().as_secs_f64() < 3.0 {
        std::hint::black_box(feed.next_batch()?);
        n += 1;
    }
    let feed_tps = n as f64 * tok_per_batch / t0.elapsed().as_secs_f64();
    let feed_cpu_tps = n as f64 * tok_per_batch / (cpu_secs() - c0);
    drop(feed);

    // Training step at the example size: forward + backward + AdamW.
    sluice::runtime::tune_allocator();
    let dev = candle_core::Device::Cpu;
    let model = Model::new(&cfg.model, &dev)?;
    let mut opt = AdamW::new(model.params(), cfg.optim.clone())?;
    let mut feed = Feed::open(cfg.feed.clone(), None)?;
    let steps: usize = std::env::var("FEED_BENCH_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let mut secs = 0.0;
    let mut cpu = 0.0;
    for s in 0..steps + 2 {
        let b = feed.next_batch()?;
        let t1 = Instant::now();
        let c1 = cpu_secs();
        let fw = model.forward(&b)?;
        let g = fw.loss.backward()?;
        opt.step(&g, cfg.optim.lr_at(s as u64))?;
        if s >= 2 {
            secs += t1.elapsed().as_secs_f64();
            cpu += cpu_secs() - c1;
        }
    }
    let step_tps = steps as f64 * tok_per_batch / secs;
    let step_cpu_tps = steps as f64 * tok_per_batch / cpu;

    println!(
        "feed bench ({} shards under {}, batch {bs} x seq {t})",
        feed.shards().shards.len(),
        data.display()
    );
    println!(
        "  rust feed loader : {feed_tps:>14.0} tokens/s ({:.0} batches/s)",
        feed_tps / tok_per_batch
    );
    println!(
        "  training step    : {step_tps:>14.0} tokens/s ({:.3} s/step, {} params, {} threads)",
        tok_per_batch / (step_tps),
        model.n_params(),
        candle_core::utils::get_num_threads()
    );
    let ratio = feed_tps / step_tps;
    println!(
        "  loader / step    : {ratio:>14.1}x  wall clock (target >= 50x) {}",
        if ratio >= 50.0 { "PASS" } else { "FAIL" }
    );
    let cratio = feed_cpu_tps / step_cpu_tps;
    println!(
        "  per CPU second   : loader {feed_cpu_tps:.0} tokens/s, step {step_cpu_tps:.0} tokens/s, ratio {cratio:.1}x {}",
        if cratio >= 50.0 { "PASS" } else { "FAIL" }
    );

    // Python loader on the same shards, when pyarrow is there.
    let py = std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!(
        "import sys,time; sys.path.insert(0, {p:?}); from sluice_feed import SluiceFeed\n\
         f=SluiceFeed([{d:?}], {bs}, {t}, {seed}); f.next_batch(); t0=time.time(); n=0\n\
         while time.time()-t0 < 3.0: f.next_batch(); n+=1\n\
         print(n*{bs}*{t}/(time.time()-t0))",
        p = root.join("python").display().to_string(),
        d = data.display().to_string(),
        seed = cfg.feed.seed
    );
    match std::process::Command::new(&py)
        .args(["-c", &script])
        .output()
    {
        Ok(o) if o.status.success() => {
            let tps: f64 = String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse()
                .unwrap_or(0.0);
            println!(
                "  python feed      : {tps:>14.0} tokens/s ({:.1}x the training step)",
                tps / step_tps
            );
        }
        _ => println!("  python feed      : skipped (no python3 with pyarrow; set SLUICE_PYTHON)"),
    }
    Ok(())
}
