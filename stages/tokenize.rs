//! `tokenize`: encode text with a real LLM `tokenizer.json` (Hugging Face `tokenizers`).
//!
//! Two engines, the same ids. `fast` (see `tokenize_fast.rs`): an exact byte-level BPE
//! for the `tokenizer.json` shapes it knows (Qwen2/Qwen3, Llama-3, DeepSeek-V3: NFC or no
//! normalizer, their split regexes + ByteLevel, plain BPE, added tokens without
//! lstrip/rstrip/single_word), 5-7x HF's CPU speed on real text (`docs/benchmarks.md`).
//! `hf`: the `tokenizers` crate, the reference, used for every other tokenizer.
//! `engine: auto` (default) picks `fast` when the file has a known shape, else `hf`; the
//! log and the manifest (`engine`, and `engine_reason` when it fell back) say which ran.
//! The parity test (`tests/tokenize_parity.rs`) checks every document of a mixed corpus
//! against HF, for both shipped tokenizers.
//!
//! With `hf`: token ids equal the Python `tokenizers` library's for the same file (a test
//! checks this against stored reference ids). The whole batch goes through `encode_batch`,
//! which parallelises over documents on the run's rayon pool. (`encode_batch_fast`, which
//! skips offsets, measured 15-40 % *slower* in `benches/engine.rs` in every run with tokenizers
//! 0.23, on the same documents and thread count; the ids are the same either way.)
//! EOS is appended when `append_eos` is set; the EOS token defaults to the one named in a
//! `tokenizer_config.json` beside the tokenizer, else a known EOS token in the vocab.
//!
//! * Reads `text`; writes `tokens` and `attrs["tokenize.n_tokens"]`. Rejects `too_large`
//!   (score = bytes) only a document over `max_unsplit_bytes` that cannot be split exactly.
//! * Reports `{tokenizer, sha256, eos_id}` into the manifest.
//! * Memory: the tokenizer (a few tens of MB) shared by all threads, plus per document
//!   being encoded ~100 bytes of `tokenizers` state (normalization alignments, pre-token
//!   splits, BPE symbols, the `Encoding`) per byte of text. So documents over 256 KiB are
//!   encoded in pieces of ~256 KiB at exact boundaries (Qwen2/Qwen3/Llama-3 split regex,
//!   see `Splitter`) and the rest in groups of at most 4 MiB of text per parallel call:
//!   that state stays at tens of MB per thread, and the stage's O(document) cost is the
//!   ids alone, 4 bytes per token (~1 byte per byte of Chinese text). With another
//!   tokenizer a document over `max_unsplit_bytes` (1 MiB) is rejected `too_large`.
//!   Measured figures: `docs/memory.md`. The fast engine keeps no per-byte state (ids,
//!   ~64 KiB scratch and a piece cache of ~6 MB per thread and encoder, two encoders at
//!   most), so it encodes every document whole, big or not, and rejects nothing.
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

use crate::attrs::AttrDecl;
use crate::document::DocBatch;
use crate::error::{Error, Result};
use crate::stage::{
    check_file, parse_config, BuildCtx, Emitter, Kind, Node, Role, StageConfig, Transform,
    OUT_REJECTED,
};
use crate::stages::segment_zh::floor_boundary;

#[path = "tokenize_fast.rs"]
mod fast;
use fast::FastBpe;

/// Which encoder runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// `fast` when it is exact for the tokenizer.json, else `hf`.
    #[default]
    Auto,
    /// The fast byte-level BPE; building the stage fails when it is not exact for the file.
    Fast,
    /// Hugging Face `tokenizers` (the reference).
    Hf,
}

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
    /// Largest document, in bytes, encoded in one piece when it cannot be split exactly
    /// (`hf` engine only: the fast engine encodes any document whole, in bounded memory).
    /// Documents over 256 KiB are encoded in pieces of ~256 KiB cut where the tokenizer's
    /// own pre-tokenization has a boundary, which gives exactly the ids of one call (only
    /// for tokenizers whose split is known: NFC or no normalizer, the Qwen2/Qwen3 or
    /// Llama-3 split regex, byte-level BPE). With any other tokenizer, or when a stretch
    /// has no such boundary within 1 MiB, a document over this limit is rejected
    /// `too_large` instead of costing ~100 bytes of tokenizer state per byte.
    /// Default 1048576 (1 MiB).
    #[serde(default = "default_max_unsplit")]
    pub max_unsplit_bytes: usize,
    /// Encoder: `auto` (default: `fast` when it gives HF's ids for this tokenizer.json,
    /// else `hf`), `fast` (fail when it cannot) or `hf`. Ids are the same either way.
    #[serde(default)]
    pub engine: Engine,
}

