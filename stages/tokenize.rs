//! `tokenize`: encode text with a real LLM `tokenizer.json` (Hugging Face `tokenizers`).
//!
//! Token ids equal the Python `tokenizers` library's for the same file (a test checks this
//! against stored reference ids). The whole batch goes through `encode_batch`, which
//! parallelises over documents on the run's rayon pool. (`encode_batch_fast`, which skips
//! offsets, measured 15-40 % *slower* in `benches/engine.rs` in every run with tokenizers
//! 0.23, on the same documents and thread count; the ids are the same either way.)
//! EOS is appended when `append_eos` is set; the EOS token defaults to the one named in a
//! `tokenizer_config.json` beside the tokenizer, else a known EOS token in the vocab.
//!
//! * Reads `text`; writes `tokens` and `attrs["tokenize.n_tokens"]`.
//! * Reports `{tokenizer, sha256, eos_id}` into the manifest.
//! * Memory: the tokenizer (a few tens of MB) shared by all threads.
//!
//! ```yaml
//! tok:
//!   kind: tokenize
//!   inputs: [clean]
//!   tokenizer: samples/tokenizers/qwen2/tokenizer.json
//!   append_eos: true
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::document::DocBatch;
use crate::error::{Error, Result};
use crate::stage::{
    check_file, parse_config, BuildCtx, Emitter, Kind, Node, Role, StageConfig, Transform,
    OUT_REJECTED,
};

/// Config for `tokenize`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Path to a Hugging Face `tokenizer.json`. Required.
    pub tokenizer: PathBuf,
    /// Add the tokenizer's own special tokens (e.g. BOS from its post-processor). Default false.
    #[serde(default)]
    pub add_special_tokens: bool,
    /// Append the EOS token id to every document. Default true.
    #[serde(default = "default_true")]
    pub append_eos: bool,
    /// EOS token string. Default: from `tokenizer_config.json` beside the tokenizer, else the
    /// first of `<|endoftext|>`, `<｜end▁of▁sentence｜>`, `</s>`, `<eos>` found in the vocab.
    #[serde(default)]
    pub eos_token: Option<String>,
}

fn default_true() -> bool {
    true
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        check_file("tokenizer", &self.tokenizer)
            .into_iter()
            .collect()
    }
}

/// The tokenize transform.
pub struct Tokenize {
    tok: Tokenizer,
    eos: Option<u32>,
    cfg: Config,
    sha256: String,
}

/// Find the EOS id: explicit, from tokenizer_config.json, or a known token.
pub fn resolve_eos(tok: &Tokenizer, tokenizer_path: &Path, explicit: Option<&str>) -> Result<u32> {
    if let Some(e) = explicit {
        return tok.token_to_id(e).ok_or_else(|| {
            Error::msg(format!(
                "eos_token `{e}` is not in the tokenizer's vocabulary"
            ))
        });
    }
    if let Some(dir) = tokenizer_path.parent() {
        if let Ok(bytes) = std::fs::read(dir.join("tokenizer_config.json")) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                let name = match v.get("eos_token") {
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(o) => o.get("content").and_then(|c| c.as_str()).map(String::from),
                    None => None,
                };
                if let Some(id) = name.and_then(|n| tok.token_to_id(&n)) {
                    return Ok(id);
                }
            }
        }
    }
    for cand in ["<|endoftext|>", "<｜end▁of▁sentence｜>", "</s>", "<eos>"] {
        if let Some(id) = tok.token_to_id(cand) {
            return Ok(id);
        }
    }
    Err(Error::msg(
        "no EOS token found; set eos_token or append_eos: false",
    ))
}

impl Tokenize {
    /// Load the tokenizer and resolve EOS.
    pub fn new(cfg: Config) -> Result<Self> {
        let tok = Tokenizer::from_file(&cfg.tokenizer).map_err(|e| {
            Error::msg(format!(
                "cannot load tokenizer {}: {e}",
                cfg.tokenizer.display()
            ))
        })?;
        let eos = if cfg.append_eos {
            Some(resolve_eos(&tok, &cfg.tokenizer, cfg.eos_token.as_deref())?)
        } else {
            None
        };
        let sha256 = crate::io::sha256_file(&cfg.tokenizer)?;
        Ok(Tokenize {
            tok,
            eos,
            cfg,
            sha256,
        })
    }

    /// Encode texts to ids (no EOS), exactly as the Python library does.
    pub fn encode_texts(&self, texts: Vec<&str>) -> Result<Vec<Vec<u32>>> {
        let enc = self
            .tok
            .encode_batch(texts, self.cfg.add_special_tokens)
            .map_err(|e| Error::msg(format!("tokenizer: {e}")))?;
        Ok(enc.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }
}

impl Transform for Tokenize {
    fn process(&self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        let mut docs = batch.docs;
        let ids = self.encode_texts(docs.iter().map(|d| d.text.as_str()).collect())?;
        for (d, mut t) in docs.iter_mut().zip(ids) {
            if let Some(e) = self.eos {
                t.push(e);
            }
            d.attrs.insert("tokenize.n_tokens".into(), t.len() as f64);
            d.tokens = Some(t);
        }
        for d in docs {
            out.emit(d);
        }
        Ok(())
    }

    fn manifest(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "tokenizer": self.cfg.tokenizer.display().to_string(),
            "sha256": self.sha256,
            "eos_id": self.eos,
            "vocab_size": self.tok.get_vocab_size(true),
        }))
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "tokenize",
        doc: "Encode text with a Hugging Face tokenizer.json (ids match Python tokenizers) and append EOS.",
        role: Role::Transform,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Transform(Arc::new(Tokenize::new(cfg)?)))
        },
    }
}
