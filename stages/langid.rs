//! `langid`: fastText language identification (`lid.176.ftz`) and a keep list.
//!
//! Uses Facebook's 176-language fastText model through sluice's one fastText inference,
//! `quality_classifier::model::Model`, which computes what the official C++ code computes
//! for every model kind, this quantized hierarchical-softmax one included (the `fasttext`
//! crate 0.8 does not: it labels Chinese as Serbian, see `../shared/CRATES.md`). A test
//! reproduces reference predictions made with the official bindings
//! (`tests/golden/langid/reference_predictions.json`).
//!
//! The text is prepared as fastText expects: one line, so every `\n` becomes a space
//! (as datatrove's `LanguageFilter` and fastText's own `predict` do).
//!
//! * Reads `text`. Writes `lang` (the top label without `__label__`, `und` when the text
//!   is blank) and `attrs["langid.score"]` (its probability).
//! * Keep rules: `keep` maps languages to minimum scores. A document whose language is not
//!   listed is rejected `lang`; one listed but below its minimum is rejected
//!   `lang_low_score`; the score is the top probability. An empty `keep` keeps everything
//!   (annotate only).
//! * Memory: the model (~1 MB file, ~6 MB in memory) is loaded once per process per model
//!   path and shared by every node and thread through an `Arc`.
//!
//! ```yaml
//! lid:
//!   kind: langid
//!   inputs: [norm]
//!   model: samples/models/lid.176.ftz   # CC BY-SA 3.0, see samples/models/lid.176.NOTICE.md
//!   keep: {zh: 0.5}
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::attrs::AttrDecl;
use crate::document::DocBatch;
use crate::error::{Error, Result};
use crate::stage::{
    check_file, field_problem, parse_config, BuildCtx, Emitter, Kind, Node, Role, StageConfig,
    Transform, OUT_REJECTED,
};
use crate::stages::quality_classifier::model::Model;

/// Config for `langid`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Path to a fastText language-ID model. Default `samples/models/lid.176.ftz`.
    #[serde(default = "default_model")]
    pub model: PathBuf,
    /// Languages to keep, each with its minimum probability (0–1). Empty (the default)
    /// keeps every document and only annotates it.
    #[serde(default)]
    pub keep: BTreeMap<String, f64>,
}

fn default_model() -> PathBuf {
    PathBuf::from("samples/models/lid.176.ftz")
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        let mut p: Vec<String> = check_file("model", &self.model).into_iter().collect();
        for (lang, s) in &self.keep {
            if !(0.0..=1.0).contains(s) {
                p.push(field_problem(
                    &format!("keep.{lang}"),
                    format!("expected a number in [0, 1], got {s}"),
                ));
            }
        }
        p
    }
}

/// Load a fastText model once per process and path; later calls share it.
pub fn shared_model(path: &Path) -> Result<Arc<Model>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<Model>>>> = OnceLock::new();
    let key = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache
        .lock()
        .map_err(|_| Error::msg("langid model cache poisoned"))?;
    if let Some(m) = map.get(&key) {
        return Ok(m.clone());
    }
    let m = Arc::new(Model::load(&key)?);
    map.insert(key, m.clone());
    Ok(m)
}

/// Top-`k` predictions for a text as (language, probability), newlines replaced by spaces.
/// Empty when the text yields no token.
pub fn predict(model: &Model, text: &str, k: usize) -> Vec<(String, f32)> {
    let line: std::borrow::Cow<str> = if text.contains('\n') {
        text.replace('\n', " ").into()
    } else {
        text.into()
    };
    let Some(probs) = model.probs(&line) else {
        return Vec::new();
    };
    // fastText lists labels by probability; ties keep model label order.
    let mut idx: Vec<usize> = (0..probs.len()).filter(|&i| probs[i] > 0.0).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let labels = model.labels();
    idx.into_iter()
        .take(k)
        .map(|i| {
            let l = labels[i].strip_prefix("__label__").unwrap_or(&labels[i]);
            (l.to_string(), probs[i])
        })
        .collect()
}

/// The `langid` transform.
pub struct Langid {
    cfg: Config,
    model: Arc<Model>,
}

impl Langid {
    /// Build from a config, loading (or reusing) the model.
    pub fn new(cfg: Config) -> Result<Self> {
        let model = shared_model(&cfg.model)?;
        Ok(Langid { cfg, model })
    }
}

