//! `minhash_dedup`: online near-duplicate removal with MinHash LSH.
//!
//! Near-duplicates (the same article re-posted with a changed header, a truncated copy, a
//! page with different boilerplate) are the bulk of web duplication that exact hashing
//! misses. This stage estimates Jaccard similarity of shingle sets with MinHash, finds
//! candidate pairs with an LSH band index, verifies them, and keeps the first document of
//! every group.
//!
//! # How a document is decided (online, streaming)
//! Documents get numbers `0, 1, …` in input order. For each document:
//! 1. Shingles by language ([`signature`]): `shingle_by_lang` maps `Document.lang` to a mode
//!    (default `zh`/`ja`/`ko` → character 5-grams); other or missing languages use
//!    `shingle_default` (`auto`: chars if at least 5 % of the letters and digits are CJK,
//!    else whitespace-word 5-grams). `words` mode shingles `segment_zh`'s `Document.words`
//!    (3-grams by default) and falls back to chars when a document has no segmentation
//!    (counted in stats).
//! 2. Signature (`num_perm` seeded multiply-shift hashes) and `bands` band keys, with
//!    `bands × rows` given explicitly or derived from `threshold` by minimising the weighted
//!    false-positive + false-negative area ([`bands::optimal_params`]).
//! 3. Every band key is looked up and, if new, inserted with this document as the bucket's
//!    representative. Each earlier representative found is a candidate.
//! 4. Candidates are verified (`verify`): `signature` (default) accepts when the estimated
//!    Jaccard ≥ `threshold` **or** the estimated containment of the smaller shingle set in
//!    the larger ≥ `containment_threshold` (from the estimated Jaccard and the two set sizes,
//!    which are stored with each signature; see [`signature::estimate_containment`]);
//!    `exact` reads both shingle sets and applies the same two tests exactly; `none` accepts
//!    every LSH candidate. Containment catches what Jaccard undercounts: a copy whose tail
//!    was cut is contained in its original, and so is an original that a repost wrapped in
//!    source/editor/copyright lines.
//! 5. Any accepted candidate makes the document a duplicate: it is unioned with them and
//!    sent to `rejected` (reason `near_duplicate`). Otherwise it is kept.
//!
//! So a document's fate depends only on earlier documents; the stage never buffers the
//! corpus, and the result is a deterministic function of input order, config and `seed`
//! (signatures are computed in parallel per batch, decisions strictly in order). The rule
//! is spelled out in [`bands`] so the multi-machine mode reproduces it exactly.
//!
//! # Why these defaults (issue 16)
//! Chinese reposts (paragraphs swapped, the tail cut, 1–5 % of characters substituted,
//! 来源/责任编辑/版权 lines added) reach character-5-gram Jaccard 0.5. The old defaults
//! (threshold 0.7 → 14 × 9 bands) found 0–5 % of planted pairs at Jaccard 0.5–0.7; the
//! defaults now are `threshold: 0.5`, bands × rows derived with false negatives weighted
//! 0.9 against 0.1 (→ 32 × 4: a pair at Jaccard 0.5 is a candidate with probability 0.87,
//! at 0.6 with 0.99) and `containment_threshold: 0.8`. Verification keeps precision:
//! unrelated documents have Jaccard near 0. `auto` now picks chars once 5 % of the letters
//! and digits are CJK (it was 30 %), so a formula-heavy exam item and its copy with a few
//! Chinese source lines are shingled alike. Measured on a seeded planted dev set (two
//! seeds), English labelled pairs and speed in `docs/quality-neardup.md`.
//!
//! # Clusters, `dedup.cluster_id` and `dedup.cluster_size`
//! The union-find root of a cluster is its earliest document, always a kept one. Each
//! dropped document is charged to that root at decision time (`duplicate_of`), so kept
//! documents and their charged duplicates partition the input. A kept document gets
//! `attrs["dedup.cluster_id"]` = the low 53 bits of `xxh3_64(kept id)` (exact in an f64,
//! independent of rank/order) and `attrs["dedup.cluster_size"]` = 1 + duplicates charged
//! to it. Duplicates arrive *after* the kept document, so kept documents are held in an
//! ordered window of `cluster_size_window_docs` input documents before they are emitted:
//! the size is exact when every duplicate arrives within that window and a lower bound
//! otherwise. Duplicates charged to an already-emitted document are counted in
//! `stats.late_duplicates`, so the shortfall is measured, not hidden. Set the window to 0
//! to emit at once (every size is then 1; the duplicates are still counted in stats).
//! (A cluster bridged by a later document can hold two kept documents; each keeps its own id.)
//!
//! * Reads: `text`, `lang`, `words`. Writes: `attrs["dedup.cluster_id"]`,
//!   `attrs["dedup.cluster_size"]` on kept documents; rejected documents get
//!   `meta["duplicate_of"]`, score = estimated Jaccard with the matched document, detail
//!   `duplicate_of=<kept id> matched=<id> jaccard_est=<x>[ jaccard_exact=<y>]`.
//! * Memory (measured by `benches/minhash_memory.rs`, stated per indexed document): band
//!   index 12 bytes per distinct band key / load factor (0.58–0.875, segments grow 1.5× one
//!   at a time; or exactly 13.7 B/key pre-sized with `expected_docs`), union-find 8 B,
//!   duplicate counter 4 B, id arena 8 B + id length. With the defaults (threshold 0.5 →
//!   32 bands × 4 rows) the bench measured **586 B/doc** at 2 M synthetic documents
//!   (30.3 band keys/doc at 17.1 B/key = 518 B, + 51 B per-doc part with 28-byte ids, + the
//!   32 MiB spill buffer), which projects to **21.8–31.5 GiB for 50 M documents**
//!   (21.8 GiB pre-sized). The old defaults (0.7 → 14 × 9) measured 298 B/doc
//!   (11.2–15.5 GiB for 50 M); an explicit `bands: 14, rows: 9` still gives that. Signature
//!   records (4 B × (`num_perm` + 1): the signature and the shingle-set size) and, with
//!   `verify: exact`, shingle sets (8 B × shingles + 8 B offset) live in spill files under
//!   the node's scratch directory (24.0 GiB of disk for 50 M signature records), with only
//!   the newest 32 MiB in memory.
//!   Plus the held window of kept documents (`cluster_size_window_docs`).
//!
//! ```yaml
//! near_dups:
//!   kind: minhash_dedup
//!   inputs: [clean]
//!   threshold: 0.5          # target Jaccard (default)
//!   containment_threshold: 0.8  # or ≥ 80 % of the smaller set inside the larger (default)
//!   num_perm: 128
//!   # bands: 32             # optional: explicit bands × rows instead of derived
//!   # rows: 4
//!   shingle_by_lang: {zh: chars, ja: chars, ko: chars}
//!   shingle_default: auto   # chars when ≥ 5 % of letters/digits are CJK, else whitespace words
//!   ngram_chars: 5
//!   verify: signature       # none | signature | exact
//!   seed: 1
//! ```

