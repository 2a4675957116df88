//! Training and evaluation of fastText quality classifiers, used by `sluice classifier train`
//! and `sluice classifier eval` (and by tests). Everything goes through
//! [`super::preprocess::line_into`], the function the stage uses at inference.
//!
//! * Sources: a labelled JSONL (`{"text": .., "label": ..}`, optional `lang`), or a positive
//!   and a negative source, each a JSONL file (`text`), a Parquet file/directory/glob (a run
//!   directory's `shards/` or `rejects/` output: column `text`, else `text_prefix`).
//! * Split: deterministic for a seed. An example goes to the test set when
//!   `xxh3(seed, preprocessed line) mod 10^6 < test_fraction * 10^6`, so the split does not
//!   depend on input order, and exact duplicates (which are dropped first) cannot leak across.
//! * Training runs the `fasttext` crate single-threaded by default: Hogwild! SGD with several
//!   threads is not deterministic, one thread with a fixed seed is.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use fasttext::args::{Args, LossName, ModelName};
use fasttext::FastText;
use serde::Serialize;

use super::model::Model;
use super::preprocess;
use crate::error::{Error, Result};

/// One labelled example, before preprocessing.
#[derive(Debug, Clone)]
pub struct Example {
    /// Raw text.
    pub text: String,
    /// Short label (`hq`, `lq`, ...), without the `__label__` prefix.
    pub label: String,
    /// Language, when the source gives one (decides jieba vs whitespace tokens).
    pub lang: Option<String>,
}

/// What was read from one source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    /// The source as given (path, glob).
    pub spec: String,
    /// Label assigned (`from_file` for labelled JSONL).
    pub label: String,
    /// Examples read.
    pub records: u64,
    /// Lines skipped (bad JSON, missing text/label), counted, first few kept.
    pub bad_records: u64,
    /// Up to 5 `file:line: reason` examples of bad records.
    pub bad_examples: Vec<String>,
}

fn strip_label(l: &str) -> String {
    l.trim().trim_start_matches("__label__").to_string()
}

/// Expand a path, directory (its `*.parquet` / `*.jsonl` files, sorted) or glob.
fn expand(spec: &str) -> Result<Vec<PathBuf>> {
    let p = Path::new(spec);
    let mut files = Vec::new();
    if p.is_dir() {
        let rd = std::fs::read_dir(p).map_err(|e| Error::io(p, e))?;
        for e in rd {
            let e = e.map_err(|e| Error::io(p, e))?;
            let path = e.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".parquet") || name.ends_with(".jsonl") {
                files.push(path);
            }
        }
    } else if p.is_file() {
        files.push(p.to_path_buf());
    } else {
        let g = glob::glob(spec).map_err(|e| Error::msg(format!("{spec}: bad glob: {e}")))?;
        for f in g.flatten() {
            files.push(f);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::msg(format!(
            "{spec}: no such file, or no .jsonl/.parquet files matched"
        )));
    }
    Ok(files)
}

/// Read a source. With `label = None` the JSONL must carry a `label` field per record.
pub fn read_source(spec: &str, label: Option<&str>) -> Result<(Vec<Example>, SourceReport)> {
    let mut rep = SourceReport {
        spec: spec.to_string(),
        label: label.map_or_else(|| "from_file".to_string(), strip_label),
        records: 0,
        bad_records: 0,
        bad_examples: Vec::new(),
    };
    let mut out = Vec::new();
    for file in expand(spec)? {
        if file.extension().is_some_and(|e| e == "parquet") {
            read_parquet(&file, label, &mut out, &mut rep)?;
        } else {
            read_jsonl(&file, label, &mut out, &mut rep)?;
        }
    }
    rep.records = out.len() as u64;
    Ok((out, rep))
}

fn bad(rep: &mut SourceReport, loc: String) {
    rep.bad_records += 1;
    if rep.bad_examples.len() < 5 {
        tracing::warn!("skipping bad record {loc}");
        rep.bad_examples.push(loc);
    }
}