fn default_max_unsplit() -> usize {
    1 << 20
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
    /// The HF tokenizer: the reference engine. Loaded at build when it runs (`hf`, or
    /// `auto` falling back), otherwise on first use only: with the fast engine nothing
    /// needs it, and its load (~0.3 CPU-s for Qwen2) was the largest serial part of a run.
    tok: std::sync::OnceLock<Tokenizer>,
    /// `get_vocab_size(true)` of the tokenizer, for the manifest.
    vocab_size: usize,
    eos: Option<u32>,
    cfg: Config,
    sha256: String,
    /// Set when documents may be encoded in pieces with the same ids (see [`Splitter`]).
    splitter: Option<Splitter>,
    /// The fast engine, when it runs.
    fast: Option<FastBpe>,
    /// Why the fast engine does not run (`engine: auto` fell back, or `hf` was asked for).
    fast_reason: Option<String>,
}

/// Target size of one piece of a big document, in bytes.
const PIECE_BYTES: usize = 256 << 10;
/// Most text handed to one parallel `encode_batch` call, in bytes.
const GROUP_BYTES: usize = 4 << 20;
/// Largest piece tolerated when no boundary comes sooner; past it the document is rejected.
const MAX_PIECE_BYTES: usize = 1 << 20;

/// Split regexes (Hugging Face `Split` pre-tokenizer, `Isolated`) under which a position
/// between a letter/digit and a following punctuation mark is always a pre-token boundary.
const KNOWN_SPLITS: &[&str] = &[
    // Qwen2 / Qwen2.5 / Qwen3.
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    // Llama-3 (cl100k-style, digits in threes).
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];

/// Cuts big documents where encoding the pieces one by one gives exactly the ids of
/// encoding the whole: before a punctuation mark that follows a Han character or an ASCII
/// letter/digit. With a [`KNOWN_SPLITS`] regex, every match ends there (letter and digit
/// alternatives stop at a non-letter, non-digit; no alternative crosses from a letter
/// into punctuation) and the next match starts there whatever came before (no look-
/// behind); NFC never composes a letter with these marks; byte-level BPE works within a
/// pre-token. A cut that would fall inside an added (special) token is not used.
struct Splitter {
    added: Vec<String>,
}

impl Splitter {
    /// A splitter when `tokenizer.json` has one of the shapes this is exact for.
    fn for_tokenizer(json: &serde_json::Value, add_special_tokens: bool) -> Option<Splitter> {
        use serde_json::Value;
        let norm_ok = match json.get("normalizer") {
            None | Some(Value::Null) => true,
            Some(n) => match n.get("type").and_then(Value::as_str) {
                Some("NFC") => true,
                Some("Sequence") => n
                    .get("normalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.is_empty()),
                _ => false,
            },
        };
        let pre = json.get("pre_tokenizer")?;
        let list = pre.get("pretokenizers").and_then(Value::as_array)?;
        let pre_ok = pre.get("type").and_then(Value::as_str) == Some("Sequence")
            && list.len() == 2
            && list[0].get("type").and_then(Value::as_str) == Some("Split")
            && list[0]
                .pointer("/pattern/Regex")
                .and_then(Value::as_str)
                .is_some_and(|r| KNOWN_SPLITS.contains(&r))
            && list[0].get("behavior").and_then(Value::as_str) == Some("Isolated")
            && list[0].get("invert").and_then(Value::as_bool) == Some(false)
            && list[1].get("type").and_then(Value::as_str) == Some("ByteLevel")
            && list[1].get("add_prefix_space").and_then(Value::as_bool) == Some(false)
            && list[1].get("use_regex").and_then(Value::as_bool) == Some(false);
        let model = json.get("model")?;
        let model_ok = model.get("type").and_then(Value::as_str) == Some("BPE")
            && model.get("dropout").is_none_or(Value::is_null);
        // A post-processor may add tokens around the whole input, once.
        let post_ok = !add_special_tokens
            || match json.get("post_processor") {
                None | Some(Value::Null) => true,
                Some(p) => p.get("type").and_then(Value::as_str) == Some("ByteLevel"),
            };
        if !(norm_ok && pre_ok && model_ok && post_ok) {
            return None;
        }
        let added = json
            .get("added_tokens")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.get("content").and_then(Value::as_str))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Some(Splitter { added })
    }