pub mod bands;
pub mod dist;
pub mod signature;
pub mod store;
pub mod unionfind;

use std::collections::{BTreeMap, VecDeque};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::attrs::AttrDecl;
use crate::document::{DocBatch, Document};
use crate::error::Result;
use crate::stage::{
    parse_config, BuildCtx, Checks, Emitter, Kind, Node, Role, Stage, StageConfig, OUT_REJECTED,
};

use bands::{band_keys, optimal_params, BandIndex, LshParams};
use signature::{
    auto_tokens, distinct_count, estimate_containment, estimate_jaccard, exact_containment,
    exact_jaccard, looks_cjk, shingle_hashes, shingles, tokens, MinHasher, ShingleMode,
};
use store::SpillStore;
use unionfind::UnionFind;

/// Shingle mode for documents whose language has no entry in `shingle_by_lang`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DefaultMode {
    /// Chars when at least 5 % of the letters and digits are CJK, otherwise whitespace words.
    Auto,
    /// Always character n-grams.
    Chars,
    /// `segment_zh` words (falls back to chars when absent).
    Words,
    /// Whitespace words.
    Whitespace,
}

/// How LSH candidates are verified before a document is called a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verify {
    /// Accept every LSH candidate (fastest, most false positives).
    None,
    /// Accept when the signature-estimated Jaccard ≥ `threshold` (no extra state).
    Signature,
    /// Accept when the exact Jaccard of the shingle sets ≥ `threshold` (spills shingle sets).
    Exact,
}

/// Single-process or multi-process (phased) deduplication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One process decides online (the default; the whole input through one rank).
    Local,
    /// Multi-process phases (see [`dist`]): signatures per rank, candidate pairs per
    /// bucket, one clustering task, then each rank drops its removed documents. Same kept
    /// set as `local` for any rank count. Run with `--local-tasks N` or `sluice slurm`.
    Distributed,
}