fn read_jsonl(
    file: &Path,
    label: Option<&str>,
    out: &mut Vec<Example>,
    rep: &mut SourceReport,
) -> Result<()> {
    let f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let loc = format!("{}:{}", file.display(), i + 1);
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                bad(rep, format!("{loc}: {e}"));
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                bad(rep, format!("{loc}: bad json: {e}"));
                continue;
            }
        };
        let Some(text) = v.get("text").and_then(|t| t.as_str()) else {
            bad(rep, format!("{loc}: no string `text`"));
            continue;
        };
        let lab = match label {
            Some(l) => strip_label(l),
            None => match v.get("label") {
                Some(serde_json::Value::String(s)) => strip_label(s),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(serde_json::Value::Bool(b)) => (if *b { "1" } else { "0" }).to_string(),
                _ => {
                    bad(rep, format!("{loc}: no `label`"));
                    continue;
                }
            },
        };
        if lab.is_empty() || lab.contains(char::is_whitespace) {
            bad(rep, format!("{loc}: label must be one non-empty word"));
            continue;
        }
        let lang = v.get("lang").and_then(|l| l.as_str()).map(str::to_string);
        out.push(Example {
            text: text.to_string(),
            label: lab,
            lang,
        });
    }
    Ok(())
}

fn read_parquet(
    file: &Path,
    label: Option<&str>,
    out: &mut Vec<Example>,
    rep: &mut SourceReport,
) -> Result<()> {
    use arrow::array::{Array, AsArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let Some(label) = label else {
        return Err(Error::msg(format!(
            "{}: a Parquet source needs a label (use it as --positive/--negative)",
            file.display()
        )));
    };
    let f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)?.build()?;
    for batch in reader {
        let batch = batch?;
        let col = batch
            .column_by_name("text")
            .or_else(|| batch.column_by_name("text_prefix"))
            .ok_or_else(|| {
                Error::msg(format!(
                    "{}: no `text` or `text_prefix` column",
                    file.display()
                ))
            })?;
        let lang_col = batch.column_by_name("lang");
        let texts = col
            .as_string_opt::<i32>()
            .ok_or_else(|| Error::msg(format!("{}: text column is not utf8", file.display())))?;
        let langs = lang_col.and_then(|c| c.as_string_opt::<i32>());
        for i in 0..texts.len() {
            if texts.is_null(i) {
                bad(rep, format!("{}: row {i}: null text", file.display()));
                continue;
            }
            let lang = langs
                .filter(|l| !l.is_null(i))
                .map(|l| l.value(i).to_string());
            out.push(Example {
                text: texts.value(i).to_string(),
                label: strip_label(label),
                lang,
            });
        }
    }
    Ok(())
}

/// A preprocessed, labelled line.
#[derive(Debug, Clone)]
pub struct Line {
    /// fastText input (already preprocessed).
    pub line: String,
    /// Short label.
    pub label: String,
}

/// Preprocess examples, dropping empty lines and exact duplicates (same line and label;
/// the same line under two labels is dropped entirely, it can only teach noise).
/// Returns the lines and (empty, duplicate, conflicting) counts.
pub fn prepare(examples: &[Example], hmm: bool) -> (Vec<Line>, BTreeMap<&'static str, u64>) {
    let mut seen: BTreeMap<String, (String, usize)> = BTreeMap::new();
    let mut lines: Vec<Option<Line>> = Vec::new();
    let mut stats = BTreeMap::from([("empty", 0u64), ("duplicate", 0), ("conflicting_label", 0)]);
    let mut buf = String::new();
    for ex in examples {
        preprocess::line_into(&ex.text, None, ex.lang.as_deref(), hmm, &mut buf);
        if buf.is_empty() {
            *stats.entry("empty").or_default() += 1;
            continue;
        }
        if let Some((lab, idx)) = seen.get(&buf) {
            if *lab == ex.label {
                *stats.entry("duplicate").or_default() += 1;
            } else if lines[*idx].take().is_some() {
                *stats.entry("conflicting_label").or_default() += 2;
            } else {
                *stats.entry("conflicting_label").or_default() += 1;
            }
            continue;
        }
        seen.insert(buf.clone(), (ex.label.clone(), lines.len()));
        lines.push(Some(Line {
            line: buf.clone(),
            label: ex.label.clone(),
        }));
    }
    (lines.into_iter().flatten().collect(), stats)
}

