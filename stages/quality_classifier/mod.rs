//! `quality_classifier`: score every document with a fastText supervised model and keep the
//! ones whose probability for a chosen label reaches a threshold.
//!
//! Heuristic filters catch the obvious junk; what the best corpora do next is score documents
//! with a classifier trained on examples of what they want (DCLM's fastText filter,
//! FineWeb-Edu, ChineseWebText's EvalWeb). This stage applies any fastText supervised model
//! (`.bin` or quantized `.ftz`), whether trained by `sluice classifier train` or by the
//! official fastText tool, and gives the same probabilities as the official fastText for
//! the same line (see [`model`]: our own inference, written to C++ fastText's arithmetic,
//! and the parity tests). Several classifiers can sit in one DAG (a quality model, an ads/porn model, ...):
//! each node writes its own attribute.
//!
//! * Reads: `text`, `words` (from `segment_zh`, when present), `lang`.
//! * Writes: `attrs["<attr>"]` = probability of `label` (default attr `<node>.<label>`,
//!   e.g. `quality_zh.hq`). Documents skipped because of `langs` get no attribute.
//! * Routes: `out` when the probability is `>= threshold`; otherwise `rejected` with reason
//!   `low_quality` (or the configured `reason`) and the probability as score. A document with
//!   no tokens at all is rejected with reason `no_tokens`, score 0.
//! * Text preprocessing is [`preprocess::line_into`], the same function training uses:
//!   `segment_zh` words (or jieba) for Chinese, whitespace tokens otherwise, lowercased,
//!   newlines removed.
//! * Memory: the model (the shipped Chinese model is about 2 MB as `.ftz`; a `.bin` holds
//!   `dim x (words + bucket)` floats) plus, only when some document lacks `words`, the shared
//!   jieba dictionary (about 30 MB). Nothing grows with input size.
//! * Stats (`stats.json` extra): documents scored / kept / rejected / skipped and a 10-bin
//!   histogram of the probabilities. Manifest: model path, sha256, label, attr, threshold.
//!
//! ```yaml
//! quality_zh:
//!   kind: quality_classifier
//!   inputs: [seg]                  # after segment_zh, so the words are reused
//!   model: samples/models/zh_quality.ftz
//!   label: hq                      # or __label__hq
//!   threshold: 0.5
//!   langs: [zh]                    # other languages pass through unscored
//! ```

pub mod model;
pub mod preprocess;
pub mod train;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::attrs::AttrDecl;
use crate::document::DocBatch;
use crate::error::Result;
use crate::stage::{
    parse_config, BuildCtx, Checks, Emitter, Kind, Node, Role, StageConfig, Transform, OUT_REJECTED,
};

use model::Model;

/// Config for `quality_classifier`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Path to a fastText supervised model (`.bin` or `.ftz`). Required.
    pub model: PathBuf,
    /// Label whose probability is the score, with or without the `__label__` prefix.
    /// Default `hq` (the label `sluice classifier train` gives positives).
    #[serde(default = "default_label")]
    pub label: String,
    /// Attribute name the probability is written to. Default `<node>.<label without prefix>`,
    /// so two classifier nodes never overwrite each other.
    #[serde(default)]
    pub attr: String,
    /// Keep documents whose probability is `>=` this (0..1). Default 0.5. To keep the top
    /// fraction of a corpus instead, take this from `sluice classifier threshold MODEL CORPUS
    /// --keep-fraction F` (reservoir mode in two passes).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Reject reason written to `rejected`. Default `low_quality`.
    #[serde(default = "default_reason")]
    pub reason: String,
    /// Only score documents whose `lang` is in this list (e.g. `[zh]`); others pass to `out`
    /// untouched. Default empty: score everything.
    #[serde(default)]
    pub langs: Vec<String>,
    /// jieba HMM for unknown words when a Chinese document has no `words` and must be
    /// segmented here. Must match what the model was trained with. Default true.
    #[serde(default = "default_hmm")]
    pub hmm: bool,
}

fn default_label() -> String {
    "hq".into()
}
fn default_threshold() -> f64 {
    0.5
}
fn default_reason() -> String {
    "low_quality".into()
}
fn default_hmm() -> bool {
    true
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        let mut c = Checks::new();
        c.file("model", &self.model);
        c.fraction("threshold", self.threshold);
        c.non_empty("label", self.label.trim().is_empty());
        c.non_empty("reason", self.reason.trim().is_empty());
        c.into_vec()
    }
}