/// Config for `minhash_dedup`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Target Jaccard similarity in (0, 1]: pairs at or above it are duplicates. Default 0.5
    /// (character 5-gram Jaccard 0.5 is where Chinese reposts with a cut tail, 1–5 %
    /// substituted characters and added source lines still lie; see docs/quality-neardup.md).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Containment test in [0, 1]: a candidate pair is also a duplicate when the smaller
    /// shingle set is at least this much contained in the larger (`|A ∩ B| / min(|A|, |B|)`,
    /// estimated from the signatures and the set sizes, or exact with `verify: exact`), as
    /// for a copy whose tail was cut or an original reposted with added lines. 0 turns the
    /// test off. Default 0.8.
    #[serde(default = "default_containment")]
    pub containment_threshold: f64,
    /// Signature length (number of hash functions). Default 128.
    #[serde(default = "default_num_perm")]
    pub num_perm: usize,
    /// Number of LSH bands. Set together with `rows`; default: derived from `threshold`.
    #[serde(default)]
    pub bands: Option<usize>,
    /// Signature values per band. Set together with `bands`; default: derived.
    #[serde(default)]
    pub rows: Option<usize>,
    /// Weight of the false-positive area when deriving bands × rows. Default 0.1: a false
    /// LSH candidate costs one signature comparison (verification rejects it), a missed one
    /// is lost for good.
    #[serde(default = "default_fp_weight")]
    pub fp_weight: f64,
    /// Weight of the false-negative area when deriving bands × rows. Default 0.9 (with the
    /// default threshold 0.5 and 128 permutations: 32 bands × 4 rows).
    #[serde(default = "default_fn_weight")]
    pub fn_weight: f64,
    /// Shingle mode per language code (`Document.lang`). Default `{zh: chars, ja: chars, ko: chars}`.
    #[serde(default = "default_by_lang")]
    pub shingle_by_lang: BTreeMap<String, ShingleMode>,
    /// Shingle mode for other or missing languages. Default `auto`.
    #[serde(default = "default_mode")]
    pub shingle_default: DefaultMode,
    /// n for character n-grams. Default 5.
    #[serde(default = "default_ngram_chars")]
    pub ngram_chars: usize,
    /// n for `segment_zh` word n-grams. Default 3.
    #[serde(default = "default_ngram_words")]
    pub ngram_words: usize,
    /// n for whitespace-word n-grams. Default 5.
    #[serde(default = "default_ngram_whitespace")]
    pub ngram_whitespace: usize,
    /// Candidate verification: `none`, `signature` or `exact`. Default `signature`.
    #[serde(default = "default_verify")]
    pub verify: Verify,
    /// Seed of every hash (shingles, permutations, band keys). Default 1.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Kept documents are held for this many following input documents so their
    /// `dedup.cluster_size` counts later duplicates. 0 emits at once. Default 10000.
    #[serde(default = "default_window")]
    pub cluster_size_window_docs: usize,
    /// Expected number of documents, to pre-size the band index (no growth, tighter
    /// memory). 0 = grow on demand. Default 0.
    #[serde(default)]
    pub expected_docs: usize,
    /// `local` (default, one process) or `distributed` (phases over many processes, same
    /// kept set; see docs/scale-out.md).
    #[serde(default = "default_mode_local")]
    pub mode: Mode,
    /// Distributed mode: number of band-hash buckets (units of the pairs phase).
    /// Default: the number of ranks.
    #[serde(default)]
    pub buckets: Option<usize>,
    /// Distributed mode: band entries (24 B each in memory) a rank buffers before it
    /// writes one sorted run per bucket. Default 4 000 000 (96 MiB).
    #[serde(default = "default_run_entries")]
    pub run_entries: usize,
}

fn default_run_entries() -> usize {
    4_000_000
}

fn default_mode_local() -> Mode {
    Mode::Local
}