/// Deterministic split: `(train, test)`.
pub fn split(lines: Vec<Line>, test_fraction: f64, seed: u64) -> (Vec<Line>, Vec<Line>) {
    let cut = (test_fraction.clamp(0.0, 1.0) * 1e6) as u64;
    lines.into_iter().partition(|l| {
        xxhash_rust::xxh3::xxh3_64_with_seed(l.line.as_bytes(), seed) % 1_000_000 >= cut
    })
}

/// Write lines in fastText's training format (`__label__x tokens...`).
pub fn write_fasttext_file(lines: &[Line], path: &Path) -> Result<()> {
    let f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::new(f);
    for l in lines {
        writeln!(w, "__label__{} {}", l.label, l.line).map_err(|e| Error::io(path, e))?;
    }
    w.flush().map_err(|e| Error::io(path, e))?;
    Ok(())
}

/// Training hyperparameters (fastText names in the docs).
#[derive(Debug, Clone, Serialize)]
pub struct Hyper {
    /// Embedding size (`dim`).
    pub dim: i32,
    /// Passes over the data (`epoch`).
    pub epoch: i32,
    /// Learning rate (`lr`).
    pub lr: f64,
    /// Max length of word n-grams (`wordNgrams`).
    pub word_ngrams: i32,
    /// Minimum word count (`minCount`).
    pub min_count: i32,
    /// `softmax`, `hs`, `ns` or `ova`.
    pub loss: String,
    /// Hash buckets for n-grams (`bucket`).
    pub bucket: i32,
    /// Min / max char n-gram length (`minn`, `maxn`; 0 = off).
    pub minn: i32,
    /// See `minn`.
    pub maxn: i32,
    /// Training threads (1 = deterministic).
    pub threads: i32,
    /// Random seed.
    pub seed: i32,
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper {
            dim: 32,
            epoch: 20,
            lr: 0.3,
            word_ngrams: 2,
            min_count: 2,
            loss: "softmax".into(),
            bucket: 200_000,
            minn: 0,
            maxn: 0,
            threads: 1,
            seed: 42,
        }
    }
}

/// Parse a fastText loss name.
pub fn loss_name(s: &str) -> Result<LossName> {
    Ok(match s {
        "softmax" => LossName::Softmax,
        "hs" => LossName::HierarchicalSoftmax,
        "ns" => LossName::NegativeSampling,
        "ova" | "one-vs-all" => LossName::OneVsAll,
        other => {
            return Err(Error::msg(format!(
                "unknown loss `{other}` (softmax, hs, ns, ova)"
            )))
        }
    })
}

/// Train a supervised model on a fastText-format file.
pub fn train_file(input: &Path, h: &Hyper) -> Result<FastText> {
    let mut a = Args::default();
    a.apply_supervised_defaults();
    a.model = ModelName::Supervised;
    a.input = input.to_path_buf();
    a.dim = h.dim;
    a.epoch = h.epoch;
    a.lr = h.lr;
    a.word_ngrams = h.word_ngrams;
    a.min_count = h.min_count;
    a.loss = loss_name(&h.loss)?;
    a.bucket = h.bucket;
    a.minn = h.minn;
    a.maxn = h.maxn;
    a.thread = h.threads.max(1);
    a.seed = h.seed;
    a.verbose = 0;
    FastText::train(a).map_err(|e| Error::msg(format!("fastText training failed: {e}")))
}

/// Product-quantize a trained model in place (`fasttext quantize`); `cutoff` keeps the
/// most important rows (0 = all), `retrain_input` fine-tunes after pruning.
pub fn quantize(
    ft: &mut FastText,
    cutoff: usize,
    retrain_input: Option<&Path>,
    h: &Hyper,
) -> Result<()> {
    let mut q = Args {
        cutoff,
        dsub: 2,
        qnorm: true,
        qout: false,
        ..Args::default()
    };
    q.retrain = retrain_input.is_some();
    if let Some(p) = retrain_input {
        q.input = p.to_path_buf();
    }
    q.epoch = h.epoch;
    q.lr = h.lr;
    q.thread = h.threads.max(1);
    q.verbose = 0;
    ft.quantize(&q)
        .map_err(|e| Error::msg(format!("fastText quantization failed: {e}")))
}