/// Counters reported in `stats.json`.
#[derive(Debug, Default)]
struct Counters {
    scored: AtomicU64,
    kept: AtomicU64,
    rejected: AtomicU64,
    skipped_lang: AtomicU64,
    no_tokens: AtomicU64,
    hist: [AtomicU64; 10],
}

/// The `quality_classifier` transform.
pub struct QualityClassifier {
    cfg: Config,
    model: Model,
    label_idx: usize,
    attr: String,
    counters: Counters,
}

impl QualityClassifier {
    /// Load the model and resolve the label and attribute name.
    pub fn new(cfg: Config, node: &str) -> Result<Self> {
        let model = Model::load(&cfg.model)?;
        let label_idx = model.label_index(&cfg.label).ok_or_else(|| {
            crate::Error::msg(format!(
                "label `{}` not in model {} (labels: {})",
                cfg.label,
                cfg.model.display(),
                model.labels().join(", ")
            ))
        })?;
        let short = model.labels()[label_idx]
            .trim_start_matches(model::LABEL_PREFIX)
            .to_string();
        let attr = if cfg.attr.is_empty() {
            format!("{node}.{short}")
        } else {
            cfg.attr.clone()
        };
        Ok(QualityClassifier {
            cfg,
            model,
            label_idx,
            attr,
            counters: Counters::default(),
        })
    }

    /// The attribute name scores are written to.
    pub fn attr(&self) -> &str {
        &self.attr
    }

    /// The loaded model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Score one preprocessed line (`None` when it has no tokens).
    pub fn score_line(&self, line: &str) -> Option<f64> {
        self.model.prob(line, self.label_idx).map(f64::from)
    }
}

impl Transform for QualityClassifier {
    fn attrs(&self) -> Vec<AttrDecl> {
        vec![AttrDecl::float(self.attr.clone())]
    }

    fn process(&self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        let mut line = String::new();
        let c = &self.counters;
        for mut doc in batch.docs {
            if !self.cfg.langs.is_empty()
                && !doc
                    .lang
                    .as_ref()
                    .is_some_and(|l| self.cfg.langs.contains(l))
            {
                c.skipped_lang.fetch_add(1, Ordering::Relaxed);
                out.emit(doc);
                continue;
            }
            preprocess::line_into(
                &doc.text,
                doc.words.as_deref(),
                doc.lang.as_deref(),
                self.cfg.hmm,
                &mut line,
            );
            c.scored.fetch_add(1, Ordering::Relaxed);
            let Some(p) = self.score_line(&line) else {
                c.no_tokens.fetch_add(1, Ordering::Relaxed);
                c.rejected.fetch_add(1, Ordering::Relaxed);
                doc.attrs.insert(self.attr.clone(), 0.0);
                out.reject(doc, "no_tokens", Some(0.0), "no tokens after preprocessing");
                continue;
            };
            c.hist[((p * 10.0) as usize).min(9)].fetch_add(1, Ordering::Relaxed);
            doc.attrs.insert(self.attr.clone(), p);
            if p >= self.cfg.threshold {
                c.kept.fetch_add(1, Ordering::Relaxed);
                out.emit(doc);
            } else {
                c.rejected.fetch_add(1, Ordering::Relaxed);
                out.reject(
                    doc,
                    &self.cfg.reason,
                    Some(p),
                    format!("{} < {}", self.attr, self.cfg.threshold),
                );
            }
        }
        Ok(())
    }

    fn stats(&self) -> Option<serde_json::Value> {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Some(serde_json::json!({
            "attr": self.attr,
            "scored": get(&c.scored),
            "kept": get(&c.kept),
            "rejected": get(&c.rejected),
            "no_tokens": get(&c.no_tokens),
            "skipped_lang": get(&c.skipped_lang),
            "score_histogram_deciles": c.hist.iter().map(get).collect::<Vec<_>>(),
        }))
    }

    fn manifest(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "model": self.cfg.model.display().to_string(),
            "sha256": self.model.sha256(),
            "label": self.model.labels()[self.label_idx],
            "attr": self.attr,
            "threshold": self.cfg.threshold,
        }))
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "quality_classifier",
        doc: "Score documents with a fastText model; keep those whose label probability >= threshold.",
        role: Role::Transform,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            let stage = QualityClassifier::new(cfg, &ctx.node).map_err(|e| vec![e.to_string()])?;
            Ok(Node::Transform(Arc::new(stage)))
        },
    }
}

#[cfg(test)]
mod tests;
