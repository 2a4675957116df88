//! `sluice classifier train|eval`: train, quantize and evaluate fastText quality classifiers
//! without leaving the tool. The text preprocessing is the `quality_classifier` stage's own
//! (`stages::quality_classifier::preprocess`), so a model trained here sees at inference
//! exactly the tokens it was trained on.
//!
//! ```text
//! sluice classifier train --positive samples/text/cmrc2018_zh.jsonl \
//!     --negative samples/classifier/zh_negatives.jsonl --out samples/models/zh_quality
//! sluice classifier eval samples/models/zh_quality.ftz labelled.jsonl --threshold 0.5
//! ```

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::{Error, Result};
use crate::stages::quality_classifier::model::{file_sha256, Model};
use crate::stages::quality_classifier::train::{self, Example, Hyper, Line, SourceReport};

/// `sluice classifier`.
#[derive(Debug, clap::Args)]
pub struct ClassifierArgs {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Train a fastText classifier; writes OUT.bin, OUT.ftz and OUT.card.json.
    Train(TrainArgs),
    /// Evaluate a model on labelled data: precision, recall, F1, ROC-AUC, threshold table.
    Eval(EvalArgs),
    /// Reservoir mode, pass one: score a corpus and print the threshold that keeps its top
    /// `--keep-fraction`; put it in the stage's `threshold` for pass two.
    Threshold(ThresholdArgs),
    /// Print the fastText input line the stage builds for each JSONL record, as JSONL
    /// `{"id", "line"}` (to feed the official fastText side by side).
    Preprocess(PreprocessArgs),
}

/// `sluice classifier threshold MODEL DATA --keep-fraction F`.
#[derive(Debug, clap::Args)]
pub struct ThresholdArgs {
    /// Model (.bin or .ftz).
    pub model: PathBuf,
    /// Corpus: JSONL (`text`, optional `lang`), Parquet file, directory or glob.
    pub data: String,
    /// Fraction of the corpus to keep (0..1].
    #[arg(long = "keep-fraction")]
    pub keep_fraction: f64,
    /// Label whose probability is the score.
    #[arg(long, default_value = "hq")]
    pub label: String,
    /// jieba HMM (must match training and the stage's `hmm`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub hmm: bool,
}

/// `sluice classifier preprocess FILE`.
#[derive(Debug, clap::Args)]
pub struct PreprocessArgs {
    /// JSONL with `text` (and optional `id`, `lang`).
    file: PathBuf,
    /// jieba HMM (must match training).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    hmm: bool,
}

/// `sluice classifier train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Labelled JSONL (`text`, `label`), repeatable.
    #[arg(long)]
    data: Vec<String>,
    /// Positive source: JSONL file, Parquet file, directory or glob (e.g. a run's `shards/`), repeatable.
    #[arg(long)]
    positive: Vec<String>,
    /// Negative source (same forms as --positive; e.g. a run's `rejects/`), repeatable.
    #[arg(long)]
    negative: Vec<String>,
    /// Label given to positives, and the label the metrics treat as positive.
    #[arg(long, default_value = "hq")]
    positive_label: String,
    /// Label given to negatives.
    #[arg(long, default_value = "lq")]
    negative_label: String,
    /// Output prefix: writes PREFIX.bin, PREFIX.ftz, PREFIX.card.json.
    #[arg(long)]
    out: PathBuf,
    /// Embedding dimension (fastText `dim`).
    #[arg(long, default_value_t = 32)]
    dim: i32,
    /// Epochs (`epoch`).
    #[arg(long, default_value_t = 20)]
    epoch: i32,
    /// Learning rate (`lr`).
    #[arg(long, default_value_t = 0.3)]
    lr: f64,
    /// Word n-gram length (`wordNgrams`).
    #[arg(long = "word-ngrams", default_value_t = 2)]
    word_ngrams: i32,
    /// Minimum word count (`minCount`).
    #[arg(long = "min-count", default_value_t = 2)]
    min_count: i32,
    /// Loss: softmax, hs, ns, ova.
    #[arg(long, default_value = "softmax")]
    loss: String,
    /// Hash buckets for word n-grams (`bucket`).
    #[arg(long, default_value_t = 200_000)]
    bucket: i32,
    /// Char n-gram min length (`minn`, 0 = off).
    #[arg(long, default_value_t = 0)]
    minn: i32,
    /// Char n-gram max length (`maxn`, 0 = off).
    #[arg(long, default_value_t = 0)]
    maxn: i32,
    /// Training threads. 1 (default) makes training deterministic.
    #[arg(long, default_value_t = 1)]
    threads: i32,
    /// Seed for the train/test split and for training.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Fraction of examples held out for evaluation.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Threshold the card's precision/recall/F1 refer to.
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Quantization: keep only this many input rows (words + n-grams), 0 = keep all.
    #[arg(long, default_value_t = 100_000)]
    cutoff: usize,
    /// jieba HMM for unknown words (must match the stage's `hmm`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    hmm: bool,
    /// Evaluate the unquantized .bin, record it in the card, then delete it (it is large:
    /// `dim x (words + bucket)` floats); only the .ftz and the card are kept.
    #[arg(long)]
    discard_bin: bool,
}

