//! `sluice train`: a reference Mixture-of-Experts training step over packed shards.
//!
//! **What and why.** The proof that sluice's output can feed a training cluster is a real
//! training step that consumes it: the [`crate::feed`] loader streams packed shards into a
//! small decoder-only MoE transformer ([`model`]) trained with AdamW, on CPU with candle.
//! It logs loss, tokens/s and the per-expert token share of every MoE layer (what an
//! operator watches to catch routing collapse), and checkpoints the weights, the optimizer
//! moments and the loader state together, so `--resume` continues exactly: the batches and
//! losses after a resume equal those of an uninterrupted run.
//!
//! **Files** under the output directory:
//! - `train_log.jsonl`: one JSON object per step (`step`, `loss`, `ce`, `aux`, `lr`,
//!   `tokens`, `tokens_per_sec`, `expert_share` [layer][expert], `dropped_slots`,
//!   `batch_xxh3`: a hash of the batch, so runs can be compared batch for batch);
//! - `ckpt-<step:06>/model.safetensors`: parameters plus `opt.m.*` / `opt.v.*` moments;
//! - `ckpt-<step:06>/state.json`: step, optimizer step, feed state, configs;
//! - `latest`: the name of the newest checkpoint directory (written last, atomically).
//!
//! **Memory.** The model, its gradients and two AdamW moments (4× the parameters), the
//! activations of one batch, and the loader's one decoded shard plus prefetched batches.
//!
//! ```yaml
//! # configs/train/moe_tiny.yaml
//! model: {d_model: 64, n_layers: 2, n_heads: 4, n_experts: 8, top_k: 2, d_expert: 128}
//! optim: {lr: 0.004, warmup_steps: 20, decay_steps: 300}
//! feed: {data: [out], batch_size: 4, seq_len: 64, seed: 1234}
//! steps: 300
//! ```

pub mod model;
pub mod optim;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::feed::{Batch, Feed, FeedConfig, FeedState};
use model::{cerr, Model, ModelConfig};
use optim::{AdamW, OptimConfig};

/// The whole training configuration (YAML or JSON).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Model size and MoE settings.
    #[serde(default = "default_model")]
    pub model: ModelConfig,
    /// AdamW and learning-rate schedule.
    #[serde(default = "default_optim")]
    pub optim: OptimConfig,
    /// Loader settings (data, batch size, sequence length, seed, rank).
    pub feed: FeedConfig,
    /// Total steps to train (a resumed run continues up to this count). Default 300.
    #[serde(default = "default_steps")]
    pub steps: u64,
    /// Print a log line every this many steps (every step goes to `train_log.jsonl`). Default 10.
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// Save a checkpoint every this many steps (0 = only at the end). Default 100.
    #[serde(default = "default_save_every")]
    pub save_every: u64,
    /// Compute threads (candle's CPU kernels). Default 0 = candle's choice.
    #[serde(default)]
    pub threads: usize,
}

fn default_model() -> ModelConfig {
    serde_json::from_str("{}").expect("model defaults parse")
}
fn default_optim() -> OptimConfig {
    serde_json::from_str("{}").expect("optim defaults parse")
}
fn default_steps() -> u64 {
    300
}
fn default_log_every() -> u64 {
    10
}
fn default_save_every() -> u64 {
    100
}

impl TrainConfig {
    /// Read a YAML (or JSON, which is YAML) file.
    pub fn load(path: &Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_norway::from_str(&text)
            .map_err(|e| Error::Config(vec![format!("{}: {e}", path.display())]))
    }
}

/// What one step did (also a `train_log.jsonl` line).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepLog {
    /// Step number (0-based).
    pub step: u64,
    /// Total loss (cross-entropy + weighted aux).
    pub loss: f32,
    /// Next-token cross-entropy.
    pub ce: f32,
    /// Load-balancing loss (unweighted, mean over layers).
    pub aux: f32,
    /// Learning rate used.
    pub lr: f64,
    /// Tokens in the batch (batch_size × seq_len).
    pub tokens: u64,
    /// Labelled tokens the loss is over.
    pub label_tokens: u64,
    /// Batch tokens per wall second of this step (loader wait included).
    pub tokens_per_sec: f64,
    /// Per layer, per expert share of routed slots (each layer sums to 1).
    pub expert_share: Vec<Vec<f64>>,
    /// Routed slots dropped by the capacity limit.
    pub dropped_slots: u64,
    /// xxh3 of the batch's input_ids, labels and positions.
    pub batch_xxh3: String,
}

