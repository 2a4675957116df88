//! `sluice train`: train the reference MoE model on packed shards (see [`crate::train`]).
//!
//! ```text
//! sluice train --config configs/train/moe_tiny.yaml --data out --out train-out
//! sluice train --config configs/train/moe_tiny.yaml --data out --out train-out --steps 400 --resume train-out
//! ```

use std::path::PathBuf;

use crate::error::Result;
use crate::train::{train, RunOptions, TrainConfig};

/// Arguments of `sluice train`.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Training config (YAML or JSON): `model`, `optim`, `feed`, `steps`, ...
    #[arg(long)]
    pub config: PathBuf,
    /// Packed shards: run directories, directories or Parquet files (replaces `feed.data`).
    #[arg(long, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Output directory for `train_log.jsonl` and checkpoints.
    #[arg(long, default_value = "train-out")]
    pub out: PathBuf,
    /// Total steps (replaces `steps`).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Resume from a checkpoint directory, or from an output directory's latest checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Data-parallel rank of this process (replaces `feed.rank`).
    #[arg(long)]
    pub rank: Option<usize>,
    /// Data-parallel world size (replaces `feed.world_size`).
    #[arg(long)]
    pub world_size: Option<usize>,
}

/// Run `sluice train` (`quiet`: no progress lines).
pub fn run(args: TrainArgs, quiet: bool) -> Result<()> {
    let mut cfg = TrainConfig::load(&args.config)?;
    if !args.data.is_empty() {
        cfg.feed.data = args.data.clone();
    }
    if let Some(s) = args.steps {
        cfg.steps = s;
    }
    if let Some(r) = args.rank {
        cfg.feed.rank = r;
    }
    if let Some(w) = args.world_size {
        cfg.feed.world_size = w;
    }
    let report = train(
        &cfg,
        &RunOptions {
            out: args.out.clone(),
            resume: args.resume.clone(),
            verbose: !quiet,
        },
    )?;
    if let Some(last) = report.log.last() {
        let first = &report.log[0];
        let tps: f64 = report.log.iter().map(|l| l.tokens as f64).sum::<f64>()
            / report
                .log
                .iter()
                .map(|l| l.tokens as f64 / l.tokens_per_sec)
                .sum::<f64>();
        println!(
            "trained steps {}..{}: loss {:.4} -> {:.4}, {:.0} tokens/s, {} parameters; checkpoint {}",
            first.step,
            last.step + 1,
            first.loss,
            last.loss,
            tps,
            report.n_params,
            report.checkpoint.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
        );
    } else {
        println!(
            "nothing to do: the checkpoint is already at step {}",
            cfg.steps
        );
    }
    Ok(())
}