/// `sluice classifier eval MODEL DATA`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Model (.bin or .ftz).
    model: PathBuf,
    /// Labelled JSONL (`text`, `label`).
    data: String,
    /// Positive label.
    #[arg(long, default_value = "hq")]
    positive_label: String,
    /// Decision threshold.
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// jieba HMM (must match training).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    hmm: bool,
    /// Also print the metrics as JSON.
    #[arg(long)]
    json: bool,
}

/// Entry point.
pub fn run(args: ClassifierArgs) -> Result<()> {
    match args.cmd {
        Cmd::Train(a) => run_train(a).map(|_| ()),
        Cmd::Eval(a) => run_eval(a),
        Cmd::Preprocess(a) => run_preprocess(a),
        Cmd::Threshold(a) => run_threshold(a).map(|v| println!("{v}")),
    }
}

/// Reservoir mode, pass one: the threshold keeping the top `keep_fraction` of `data`, as JSON
/// (`threshold`, `documents`, `kept`, `no_tokens`). Documents without tokens score 0, as in the
/// stage (which rejects them whatever the threshold).
pub fn run_threshold(a: ThresholdArgs) -> Result<serde_json::Value> {
    if !(a.keep_fraction > 0.0 && a.keep_fraction <= 1.0) {
        return Err(Error::msg(format!(
            "--keep-fraction {} must be within (0, 1]",
            a.keep_fraction
        )));
    }
    let model = Model::load(&a.model)?;
    let idx = model.label_index(&a.label).ok_or_else(|| {
        Error::msg(format!(
            "label `{}` not in model ({})",
            a.label,
            model.labels().join(", ")
        ))
    })?;
    let (examples, rep) = train::read_source(&a.data, Some("corpus"))?;
    if rep.bad_records > 0 {
        eprintln!("skipped {} bad records in {}", rep.bad_records, a.data);
    }
    let mut line = String::new();
    let mut no_tokens = 0u64;
    let scores: Vec<f64> = examples
        .iter()
        .map(|e| {
            crate::stages::quality_classifier::preprocess::line_into(
                &e.text,
                None,
                e.lang.as_deref(),
                a.hmm,
                &mut line,
            );
            model.prob(&line, idx).map_or_else(
                || {
                    no_tokens += 1;
                    0.0
                },
                f64::from,
            )
        })
        .collect();
    let (threshold, kept) = train::threshold_for_fraction(&scores, a.keep_fraction)
        .ok_or_else(|| Error::msg(format!("{}: no documents", a.data)))?;
    Ok(json!({
        "model": a.model.display().to_string(),
        "data": a.data,
        "label": model.labels()[idx],
        "keep_fraction": a.keep_fraction,
        "threshold": threshold,
        "documents": scores.len(),
        "kept": kept,
        "no_tokens": no_tokens,
    }))
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

/// Print metrics as a small table.
pub fn print_metrics(name: &str, m: &train::Metrics) {
    println!(
        "{name}: n={} (pos {}, neg {})  threshold={}  precision={:.4} recall={:.4} F1={:.4} accuracy={:.4} ROC-AUC={:.4}",
        m.n, m.positives, m.negatives, m.threshold, m.precision, m.recall, m.f1, m.accuracy, m.roc_auc
    );
    println!("  threshold  precision  recall   F1      kept");
    for r in &m.table {
        println!(
            "  {:>9.1}  {:>9.4}  {:>6.4}  {:>6.4}  {:>6.4}",
            r.threshold, r.precision, r.recall, r.f1, r.kept_fraction
        );
    }
}

/// Train from CLI arguments; returns the card JSON (also written to PREFIX.card.json).
pub fn run_train(a: TrainArgs) -> Result<serde_json::Value> {
    if a.data.is_empty() && (a.positive.is_empty() || a.negative.is_empty()) {
        return Err(Error::msg(
            "give --data FILE, or both --positive and --negative",
        ));
    }
    if !(0.0..1.0).contains(&a.test_fraction) {
        return Err(Error::msg("--test-fraction must be within [0, 1)"));
    }
    let hyper = Hyper {
        dim: a.dim,
        epoch: a.epoch,
        lr: a.lr,
        word_ngrams: a.word_ngrams,
        min_count: a.min_count,
        loss: a.loss.clone(),
        bucket: a.bucket,
        minn: a.minn,
        maxn: a.maxn,
        threads: a.threads,
        seed: (a.seed % i32::MAX as u64) as i32,
    };
    train::loss_name(&hyper.loss)?;
    let mut examples: Vec<Example> = Vec::new();
    let mut reports: Vec<SourceReport> = Vec::new();
    for (specs, label) in [
        (&a.data, None),
        (&a.positive, Some(a.positive_label.as_str())),
        (&a.negative, Some(a.negative_label.as_str())),
    ] {
        for s in specs {
            let (ex, rep) = train::read_source(s, label)?;
            eprintln!(
                "read {} examples from {s} ({} bad)",
                rep.records, rep.bad_records
            );
            examples.extend(ex);
            reports.push(rep);
        }
    }
    let (lines, prep) = train::prepare(&examples, a.hmm);
    let found = train::labels(&lines);
    if found.len() < 2 {
        return Err(Error::msg(format!(
            "need at least two labels, found {found:?}"
        )));
    }
    if !found.contains(&a.positive_label) {
        return Err(Error::msg(format!(
            "positive label `{}` not in data ({found:?})",
            a.positive_label
        )));
    }
    let (train_lines, test_lines) = train::split(lines, a.test_fraction, a.seed);
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let train_file = with_ext(&a.out, ".train.txt");
    train::write_fasttext_file(&train_lines, &train_file)?;
    eprintln!(
        "training on {} lines, {} held out ...",
        train_lines.len(),
        test_lines.len()
    );
    let t0 = std::time::Instant::now();
    let trained = train::train_file(&train_file, &hyper);
    let mut ft = match trained {
        Ok(ft) => ft,
        Err(e) => {
            let _ = std::fs::remove_file(&train_file);
            return Err(e);
        }
    };
    eprintln!("trained in {:.1}s", t0.elapsed().as_secs_f64());
    let bin = with_ext(&a.out, ".bin");
    ft.save_model(&bin)
        .map_err(|e| Error::msg(format!("{}: save failed: {e}", bin.display())))?;
    let bin_sha = file_sha256(&bin)?;
    let bin_model = Model::load(&bin)?;
    let eval_bin = train::evaluate(&bin_model, &test_lines, &a.positive_label, a.threshold)?;
    let bin_bytes = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    drop(bin_model);
    if a.discard_bin {
        std::fs::remove_file(&bin).map_err(|e| Error::io(&bin, e))?;
    }
    let q = train::quantize(&mut ft, a.cutoff, Some(&train_file), &hyper);
    let _ = std::fs::remove_file(&train_file);
    q?;
    let ftz = with_ext(&a.out, ".ftz");
    ft.save_model(&ftz)
        .map_err(|e| Error::msg(format!("{}: save failed: {e}", ftz.display())))?;
    let ftz_model = Model::load(&ftz)?;
    let eval_ftz = train::evaluate(&ftz_model, &test_lines, &a.positive_label, a.threshold)?;
    print_metrics("held-out (.bin)", &eval_bin);
    print_metrics("held-out (.ftz)", &eval_ftz);
    let bytes = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let card = json!({
        "card_version": 1,
        "created_by": format!("sluice {} classifier train", env!("CARGO_PKG_VERSION")),
        "files": {
            "bin": {"path": bin.display().to_string(), "bytes": bin_bytes, "sha256": bin_sha, "kept": !a.discard_bin},
            "ftz": {"path": ftz.display().to_string(), "bytes": bytes(&ftz), "sha256": ftz_model.sha256()},
        },
        "labels": {"positive": format!("__label__{}", a.positive_label), "all": ftz_model.labels()},
        "sources": reports,
        "counts": {
            "examples_read": examples.len(),
            "dropped": prep,
            "train": train::label_counts(&train_lines),
            "test": train::label_counts(&test_lines),
        },
        "split": {"seed": a.seed, "test_fraction": a.test_fraction,
                  "rule": "test iff xxh3_64_with_seed(preprocessed line, seed) % 1e6 < test_fraction * 1e6"},
        "preprocessing": {"function": "stages::quality_classifier::preprocess::line_into", "jieba_hmm": a.hmm,
                          "rule": "segment_zh words or jieba for Chinese, whitespace tokens otherwise; lowercased; newlines removed"},
        "hyperparameters": hyper,
        "quantization": {"cutoff": a.cutoff, "dsub": 2, "qnorm": true, "qout": false, "retrain": true},
        "eval": {"threshold": a.threshold, "bin": eval_bin, "ftz": eval_ftz},
    });
    let card_path = with_ext(&a.out, ".card.json");
    let text = serde_json::to_string_pretty(&card)? + "\n";
    std::fs::write(&card_path, text).map_err(|e| Error::io(&card_path, e))?;
    eprintln!(
        "wrote {}, {}, {}",
        bin.display(),
        ftz.display(),
        card_path.display()
    );
    Ok(card)
}

fn run_eval(a: EvalArgs) -> Result<()> {
    let model = Model::load(&a.model)?;
    let (examples, rep) = train::read_source(&a.data, None)?;
    if rep.bad_records > 0 {
        eprintln!("skipped {} bad records in {}", rep.bad_records, a.data);
    }
    let lines: Vec<Line> = examples
        .iter()
        .map(|e| Line {
            line: crate::stages::quality_classifier::preprocess::line(
                &e.text,
                None,
                e.lang.as_deref(),
                a.hmm,
            ),
            label: e.label.clone(),
        })
        .collect();
    let m = train::evaluate(&model, &lines, &a.positive_label, a.threshold)?;
    print_metrics(&format!("{} on {}", a.model.display(), a.data), &m);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&m)?);
    }
    Ok(())
}

fn run_preprocess(a: PreprocessArgs) -> Result<()> {
    use std::io::{BufRead, Write};
    let f = std::fs::File::open(&a.file).map_err(|e| Error::io(&a.file, e))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| Error::io(&a.file, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("{}:{}: skipped, bad json: {e}", a.file.display(), i + 1);
                continue;
            }
        };
        let text = v["text"].as_str().unwrap_or_default();
        let id = v["id"]
            .as_str()
            .map_or_else(|| (i + 1).to_string(), str::to_string);
        let l = crate::stages::quality_classifier::preprocess::line(
            text,
            None,
            v["lang"].as_str(),
            a.hmm,
        );
        let rec = json!({"id": id, "line": l});
        writeln!(out, "{rec}").map_err(|e| Error::io("stdout", e))?;
    }
    out.flush().map_err(|e| Error::io("stdout", e))?;
    Ok(())
}