/// One row of a threshold table.
#[derive(Debug, Clone, Serialize)]
pub struct ThresholdRow {
    /// Decision threshold on the positive label's probability.
    pub threshold: f64,
    /// Precision of "keep" (positive) at this threshold.
    pub precision: f64,
    /// Recall of positives.
    pub recall: f64,
    /// F1 of the two.
    pub f1: f64,
    /// Fraction of all examples kept.
    pub kept_fraction: f64,
}

/// Binary evaluation of a classifier on labelled lines.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    /// Examples scored.
    pub n: u64,
    /// Positives among them.
    pub positives: u64,
    /// Negatives among them.
    pub negatives: u64,
    /// The threshold `precision`/`recall`/`f1`/`accuracy` refer to.
    pub threshold: f64,
    /// True positives (kept positives).
    pub tp: u64,
    /// False positives (kept negatives).
    pub fp: u64,
    /// False negatives (rejected positives).
    pub fn_: u64,
    /// True negatives.
    pub tn: u64,
    /// tp / (tp + fp).
    pub precision: f64,
    /// tp / (tp + fn).
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// (tp + tn) / n.
    pub accuracy: f64,
    /// Area under the ROC curve (ties count half).
    pub roc_auc: f64,
    /// Precision / recall / F1 at thresholds 0.1 .. 0.9.
    pub table: Vec<ThresholdRow>,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn prf(scored: &[(f64, bool)], t: f64) -> (u64, u64, u64, u64) {
    let (mut tp, mut fp, mut fn_, mut tn) = (0, 0, 0, 0);
    for &(s, pos) in scored {
        match (s >= t, pos) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => tn += 1,
        }
    }
    (tp, fp, fn_, tn)
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// ROC-AUC by the rank-sum (Mann-Whitney U) formula, average ranks for ties.
pub fn roc_auc(scored: &[(f64, bool)]) -> f64 {
    let mut v: Vec<(f64, bool)> = scored.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut i, mut rank_sum) = (0usize, 0.0f64);
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let avg = (i + 1 + j) as f64 / 2.0;
        rank_sum += avg * v[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let np = v.iter().filter(|x| x.1).count() as f64;
    let nn = v.len() as f64 - np;
    if np == 0.0 || nn == 0.0 {
        return f64::NAN;
    }
    (rank_sum - np * (np + 1.0) / 2.0) / (np * nn)
}

/// Metrics from (score, is_positive) pairs.
pub fn metrics(scored: &[(f64, bool)], threshold: f64) -> Metrics {
    let (tp, fp, fn_, tn) = prf(scored, threshold);
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    let n = scored.len() as u64;
    let table = (1..=9)
        .map(|k| {
            let t = k as f64 / 10.0;
            let (tp, fp, fn_, _) = prf(scored, t);
            let (p, r) = (ratio(tp, tp + fp), ratio(tp, tp + fn_));
            ThresholdRow {
                threshold: t,
                precision: p,
                recall: r,
                f1: f1(p, r),
                kept_fraction: ratio(tp + fp, n),
            }
        })
        .collect();
    Metrics {
        n,
        positives: tp + fn_,
        negatives: fp + tn,
        threshold,
        tp,
        fp,
        fn_,
        tn,
        precision,
        recall,
        f1: f1(precision, recall),
        accuracy: ratio(tp + tn, n),
        roc_auc: roc_auc(scored),
        table,
    }
}

/// Reservoir mode, done in two passes so that the stage stays streaming and deterministic:
/// the score threshold that keeps the top `keep_fraction` of a corpus. Returns
/// `(threshold, kept)`: keeping documents with score `>= threshold` keeps `kept` of the
/// `scores.len()` documents, `kept = ceil(keep_fraction * n)` unless several documents tie
/// at the threshold (then all of them are kept). Independent of the order of `scores`.
/// Memory: the scores (8 bytes per document). `None` for no scores or a fraction of 0.
pub fn threshold_for_fraction(scores: &[f64], keep_fraction: f64) -> Option<(f64, usize)> {
    let n = scores.len();
    let want = ((keep_fraction.clamp(0.0, 1.0) * n as f64).ceil() as usize).min(n);
    if want == 0 {
        return None;
    }
    let mut sorted: Vec<f64> = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let t = sorted[want - 1];
    let kept = sorted.iter().take_while(|&&s| s >= t).count();
    Some((t, kept))
}