    /// Whether encoding `text[..p]` and `text[p..]` separately equals encoding `text`.
    fn is_cut(&self, text: &str, p: usize) -> bool {
        let (Some(a), Some(c)) = (text[..p].chars().next_back(), text[p..].chars().next()) else {
            return false;
        };
        let letter = a.is_ascii_alphanumeric() || crate::stages::segment_zh::is_han(a);
        let mark = (c.is_ascii_punctuation() && c != '\'')
            || "，。、！？；：“”‘’（）《》「」【】…—·".contains(c);
        if !(letter && mark) {
            return false;
        }
        // Not inside an added token (those are matched before the split regex).
        !self.added.iter().any(|t| {
            let lo = floor_boundary(text, p.saturating_sub(t.len()));
            let hi = floor_boundary(text, p + t.len());
            text[lo..hi]
                .match_indices(t.as_str())
                .any(|(i, m)| lo + i < p && lo + i + m.len() > p)
        })
    }

    /// The pieces of `text`, or None when some stretch has no cut within
    /// [`MAX_PIECE_BYTES`].
    fn pieces<'t>(&self, text: &'t str) -> Option<Vec<&'t str>> {
        let mut out = Vec::new();
        let mut start = 0;
        while text.len() - start > PIECE_BYTES {
            let target = floor_boundary(text, start + PIECE_BYTES);
            let back = text[start..target]
                .char_indices()
                .rev()
                .map(|(i, _)| start + i)
                .find(|&p| p > start && self.is_cut(text, p));
            let limit = floor_boundary(text, start + MAX_PIECE_BYTES);
            let cut = match back {
                Some(p) => p,
                None => text[target..limit]
                    .char_indices()
                    .map(|(i, _)| target + i)
                    .find(|&p| self.is_cut(text, p))
                    .or((limit == text.len()).then_some(limit))?,
            };
            out.push(&text[start..cut]);
            start = cut;
        }
        out.push(&text[start..]);
        Some(out)
    }
}

/// Load the HF tokenizer.
fn load_hf(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path)
        .map_err(|e| Error::msg(format!("cannot load tokenizer {}: {e}", path.display())))
}

/// The lookups of HF's `Tokenizer` the stage needs besides encoding, answered from
/// `tokenizer.json` itself, so the fast engine never loads HF: `token_to_id` (added
/// tokens first, then the model's vocab) and `get_vocab_size(true)` (the vocab plus the
/// added tokens it lacks). `vocab_lookups_equal_hf` checks both against HF.
struct JsonVocab<'a>(&'a serde_json::Value);

impl JsonVocab<'_> {
    fn added(&self) -> impl Iterator<Item = (&str, u32)> {
        self.0
            .get("added_tokens")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let id = u32::try_from(t.get("id")?.as_u64()?).ok()?;
                Some((t.get("content")?.as_str()?, id))
            })
    }

    fn vocab(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.0.pointer("/model/vocab")?.as_object()
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.added()
            .find(|(c, _)| *c == token)
            .map(|(_, id)| id)
            .or_else(|| u32::try_from(self.vocab()?.get(token)?.as_u64()?).ok())
    }

    fn vocab_size(&self) -> usize {
        let vocab = self.vocab();
        let base = vocab.map_or(0, |v| v.len());
        let added: std::collections::HashSet<&str> = self.added().map(|(c, _)| c).collect();
        let overlapping = added
            .iter()
            .filter(|c| vocab.is_some_and(|v| v.contains_key(**c)))
            .count();
        base + added.len() - overlapping
    }
}