/// What a checkpoint's `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Always "sluice-train-checkpoint".
    pub magic: String,
    /// Format version (1).
    pub version: u32,
    /// Steps completed.
    pub step: u64,
    /// Optimizer steps taken.
    pub optim_step: u64,
    /// The loader state after the last completed step.
    pub feed: FeedState,
    /// The model config (a resume must use the same).
    pub model: ModelConfig,
    /// The optimizer config.
    pub optim: OptimConfig,
}

/// Overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Where logs and checkpoints go.
    pub out: PathBuf,
    /// Resume from this checkpoint directory (or an output directory: its `latest`).
    pub resume: Option<PathBuf>,
    /// Print progress lines.
    pub verbose: bool,
}

/// Summary of a training run.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// The steps run by this invocation.
    pub log: Vec<StepLog>,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
    /// Model parameters.
    pub n_params: usize,
}

/// xxh3 of a batch's contents.
pub fn batch_hash(b: &Batch) -> String {
    use xxhash_rust::xxh3::Xxh3;
    let mut h = Xxh3::with_seed(0);
    for v in &b.input_ids {
        h.update(&v.to_le_bytes());
    }
    for v in &b.labels {
        h.update(&v.to_le_bytes());
    }
    for v in &b.position_ids {
        h.update(&v.to_le_bytes());
    }
    h.update(&b.doc_start);
    format!("{:016x}", h.digest())
}