fn default_threshold() -> f64 {
    0.5
}
fn default_containment() -> f64 {
    0.8
}
fn default_fp_weight() -> f64 {
    0.1
}
fn default_fn_weight() -> f64 {
    0.9
}
fn default_num_perm() -> usize {
    128
}
fn default_by_lang() -> BTreeMap<String, ShingleMode> {
    ["zh", "ja", "ko"]
        .iter()
        .map(|l| (l.to_string(), ShingleMode::Chars))
        .collect()
}
fn default_mode() -> DefaultMode {
    DefaultMode::Auto
}
fn default_ngram_chars() -> usize {
    5
}
fn default_ngram_words() -> usize {
    3
}
fn default_ngram_whitespace() -> usize {
    5
}
fn default_verify() -> Verify {
    Verify::Signature
}
fn default_seed() -> u64 {
    1
}
fn default_window() -> usize {
    10_000
}

impl Default for Config {
    fn default() -> Self {
        Config {
            threshold: default_threshold(),
            containment_threshold: default_containment(),
            num_perm: default_num_perm(),
            bands: None,
            rows: None,
            fp_weight: default_fp_weight(),
            fn_weight: default_fn_weight(),
            shingle_by_lang: default_by_lang(),
            shingle_default: default_mode(),
            ngram_chars: default_ngram_chars(),
            ngram_words: default_ngram_words(),
            ngram_whitespace: default_ngram_whitespace(),
            verify: default_verify(),
            seed: default_seed(),
            cluster_size_window_docs: default_window(),
            expected_docs: 0,
            mode: Mode::Local,
            buckets: None,
            run_entries: default_run_entries(),
        }
    }
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        let mut c = Checks::new();
        c.number("threshold", self.threshold, (0.0, true), (1.0, false));
        c.fraction("containment_threshold", self.containment_threshold);
        c.int_range("num_perm", self.num_perm, 1, 4096);
        match (self.bands, self.rows) {
            (Some(b), Some(r)) => {
                c.at_least("bands", b, 1);
                c.at_least("rows", r, 1);
                if b.saturating_mul(r) > self.num_perm {
                    c.problem(
                        "bands",
                        format!(
                            "bands × rows ({b} × {r}) must be at most \"num_perm\" ({})",
                            self.num_perm
                        ),
                    );
                }
            }
            (None, None) => {}
            (Some(_), None) => c.problem(
                "bands",
                "set both \"bands\" and \"rows\", or neither (derived from threshold)",
            ),
            (None, Some(_)) => c.problem(
                "rows",
                "set both \"bands\" and \"rows\", or neither (derived from threshold)",
            ),
        }
        c.number_at_least("fp_weight", self.fp_weight, 0.0);
        c.number_at_least("fn_weight", self.fn_weight, 0.0);
        if self.fp_weight == 0.0 && self.fn_weight == 0.0 {
            c.problem(
                "fp_weight",
                "\"fp_weight\" and \"fn_weight\" must not both be 0",
            );
        }
        c.at_least("ngram_chars", self.ngram_chars, 1);
        c.at_least("ngram_words", self.ngram_words, 1);
        c.at_least("ngram_whitespace", self.ngram_whitespace, 1);
        if self.mode == Mode::Distributed && self.verify == Verify::Exact {
            c.problem(
                "verify",
                "`verify: exact` is not supported with `mode: distributed` (use `signature` or `none`)",
            );
        }
        c.at_least_opt("buckets", self.buckets, 1);
        c.at_least("run_entries", self.run_entries, 1);
        c.into_vec()
    }
}

impl Config {
    /// The LSH parameters: explicit, or derived from the threshold.
    pub fn lsh_params(&self) -> LshParams {
        match (self.bands, self.rows) {
            (Some(bands), Some(rows)) => LshParams { bands, rows },
            _ => optimal_params(
                self.threshold,
                self.num_perm,
                self.fp_weight,
                self.fn_weight,
            ),
        }
    }

    /// The shingle mode and n for a document (before the words → chars fallback).
    pub fn mode_for(&self, doc: &Document) -> (ShingleMode, usize) {
        let mode = self.fixed_mode(doc).unwrap_or_else(|| {
            if looks_cjk(&doc.text) {
                ShingleMode::Chars
            } else {
                ShingleMode::Whitespace
            }
        });
        (mode, self.ngram(mode))
    }

    /// The shingle mode set by the document's language or a non-`auto` default; `None`
    /// when `auto` decides from the text.
    fn fixed_mode(&self, doc: &Document) -> Option<ShingleMode> {
        if let Some(m) = doc
            .lang
            .as_deref()
            .and_then(|l| self.shingle_by_lang.get(l).copied())
        {
            return Some(m);
        }
        match self.shingle_default {
            DefaultMode::Chars => Some(ShingleMode::Chars),
            DefaultMode::Words => Some(ShingleMode::Words),
            DefaultMode::Whitespace => Some(ShingleMode::Whitespace),
            DefaultMode::Auto => None,
        }
    }