impl Transform for Langid {
    fn attrs(&self) -> Vec<AttrDecl> {
        vec![AttrDecl::float("langid.score")]
    }

    fn process(&self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        for mut doc in batch.docs {
            // fastText still predicts from the end-of-line token alone; an empty text has no language.
            let top = if doc.text.trim().is_empty() {
                None
            } else {
                predict(&self.model, &doc.text, 1).into_iter().next()
            };
            let (lang, score) = top.unwrap_or_else(|| ("und".to_string(), 0.0));
            let score = score as f64;
            doc.attrs.insert("langid.score".into(), score);
            doc.lang = Some(lang.clone());
            if self.cfg.keep.is_empty() {
                out.emit(doc);
                continue;
            }
            match self.cfg.keep.get(&lang) {
                None => out.reject(doc, "lang", Some(score), format!("lang={lang}")),
                Some(&min) if score < min => out.reject(
                    doc,
                    "lang_low_score",
                    Some(score),
                    format!("lang={lang} min={min}"),
                ),
                Some(_) => out.emit(doc),
            }
        }
        Ok(())
    }

    fn manifest(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "model": self.cfg.model.display().to_string() }))
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "langid",
        doc: "fastText lid.176 language ID: writes lang and langid.score; keeps listed languages above per-language minimum scores.",
        role: Role::Transform,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Transform(Arc::new(Langid::new(cfg)?)))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_transform;

    fn model() -> Arc<Model> {
        shared_model(Path::new("samples/models/lid.176.ftz")).unwrap()
    }

    #[test]
    fn reproduces_official_fasttext_reference_predictions() {
        let raw =
            std::fs::read_to_string("tests/golden/langid/reference_predictions.json").unwrap();
        let refs: Vec<serde_json::Value> = serde_json::from_str(&raw).unwrap();
        assert_eq!(refs.len(), 5);
        let m = model();
        for r in refs {
            let text = r["text"].as_str().unwrap();
            let got = predict(&m, text, 2);
            let labels: Vec<String> = r["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    l.as_str()
                        .unwrap()
                        .trim_start_matches("__label__")
                        .to_string()
                })
                .collect();
            let probs: Vec<f64> = r["probs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_f64().unwrap())
                .collect();
            assert_eq!(got[0].0, labels[0], "{text}");
            for ((g, l), p) in got.iter().zip(&labels).zip(&probs) {
                // A runner-up at probability ~0 is a tie among many labels: compare only the score.
                if *p >= 0.001 {
                    assert_eq!(&g.0, l, "{text}");
                }
                // The reference is rounded to 4 decimals.
                assert!((g.1 as f64 - p).abs() <= 0.00051, "{text}: {} vs {p}", g.1);
            }
        }
    }

    #[test]
    fn model_is_shared() {
        assert!(Arc::ptr_eq(&model(), &model()));
    }

    #[test]
    fn newlines_do_not_change_the_call_contract() {
        let m = model();
        let a = predict(&m, "这是第一行。\n这是第二行。", 1);
        let b = predict(&m, "这是第一行。 这是第二行。", 1);
        assert_eq!(a, b);
        assert_eq!(a[0].0, "zh");
    }

    #[test]
    fn keep_rules_route_by_language_and_score() {
        let f = Langid::new(Config {
            model: default_model(),
            keep: BTreeMap::from([("zh".to_string(), 0.9), ("en".to_string(), 0.5)]),
        })
        .unwrap();
        let texts = [
            "中华人民共和国是位于东亚的国家，首都是北京。",
            "This is an English sentence about the weather.",
            "これは日本語の文です。",
            "混合 mixed 中英文 text",
            "",
        ];
        for bs in [1, 3, 1000] {
            let (out, rej) = run_transform(&f, &texts, bs);
            let kept: Vec<_> = out.iter().map(|d| d.lang.clone().unwrap()).collect();
            assert_eq!(kept, ["zh", "en"]);
            let reasons: Vec<_> = rej
                .iter()
                .map(|d| {
                    (
                        d.lang.clone().unwrap(),
                        d.reject.as_ref().unwrap().reason.clone(),
                    )
                })
                .collect();
            assert_eq!(
                reasons,
                [
                    ("ja".to_string(), "lang".to_string()),
                    ("zh".to_string(), "lang_low_score".to_string()),
                    ("und".to_string(), "lang".to_string())
                ]
            );
            assert!(out[0].attrs["langid.score"] > 0.9);
        }
    }
}