/// Find the checkpoint directory meant by `p`: itself, or the one its `latest` names.
pub fn resolve_checkpoint(p: &Path) -> Result<PathBuf> {
    if p.join("state.json").is_file() {
        return Ok(p.to_path_buf());
    }
    let latest = p.join("latest");
    if latest.is_file() {
        let name = std::fs::read_to_string(&latest).map_err(|e| Error::io(&latest, e))?;
        let dir = p.join(name.trim());
        if dir.join("state.json").is_file() {
            return Ok(dir);
        }
    }
    Err(Error::msg(format!(
        "{}: not a checkpoint (no state.json) nor a training output directory with a `latest` checkpoint",
        p.display()
    )))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn save_checkpoint(
    out: &Path,
    model: &Model,
    opt: &AdamW,
    state: &CheckpointState,
) -> Result<PathBuf> {
    let name = format!("ckpt-{:06}", state.step);
    let dir = out.join(&name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut tensors: HashMap<String, Tensor> = model.tensors().into_iter().collect();
    tensors.extend(opt.tensors());
    let st = dir.join("model.safetensors");
    let tmp = dir.join("model.safetensors.tmp");
    candle_core::safetensors::save(&tensors, &tmp).map_err(cerr)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &st).map_err(|e| Error::io(&st, e))?;
    write_atomic(
        &dir.join("state.json"),
        serde_json::to_string_pretty(state)?.as_bytes(),
    )?;
    write_atomic(&out.join("latest"), name.as_bytes())?;
    Ok(dir)
}

/// Train `cfg.steps` steps (or continue a checkpoint up to them).
pub fn train(cfg: &TrainConfig, opts: &RunOptions) -> Result<TrainReport> {
    crate::runtime::tune_allocator();
    let mut problems = cfg.model.problems();
    problems.extend(cfg.optim.problems());
    if !problems.is_empty() {
        return Err(Error::Config(problems));
    }
    let dev = Device::Cpu;
    let model = Model::new(&cfg.model, &dev)?;
    let mut opt = AdamW::new(model.params(), cfg.optim.clone()).map_err(cerr)?;
    let mut resume_state = None;
    let mut step0 = 0;
    if let Some(r) = &opts.resume {
        let dir = resolve_checkpoint(r)?;
        let sp = dir.join("state.json");
        let text = std::fs::read_to_string(&sp).map_err(|e| Error::io(&sp, e))?;
        let st: CheckpointState = serde_json::from_str(&text)?;
        if st.magic != "sluice-train-checkpoint" || st.version != 1 {
            return Err(Error::msg(format!(
                "{}: not a v1 sluice training checkpoint",
                sp.display()
            )));
        }
        if st.model != cfg.model {
            return Err(Error::msg(format!(
                "cannot resume {}: the model config differs from the checkpoint's",
                dir.display()
            )));
        }
        let tensors =
            candle_core::safetensors::load(dir.join("model.safetensors"), &dev).map_err(cerr)?;
        model.load_tensors(&tensors)?;
        opt.load_tensors(&tensors, st.optim_step)?;
        step0 = st.step;
        resume_state = Some(st.feed);
        if opts.verbose {
            eprintln!("resumed {} at step {}", dir.display(), step0);
        }
    }
    let mut feed = Feed::open(cfg.feed.clone(), resume_state)?;
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let log_path = opts.out.join("train_log.jsonl");
    let mut log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io(&log_path, e))?;
    if opts.verbose {
        eprintln!(
            "model: {} parameters ({} layers, d_model {}, {} experts top-{}, vocab {}); {} shards, rank {}/{}",
            model.n_params(),
            cfg.model.n_layers,
            cfg.model.d_model,
            cfg.model.n_experts,
            cfg.model.top_k,
            cfg.model.vocab_size,
            feed.shards().shards.len(),
            cfg.feed.rank,
            cfg.feed.world_size
        );
    }
    let mut log = Vec::new();
    let mut checkpoint = None;
    for step in step0..cfg.steps {
        let t0 = Instant::now();
        let batch = feed.next_batch()?;
        let fw = model.forward(&batch)?;
        let grads = fw.loss.backward().map_err(cerr)?;
        let lr = cfg.optim.lr_at(step);
        opt.step(&grads, lr).map_err(cerr)?;
        let loss = fw.loss.to_scalar::<f32>().map_err(cerr)?;
        let secs = t0.elapsed().as_secs_f64();
        let tokens = (batch.batch_size * batch.seq_len) as u64;
        let rec = StepLog {
            step,
            loss,
            ce: fw.ce,
            aux: fw.aux,
            lr,
            tokens,
            label_tokens: fw.label_tokens as u64,
            tokens_per_sec: tokens as f64 / secs.max(1e-9),
            expert_share: fw.expert_share,
            dropped_slots: fw.dropped_slots,
            batch_xxh3: batch_hash(&batch),
        };
        if !loss.is_finite() {
            return Err(Error::msg(format!(
                "step {step}: loss is {loss}; lower optim.lr"
            )));
        }
        let mut line = serde_json::to_string(&rec)?;
        line.push('\n');
        log_file
            .write_all(line.as_bytes())
            .map_err(|e| Error::io(&log_path, e))?;
        if opts.verbose && (step % cfg.log_every.max(1) == 0 || step + 1 == cfg.steps) {
            let shares: Vec<String> = rec
                .expert_share
                .iter()
                .map(|l| {
                    l.iter()
                        .map(|s| format!("{:.0}", s * 100.0))
                        .collect::<Vec<_>>()
                        .join("/")
                })
                .collect();
            eprintln!(
                "step {:>5}  loss {:.4}  ce {:.4}  aux {:.3}  lr {:.2e}  {:.0} tok/s  expert share % [{}]",
                step,
                loss,
                rec.ce,
                rec.aux,
                lr,
                rec.tokens_per_sec,
                shares.join(" | ")
            );
        }
        log.push(rec);
        let done = step + 1;
        if done == cfg.steps || (cfg.save_every > 0 && done % cfg.save_every == 0) {
            let st = CheckpointState {
                magic: "sluice-train-checkpoint".into(),
                version: 1,
                step: done,
                optim_step: opt.step_count(),
                feed: batch.state.clone(),
                model: cfg.model.clone(),
                optim: cfg.optim.clone(),
            };
            checkpoint = Some(save_checkpoint(&opts.out, &model, &opt, &st)?);
        }
    }
    if feed.bad_rows() > 0 {
        tracing::warn!(bad_rows = feed.bad_rows(), "feed skipped bad packed rows");
    }
    Ok(TrainReport {
        log,
        checkpoint,
        n_params: model.n_params(),
    })
}