    fn ngram(&self, mode: ShingleMode) -> usize {
        match mode {
            ShingleMode::Chars => self.ngram_chars,
            ShingleMode::Words => self.ngram_words,
            ShingleMode::Whitespace => self.ngram_whitespace,
        }
    }
}

/// The verdict on one LSH candidate pair. The single-process stage and the distributed
/// pairs phase both decide through [`accept`], so they accept exactly the same pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Verdict {
    /// The pair is a duplicate.
    pub(crate) accepted: bool,
    /// Accepted by the containment test alone (its Jaccard is below `threshold`).
    pub(crate) by_containment: bool,
}

/// Accept a candidate pair with Jaccard `j` and containment `c` (estimated or exact) under
/// `cfg.verify`: `none` accepts every candidate; otherwise `j ≥ threshold`, or `c ≥
/// containment_threshold` when that test is on.
pub(crate) fn accept(cfg: &Config, j: f64, c: f64) -> Verdict {
    let (accepted, by_containment) = match cfg.verify {
        Verify::None => (true, false),
        Verify::Signature | Verify::Exact => {
            if j >= cfg.threshold {
                (true, false)
            } else {
                let c_ok = cfg.containment_threshold > 0.0 && c >= cfg.containment_threshold;
                (c_ok, c_ok)
            }
        }
    };
    Verdict {
        accepted,
        by_containment,
    }
}

/// A stored sketch record is the `num_perm` signature values followed by the size of the
/// shingle set (saturated to `u32::MAX`): the size turns an estimated Jaccard into an
/// estimated containment. Written to `out` (cleared first).
pub(crate) fn sketch_record(sig: &[u32], n_shingles: usize, out: &mut Vec<u32>) {
    out.clear();
    out.extend_from_slice(sig);
    out.push(u32::try_from(n_shingles).unwrap_or(u32::MAX));
}

/// (signature, shingle-set size) of a record written by [`sketch_record`].
pub(crate) fn split_record(rec: &[u32]) -> (&[u32], u32) {
    match rec.split_last() {
        Some((&n, sig)) => (sig, n),
        None => (rec, 0),
    }
}

/// Estimated Jaccard and containment of two sketch records.
pub(crate) fn estimate_records(a: &[u32], b: &[u32]) -> (f64, f64) {
    let ((sa, na), (sb, nb)) = (split_record(a), split_record(b));
    let j = estimate_jaccard(sa, sb);
    (j, estimate_containment(j, na, nb))
}

/// Per-document output of the parallel phase.
pub(crate) struct Sketch {
    /// The sorted shingle set with `verify: exact` (it is stored and compared); empty
    /// otherwise (only its size is needed).
    pub(crate) shingles: Vec<u64>,
    /// Number of distinct shingles.
    pub(crate) n_shingles: usize,
    pub(crate) sig: Vec<u32>,
    pub(crate) keys: Vec<u64>,
    /// The shingle mode used (after the words → chars fallback).
    pub(crate) mode: ShingleMode,
    pub(crate) words_fallback: bool,
}