/// Score lines with a model and compute metrics for `positive` (short label).
pub fn evaluate(model: &Model, lines: &[Line], positive: &str, threshold: f64) -> Result<Metrics> {
    let idx = model.label_index(positive).ok_or_else(|| {
        Error::msg(format!(
            "label `{positive}` not in model ({})",
            model.labels().join(", ")
        ))
    })?;
    let scored: Vec<(f64, bool)> = lines
        .iter()
        .map(|l| {
            (
                model.prob(&l.line, idx).map_or(0.0, f64::from),
                l.label == positive,
            )
        })
        .collect();
    Ok(metrics(&scored, threshold))
}

/// Label counts of a set of lines.
pub fn label_counts(lines: &[Line]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in lines {
        *m.entry(l.label.clone()).or_default() += 1;
    }
    m
}

/// Distinct labels of a set of lines.
pub fn labels(lines: &[Line]) -> BTreeSet<String> {
    lines.iter().map(|l| l.label.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_for_fraction_keeps_the_top_and_ignores_order() {
        let s = [0.9, 0.1, 0.5, 0.7, 0.3];
        assert_eq!(threshold_for_fraction(&s, 0.4), Some((0.7, 2)));
        assert_eq!(threshold_for_fraction(&s, 0.5), Some((0.5, 3))); // ceil(2.5)
        assert_eq!(threshold_for_fraction(&s, 1.0), Some((0.1, 5)));
        assert_eq!(threshold_for_fraction(&s, 0.0), None);
        assert_eq!(threshold_for_fraction(&[], 0.5), None);
        let mut r = s;
        r.reverse();
        assert_eq!(threshold_for_fraction(&r, 0.4), Some((0.7, 2)));
        // ties at the threshold are all kept
        assert_eq!(
            threshold_for_fraction(&[0.5, 0.5, 0.5, 0.2], 0.25),
            Some((0.5, 3))
        );
    }

    #[test]
    fn auc_and_prf_on_known_cases() {
        let perfect = [(0.9, true), (0.8, true), (0.2, false), (0.1, false)];
        assert_eq!(roc_auc(&perfect), 1.0);
        let ties = [(0.5, true), (0.5, false)];
        assert_eq!(roc_auc(&ties), 0.5);
        let m = metrics(&[(0.9, true), (0.4, true), (0.6, false), (0.1, false)], 0.5);
        assert_eq!((m.tp, m.fp, m.fn_, m.tn), (1, 1, 1, 1));
        assert_eq!(m.precision, 0.5);
        assert_eq!(m.recall, 0.5);
        assert_eq!(m.roc_auc, 0.75);
        assert_eq!(m.table.len(), 9);
    }

    #[test]
    fn split_is_deterministic_and_order_free() {
        let lines: Vec<Line> = (0..1000)
            .map(|i| Line {
                line: format!("line {i}"),
                label: "hq".into(),
            })
            .collect();
        let (a_train, a_test) = split(lines.clone(), 0.2, 7);
        let mut rev = lines.clone();
        rev.reverse();
        let (_, b_test) = split(rev, 0.2, 7);
        let mut x: Vec<_> = a_test.iter().map(|l| l.line.clone()).collect();
        let mut y: Vec<_> = b_test.iter().map(|l| l.line.clone()).collect();
        x.sort();
        y.sort();
        assert_eq!(x, y);
        assert!((150..250).contains(&a_test.len()), "{}", a_test.len());
        assert_eq!(a_train.len() + a_test.len(), 1000);
        let (_, c_test) = split(lines, 0.2, 8);
        assert_ne!(c_test.len(), 0);
    }

    #[test]
    fn prepare_drops_duplicates_and_conflicts() {
        let ex = |t: &str, l: &str| Example {
            text: t.into(),
            label: l.into(),
            lang: None,
        };
        let (lines, st) = prepare(
            &[
                ex("a b", "hq"),
                ex("A  b", "hq"),
                ex("c", "hq"),
                ex("c", "lq"),
                ex(" ", "lq"),
            ],
            true,
        );
        assert_eq!(lines.len(), 1);
        assert_eq!(st["duplicate"], 1);
        assert_eq!(st["conflicting_label"], 2);
        assert_eq!(st["empty"], 1);
    }
}