/// Find the EOS id: explicit, from tokenizer_config.json, or a known token.
pub fn resolve_eos(
    token_to_id: impl Fn(&str) -> Option<u32>,
    tokenizer_path: &Path,
    explicit: Option<&str>,
) -> Result<u32> {
    if let Some(e) = explicit {
        return token_to_id(e).ok_or_else(|| {
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
                if let Some(id) = name.and_then(|n| token_to_id(&n)) {
                    return Ok(id);
                }
            }
        }
    }
    for cand in ["<|endoftext|>", "<｜end▁of▁sentence｜>", "</s>", "<eos>"] {
        if let Some(id) = token_to_id(cand) {
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
        // HF's load and the fast engine's (JSON, merge map, class table) run side by side:
        // start-up is on the critical path of every run.
        let sha256 = crate::io::sha256_file(&cfg.tokenizer);
        let json: serde_json::Value = std::fs::read(&cfg.tokenizer)
            .map_err(|e| Error::io_doing("cannot read tokenizer", &cfg.tokenizer, e))
            .and_then(|b| {
                serde_json::from_slice(&b).map_err(|e| {
                    Error::msg(format!(
                        "cannot load tokenizer {}: {e}",
                        cfg.tokenizer.display()
                    ))
                })
            })?;
        let fast = match cfg.engine {
            Engine::Hf => Err("engine: hf".to_string()),
            Engine::Auto | Engine::Fast => FastBpe::from_json(&json, cfg.add_special_tokens),
        };
        let (fast, fast_reason) = match fast {
            Ok(f) => (Some(f), None),
            Err(why) if cfg.engine != Engine::Fast => (None, Some(why)),
            Err(why) => {
                return Err(Error::msg(format!(
                    "tokenize engine `fast` is not exact for {}: {why}",
                    cfg.tokenizer.display()
                )))
            }
        };
        let tok = std::sync::OnceLock::new();
        if fast.is_none() {
            let _ = tok.set(load_hf(&cfg.tokenizer)?);
        }
        let vocab = JsonVocab(&json);
        let eos = if cfg.append_eos {
            Some(resolve_eos(
                |t| vocab.token_to_id(t),
                &cfg.tokenizer,
                cfg.eos_token.as_deref(),
            )?)
        } else {
            None
        };
        let vocab_size = vocab.vocab_size();
        let sha256 = sha256?;
        let splitter = Splitter::for_tokenizer(&json, cfg.add_special_tokens);
        match &fast_reason {
            None => tracing::info!(tokenizer = %cfg.tokenizer.display(), "tokenize.engine: fast"),
            Some(why) => tracing::info!(
                tokenizer = %cfg.tokenizer.display(),
                "tokenize.engine: hf ({why})"
            ),
        }
        Ok(Tokenize {
            tok,
            vocab_size,
            eos,
            cfg,
            sha256,
            splitter,
            fast,
            fast_reason,
        })
    }

    /// The HF tokenizer, loaded on first use when the fast engine runs.
    fn hf(&self) -> Result<&Tokenizer> {
        if let Some(t) = self.tok.get() {
            return Ok(t);
        }
        let t = load_hf(&self.cfg.tokenizer)?;
        Ok(self.tok.get_or_init(|| t))
    }

    /// Which engine runs: `fast` or `hf`.
    pub fn engine(&self) -> &'static str {
        if self.fast.is_some() {
            "fast"
        } else {
            "hf"
        }
    }

    /// Encode texts to ids (no EOS) with the engine that runs, in parallel on the
    /// current rayon pool.
    pub fn encode_any(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        match &self.fast {
            Some(f) => {
                use rayon::prelude::*;
                Ok(texts
                    .par_iter()
                    .with_max_len(8)
                    .map(|t| f.encode(t))
                    .collect())
            }
            None => self.encode_texts(texts.to_vec()),
        }
    }

    /// Encode one big document in pieces (see [`Splitter`]), or None when it cannot be
    /// split exactly.
    fn encode_big(&self, text: &str) -> Result<Option<Vec<u32>>> {
        let Some(pieces) = self.splitter.as_ref().and_then(|s| s.pieces(text)) else {
            if text.len() <= self.cfg.max_unsplit_bytes {
                return Ok(self.encode_texts(vec![text])?.pop());
            }
            return Ok(None);
        };
        // ~1 token per 4 bytes for Chinese and English alike: usually one allocation.
        let mut ids: Vec<u32> = Vec::with_capacity(text.len() / 4 + 1);
        for p in pieces {
            let e = self
                .hf()?
                .encode(p, self.cfg.add_special_tokens)
                .map_err(|e| Error::msg(format!("tokenizer: {e}")))?;
            ids.extend_from_slice(e.get_ids());
        }
        if ids.capacity() - ids.len() > ids.len() / 8 {
            ids.shrink_to_fit();
        }
        if text.len() >= crate::stages::normalize::HUGE_DOC_BYTES {
            crate::stages::normalize::release_freed_memory();
        }
        Ok(Some(ids))
    }

    /// Encode texts to ids (no EOS), exactly as the Python library does.
    pub fn encode_texts(&self, texts: Vec<&str>) -> Result<Vec<Vec<u32>>> {
        let enc = self
            .hf()?
            .encode_batch(texts, self.cfg.add_special_tokens)
            .map_err(|e| Error::msg(format!("tokenizer: {e}")))?;
        Ok(enc.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }
}

impl Transform for Tokenize {
    fn attrs(&self) -> Vec<AttrDecl> {
        vec![AttrDecl::int("tokenize.n_tokens")]
    }

    fn process(&self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        if let Some(f) = &self.fast {
            use rayon::prelude::*;
            let mut docs = batch.docs;
            let ids: Vec<Vec<u32>> = docs
                .par_iter()
                .with_max_len(8)
                .map(|d| f.encode(&d.text))
                .collect();
            for (mut d, mut t) in docs.drain(..).zip(ids) {
                if let Some(e) = self.eos {
                    t.push(e);
                }
                d.attrs.insert("tokenize.n_tokens".into(), t.len() as f64);
                d.tokens = Some(t);
                out.emit(d);
            }
            return Ok(());
        }
        let limit = self.cfg.max_unsplit_bytes;
        let mut docs = batch.docs;
        // A document goes in pieces when it is over one piece and the split is exact,
        // is rejected when it is over `max_unsplit_bytes` and cannot be split, and is
        // otherwise encoded whole, in groups of at most `GROUP_BYTES` of text per parallel
        // `encode_batch` call (its `Encoding`s hold ~70 bytes per token until converted).
        let big = |t: &str| t.len() > PIECE_BYTES && (self.splitter.is_some() || t.len() > limit);
        let mut ids: Vec<Option<Vec<u32>>> = Vec::with_capacity(docs.len());
        let mut group: Vec<&str> = Vec::new();
        let mut group_bytes = 0usize;
        for d in &docs {
            if big(&d.text) {
                ids.extend(
                    self.encode_texts(std::mem::take(&mut group))?
                        .into_iter()
                        .map(Some),
                );
                group_bytes = 0;
                ids.push(self.encode_big(&d.text)?);
                continue;
            }
            if group_bytes + d.text.len() > GROUP_BYTES && !group.is_empty() {
                ids.extend(
                    self.encode_texts(std::mem::take(&mut group))?
                        .into_iter()
                        .map(Some),
                );
                group_bytes = 0;
            }
            group_bytes += d.text.len();
            group.push(&d.text);
        }
        ids.extend(self.encode_texts(group)?.into_iter().map(Some));
        for (mut d, t) in docs.drain(..).zip(ids) {
            let Some(mut t) = t else {
                let detail = format!(
                    "{} bytes > max_unsplit_bytes ({limit}) and no exact split",
                    d.text.len()
                );
                let size = d.text.len() as f64;
                out.reject(d, "too_large", Some(size), detail);
                continue;
            };
            if let Some(e) = self.eos {
                t.push(e);
            }
            d.attrs.insert("tokenize.n_tokens".into(), t.len() as f64);
            d.tokens = Some(t);
            out.emit(d);
        }
        Ok(())
    }

    fn manifest(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "tokenizer": self.cfg.tokenizer.display().to_string(),
            "sha256": self.sha256,
            "eos_id": self.eos,
            "vocab_size": self.vocab_size,
            "engine": self.engine(),
            "engine_reason": self.fast_reason,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Document;

    #[test]
    fn vocab_lookups_equal_hf() {
        // The fast engine answers `token_to_id` and the vocab size from tokenizer.json
        // without loading HF: the answers must be HF's, for both shipped tokenizers.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for name in ["qwen2", "deepseek-v3"] {
            let path = dir.join(format!("samples/tokenizers/{name}/tokenizer.json"));
            let hf = Tokenizer::from_file(&path).unwrap();
            let json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let v = JsonVocab(&json);
            assert_eq!(v.vocab_size(), hf.get_vocab_size(true), "{name}");
            let mut probes: Vec<String> = v.added().map(|(c, _)| c.to_string()).collect();
            probes.extend(v.vocab().unwrap().keys().step_by(97).cloned());
            probes.extend(["<|endoftext|>", "</s>", "<eos>", "not a token", ""].map(String::from));
            for t in &probes {
                assert_eq!(v.token_to_id(t), hf.token_to_id(t), "{name}: {t:?}");
            }
            let eos = |t: &str| v.token_to_id(t);
            assert_eq!(
                resolve_eos(eos, &path, None).unwrap(),
                resolve_eos(|t| hf.token_to_id(t), &path, None).unwrap()
            );
        }
    }

    fn qwen2(max_unsplit_bytes: usize) -> Tokenize {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        Tokenize::new(Config {
            tokenizer: dir.join("samples/tokenizers/qwen2/tokenizer.json"),
            add_special_tokens: false,
            append_eos: false,
            eos_token: None,
            max_unsplit_bytes,
            engine: Engine::Hf,
        })
        .unwrap()
    }

    #[test]
    fn big_documents_in_pieces_get_the_ids_of_one_call() {
        let t = qwen2(1 << 20);
        assert!(t.splitter.is_some());
        let src = include_str!("../samples/text/cmrc2018_zh.jsonl");
        let mut text = String::new();
        for line in src.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            text.push_str(v["text"].as_str().unwrap());
            text.push_str("<|endoftext|>x2024年，");
        }
        assert!(text.len() > 3 * PIECE_BYTES, "{}", text.len());
        let pieces = t.splitter.as_ref().unwrap().pieces(&text).unwrap();
        assert!(pieces.len() >= 3);
        assert_eq!(pieces.concat(), text);
        let whole = t.encode_texts(vec![&text]).unwrap().pop().unwrap();
        assert_eq!(t.encode_big(&text).unwrap().unwrap(), whole);
        // No cut inside an added token.
        let s = t.splitter.as_ref().unwrap();
        let p = text.find("<|endoftext|>").unwrap() + "<|endoftext".len();
        assert!(!s.is_cut(&text, p));
    }

    #[test]
    fn auto_falls_back_to_hf_and_says_why() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let src = dir.join("samples/tokenizers/qwen2/tokenizer.json");
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(src).unwrap()).unwrap();
        json["normalizer"] = serde_json::json!({"type": "NFKC"});
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("tokenizer.json");
        std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
        let cfg = |engine| Config {
            tokenizer: path.clone(),
            add_special_tokens: false,
            append_eos: false,
            eos_token: None,
            max_unsplit_bytes: 1 << 20,
            engine,
        };
        let t = Tokenize::new(cfg(Engine::Auto)).unwrap();
        assert_eq!(t.engine(), "hf");
        let m = t.manifest().unwrap();
        assert_eq!(m["engine"], "hf");
        assert!(
            m["engine_reason"].as_str().unwrap().contains("normalizer"),
            "{m}"
        );
        let e = Tokenize::new(cfg(Engine::Fast)).err().unwrap().to_string();
        assert!(e.contains("not exact"), "{e}");
        // The shipped file itself runs fast, and says so.
        let t = qwen2(1 << 20);
        assert_eq!(t.engine(), "hf");
        let t = Tokenize::new(Config {
            tokenizer: dir.join("samples/tokenizers/qwen2/tokenizer.json"),
            ..cfg(Engine::Auto)
        })
        .unwrap();
        assert_eq!(t.manifest().unwrap()["engine"], "fast");
    }

    #[test]
    fn unsplittable_big_documents_are_rejected_too_large() {
        let t = qwen2(1 << 20);
        // 2 MiB of ideographs with no punctuation: no exact cut anywhere.
        let big = "中".repeat((2 << 20) / 3);
        let docs = vec![
            Document::new("a", "s", "你好。"),
            Document::new("b", "s", big),
        ];
        let mut em = Emitter::new(OUT_REJECTED);
        t.process(DocBatch::new(0, docs), &mut em).unwrap();
        let (ok, rej) = (em.take(0), em.take(1));
        assert_eq!(ok.len(), 1);
        assert_eq!(rej.len(), 1);
        let r = rej[0].reject.as_ref().unwrap();
        assert_eq!(r.reason, "too_large");
        assert_eq!(r.score, Some(rej[0].text.len() as f64));
    }
}