thread_local! {
    /// Per-thread scratch of [`sketch_doc`]: tokens, shingle hashes, the distinct-count table.
    static SCRATCH: std::cell::RefCell<(Vec<u64>, Vec<u64>, Vec<u64>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// Shingles, signature and band keys of one document (the parallel part of the decision;
/// shared by the single-process stage and the distributed signature phase).
///
/// The signature is computed on the shingle hashes in text order, repeats included: a
/// MinHash coordinate is a minimum, so it is the signature of the set. The set itself is
/// only sorted (and kept) for `verify: exact`; otherwise its size is counted by hashing.
pub(crate) fn sketch_doc(
    cfg: &Config,
    params: LshParams,
    hasher: &MinHasher,
    doc: &Document,
) -> Sketch {
    SCRATCH.with_borrow_mut(|(toks, sh, table)| {
        let mut words_fallback = false;
        let mode = match cfg.fixed_mode(doc) {
            // `auto`: decide and tokenize in one pass (same result as `mode_for`).
            None => auto_tokens(&doc.text, cfg.seed, toks),
            Some(mode) => {
                if tokens(&doc.text, doc.words.as_deref(), mode, cfg.seed, toks) {
                    mode
                } else {
                    words_fallback = true;
                    tokens(&doc.text, None, ShingleMode::Chars, cfg.seed, toks);
                    ShingleMode::Chars
                }
            }
        };
        let n = cfg.ngram(mode);
        let mut set = Vec::new();
        let n_shingles;
        let hashes: &[u64] = if cfg.verify == Verify::Exact {
            shingles(toks, n, cfg.seed, &mut set);
            n_shingles = set.len();
            &set
        } else {
            shingle_hashes(toks, n, cfg.seed, sh);
            n_shingles = distinct_count(sh, table);
            sh
        };
        let mut sig = Vec::new();
        let mut keys = Vec::new();
        if !hashes.is_empty() {
            sig = vec![0u32; cfg.num_perm];
            hasher.signature(hashes, &mut sig);
            band_keys(&sig, params, cfg.seed, &mut keys);
        }
        // Large buffers are not kept around by idle threads.
        if toks.capacity() > 1 << 20 {
            *toks = Vec::new();
            *sh = Vec::new();
            *table = Vec::new();
        }
        Sketch {
            shingles: set,
            n_shingles,
            sig,
            keys,
            mode,
            words_fallback,
        }
    })
}

/// Counters reported in `stats.json`.
#[derive(Debug, Default, Clone, Serialize)]
struct Counters {
    docs: u64,
    kept: u64,
    duplicates: u64,
    no_shingles: u64,
    words_fallback: u64,
    candidates: u64,
    candidates_rejected_by_verify: u64,
    accepted_by_containment: u64,
    late_duplicates: u64,
    by_mode: BTreeMap<String, u64>,
}

/// The `minhash_dedup` stage.
pub struct MinhashDedup {
    cfg: Config,
    params: LshParams,
    hasher: MinHasher,
    index: BandIndex,
    uf: UnionFind,
    dup_count: Vec<u32>,
    id_bytes: Vec<u8>,
    id_ends: Vec<u64>,
    sigs: SpillStore,
    shingle_store: Option<SpillStore>,
    held: VecDeque<(u64, Option<u32>, Document)>,
    seen: u64,
    counters: Counters,
    tmp_a: Vec<u32>,
    tmp_b: Vec<u32>,
    tmp_rec: Vec<u32>,
}

/// Words of memory buffer per spill store (32 MiB).
const SPILL_BUF_WORDS: usize = 8 << 20;

impl MinhashDedup {
    /// Build from a config; spill files go under `ctx.scratch_dir`.
    pub fn new(cfg: Config, ctx: &BuildCtx) -> Self {
        Self::with_spill_buffer(cfg, ctx, SPILL_BUF_WORDS)
    }

    fn with_spill_buffer(cfg: Config, ctx: &BuildCtx, buf_words: usize) -> Self {
        let params = cfg.lsh_params();
        let hasher = MinHasher::new(cfg.num_perm, cfg.seed);
        let index = BandIndex::with_capacity(cfg.expected_docs.saturating_mul(params.bands));
        let sigs = SpillStore::new(
            ctx.scratch_dir.join("signatures.u32"),
            Some(cfg.num_perm + 1),
            buf_words,
        );
        let shingle_store = (cfg.verify == Verify::Exact)
            .then(|| SpillStore::new(ctx.scratch_dir.join("shingles.u32"), None, buf_words));
        MinhashDedup {
            cfg,
            params,
            hasher,
            index,
            uf: UnionFind::new(),
            dup_count: Vec::new(),
            id_bytes: Vec::new(),
            id_ends: Vec::new(),
            sigs,
            shingle_store,
            held: VecDeque::new(),
            seen: 0,
            counters: Counters::default(),
            tmp_a: Vec::new(),
            tmp_b: Vec::new(),
            tmp_rec: Vec::new(),
        }
    }

    /// The LSH parameters in use.
    pub fn params(&self) -> LshParams {
        self.params
    }

    fn sketch(&self, doc: &Document) -> Sketch {
        sketch_doc(&self.cfg, self.params, &self.hasher, doc)
    }

    fn id_of(&self, d: u32) -> &str {
        let end = self.id_ends[d as usize] as usize;
        let start = if d == 0 {
            0
        } else {
            self.id_ends[d as usize - 1] as usize
        };
        std::str::from_utf8(&self.id_bytes[start..end]).unwrap_or("")
    }

    /// The attributes kept documents carry (both the in-process and the distributed
    /// stage): the cluster id (53 bits of the root's hash) and the cluster size.
    pub(crate) fn attr_decls() -> Vec<AttrDecl> {
        vec![
            AttrDecl::int("dedup.cluster_id"),
            AttrDecl::int("dedup.cluster_size"),
        ]
    }

    pub(crate) fn cluster_id(id: &str) -> f64 {
        (xxh3_64(id.as_bytes()) & ((1u64 << 53) - 1)) as f64
    }

    fn decide(&mut self, mut doc: Document, sk: Sketch, out: &mut Emitter) -> Result<()> {
        self.counters.docs += 1;
        if sk.words_fallback {
            self.counters.words_fallback += 1;
        }
        let ordinal = self.seen;
        self.seen += 1;
        if sk.sig.is_empty() {
            self.counters.no_shingles += 1;
            self.counters.kept += 1;
            self.held.push_back((ordinal, None, doc));
            return self.release(out, false);
        }
        let d = self.uf.push();
        self.dup_count.push(0);
        self.id_bytes.extend_from_slice(doc.id.as_bytes());
        self.id_ends.push(self.id_bytes.len() as u64);
        sketch_record(&sk.sig, sk.n_shingles, &mut self.tmp_rec);
        self.sigs.push(&self.tmp_rec)?;
        if let Some(st) = self.shingle_store.as_mut() {
            let words: Vec<u32> = sk
                .shingles
                .iter()
                .flat_map(|&x| [x as u32, (x >> 32) as u32])
                .collect();
            st.push(&words)?;
        }
        let mut cands: Vec<u32> = Vec::new();
        for &k in &sk.keys {
            if let Some(r) = self.index.get_or_insert(k, d) {
                cands.push(r);
            }
        }
        cands.sort_unstable();
        cands.dedup();
        self.counters.candidates += cands.len() as u64;
        // (jaccard_est, exact, candidate), best = highest estimate, ties → earliest.
        let mut best: Option<(f64, Option<f64>, u32)> = None;
        let mut accepted: Vec<u32> = Vec::new();
        for &r in &cands {
            self.sigs.get(r as u64, &mut self.tmp_a)?;
            let (est, est_c) = estimate_records(&self.tmp_rec, &self.tmp_a);
            let (verdict, exact) = match self.cfg.verify {
                Verify::None | Verify::Signature => (accept(&self.cfg, est, est_c), None),
                Verify::Exact => {
                    let st = self
                        .shingle_store
                        .as_ref()
                        .ok_or_else(|| crate::Error::msg("no shingle store"))?;
                    st.get(r as u64, &mut self.tmp_b)?;
                    let other: Vec<u64> = self
                        .tmp_b
                        .chunks_exact(2)
                        .map(|c| c[0] as u64 | ((c[1] as u64) << 32))
                        .collect();
                    let j = exact_jaccard(&sk.shingles, &other);
                    let c = exact_containment(&sk.shingles, &other);
                    (accept(&self.cfg, j, c), Some(j))
                }
            };
            if !verdict.accepted {
                self.counters.candidates_rejected_by_verify += 1;
                continue;
            }
            if verdict.by_containment {
                self.counters.accepted_by_containment += 1;
            }
            accepted.push(r);
            if best.is_none_or(|(b, _, _)| est > b) {
                best = Some((est, exact, r));
            }
        }
        let Some((est, exact, matched)) = best else {
            self.counters.kept += 1;
            self.held.push_back((ordinal, Some(d), doc));
            return self.release(out, false);
        };
        let mut root = d;
        for r in accepted {
            root = self.uf.union(d, r);
        }
        self.dup_count[root as usize] += 1;
        // Kept documents leave the window in number order, so the root is still held iff it
        // is at or after the first held numbered document.
        let first_held = self.held.iter().find_map(|(_, n, _)| *n);
        if first_held.is_none_or(|f| root < f) {
            self.counters.late_duplicates += 1;
        }
        self.counters.duplicates += 1;
        let kept_id = self.id_of(root).to_string();
        let mut detail = format!(
            "duplicate_of={kept_id} matched={} jaccard_est={est:.4}",
            self.id_of(matched)
        );
        if let Some(j) = exact {
            detail.push_str(&format!(" jaccard_exact={j:.4}"));
        }
        doc.meta.insert("duplicate_of".into(), kept_id);
        out.reject(doc, "near_duplicate", Some(est), detail);
        self.release(out, false)
    }

    /// Emit held kept documents that left the window (all of them when `all`).
    fn release(&mut self, out: &mut Emitter, all: bool) -> Result<()> {
        while let Some((ord, _, _)) = self.held.front() {
            if !all && self.seen - ord <= self.cfg.cluster_size_window_docs as u64 {
                break;
            }
            let Some((_, num, mut doc)) = self.held.pop_front() else {
                break;
            };
            let size = num.map_or(1, |n| 1 + self.dup_count[n as usize]);
            doc.attrs
                .insert("dedup.cluster_id".into(), Self::cluster_id(&doc.id));
            doc.attrs.insert("dedup.cluster_size".into(), size as f64);
            out.emit(doc);
        }
        Ok(())
    }

    /// Bytes of in-memory index state (band index, union-find, counters, id arena, spill
    /// buffers), excluding held documents.
    pub fn state_bytes(&self) -> usize {
        self.index.heap_bytes()
            + self.uf.heap_bytes()
            + self.dup_count.capacity() * 4
            + self.id_bytes.capacity()
            + self.id_ends.capacity() * 8
            + self.sigs.heap_bytes()
            + self.shingle_store.as_ref().map_or(0, |s| s.heap_bytes())
    }

    /// Insert a precomputed signature for a synthetic document (memory benchmark).
    #[doc(hidden)]
    pub fn insert_signature_for_bench(
        &mut self,
        id: &str,
        sig: &[u32],
        n_shingles: usize,
    ) -> Result<bool> {
        let mut keys = Vec::new();
        band_keys(sig, self.params, self.cfg.seed, &mut keys);
        let d = self.uf.push();
        self.dup_count.push(0);
        self.id_bytes.extend_from_slice(id.as_bytes());
        self.id_ends.push(self.id_bytes.len() as u64);
        sketch_record(sig, n_shingles, &mut self.tmp_rec);
        self.sigs.push(&self.tmp_rec)?;
        let mut dup = false;
        for k in keys {
            dup |= self.index.get_or_insert(k, d).is_some();
        }
        Ok(dup)
    }
}

impl Stage for MinhashDedup {
    fn attrs(&self) -> Vec<AttrDecl> {
        MinhashDedup::attr_decls()
    }

    fn process(&mut self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        let sketches: Vec<Sketch> = batch.docs.par_iter().map(|d| self.sketch(d)).collect();
        for (doc, sk) in batch.docs.into_iter().zip(sketches) {
            let key = mode_name(sk.mode);
            match self.counters.by_mode.get_mut(key) {
                Some(v) => *v += 1,
                None => {
                    self.counters.by_mode.insert(key.to_string(), 1);
                }
            }
            self.decide(doc, sk, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<()> {
        self.release(out, true)
    }

    fn stats(&self) -> Option<serde_json::Value> {
        let indexed = self.uf.len().max(1);
        Some(serde_json::json!({
            "counters": self.counters,
            "bands": self.params.bands,
            "rows": self.params.rows,
            "num_perm": self.cfg.num_perm,
            "threshold": self.cfg.threshold,
            "containment_threshold": self.cfg.containment_threshold,
            "band_keys": self.index.len(),
            "index_bytes": self.index.heap_bytes(),
            "spill_buffer_bytes": self.sigs.heap_bytes() + self.shingle_store.as_ref().map_or(0, |s| s.heap_bytes()),
            "state_bytes": self.state_bytes(),
            "state_bytes_per_doc": self.state_bytes() as f64 / indexed as f64,
            "spill_disk_bytes": self.sigs.disk_bytes() + self.shingle_store.as_ref().map_or(0, |s| s.disk_bytes()),
        }))
    }
}

fn mode_name(m: ShingleMode) -> &'static str {
    match m {
        ShingleMode::Chars => "chars",
        ShingleMode::Words => "words",
        ShingleMode::Whitespace => "whitespace",
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "minhash_dedup",
        doc: "Online near-duplicate removal: MinHash signatures, LSH bands, verification, union-find clusters.",
        role: Role::Stage,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            if cfg.mode == Mode::Distributed {
                return Ok(Node::Stage(Box::new(dist::RemoveFilter::new(cfg, ctx)?)));
            }
            Ok(Node::Stage(Box::new(MinhashDedup::new(cfg, ctx))))
        },
    }
}

#[cfg(test)]
mod tests;
