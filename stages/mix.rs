//! `mix`: blend several inputs (web, synthetic, code, ...) to a target mixture measured
//! in **tokens**, with per-source epoch caps, optional dedup rehydration and a seeded
//! interleaving; report the target and the achieved share of every source.
//!
//! A mixture by tokens needs totals, so the stage works in two passes:
//!
//! 1. **Spill** (`process`): every document is appended to its input's spill file under
//!    the node's scratch dir (see `stages/spill.rs`); only its token count (`u32`) and
//!    rehydration multiplicity (`u8`) stay in memory. Tokens are `tokens.len()` when the
//!    document is tokenized, else `ceil(text bytes × tokens_per_byte)`.
//! 2. **Plan** (`finish`). Let `A_s` be the tokens of source `s` (one rehydrated epoch),
//!    `w_s` its target share and `E_s` its `max_epochs`. The largest total that keeps every
//!    share exact is `T = min_s(E_s·A_s / w_s)` (or `total_tokens` if smaller); source `s`
//!    gets `t_s = w_s·T` tokens: `⌊t_s/A_s⌋` full epochs (upsampling) plus a partial epoch
//!    (downsampling) chosen by walking the source's document copies in a permutation seeded
//!    by `sample_seed` and taking each one that brings the running total closer to the target
//!    (a greedy subset sum, error below one small document).
//! 3. **Emit** (`finish`): sources are interleaved by drawing the next source with
//!    probability proportional to its remaining tokens (SplitMix64 seeded by `seed`), so
//!    every prefix of the output has about the target mixture and all sources end together.
//!    Each source streams its spill file; repeated epochs re-read it (copy `k > 0` of a
//!    document gets id `<id>#<k>`, so copies of one document are an epoch apart and ids
//!    stay unique). Output goes out through `Emitter::flush` in chunks.
//!
//! **Nothing vanishes.** A document the plan gives no copy (a downsampled source, or a
//! source the epoch cap of another one limits) leaves through `rejected` as
//! `mix_not_selected`, score = its tokens, with a detail naming what capped the mixture
//! (`capped_by` in the report: the source whose `max_epochs × tokens / share` is smallest, or
//! `total_tokens`). Copies beyond the first are reported to the runtime (`Accounting::Copies`),
//! which checks `in + copies = out + rejected`. The report gives each source's
//! `used_docs_share` and the done line of `sluice run` prints both.
//!
//! `seed` changes only the order; `sample_seed` changes which documents fill a partial
//! epoch. Same input + config ⇒ identical output.
//!
//! **Rehydration** (FineWeb-2): deduplication keeps one document per cluster, but how many
//! copies the cluster had is a quality signal. With `rehydrate`, a document of a listed
//! source counts `copies` times, looked up in `table` by `attrs["dedup.cluster_size"]`
//! (the rule with the largest `min_cluster_size` not above it; missing attribute ⇒ 1).
//!
//! **Shortfall.** When a source is empty, or `total_tokens` asks for more than the epoch
//! caps allow, the run warns and the manifest reports `shortfall` (what was missing and
//! why); an empty source's share is spread over the others. Otherwise every achieved share
//! is within 0.5 percentage points of its target (`within_tolerance`).
//!
//! * Reads: `tokens` or `text`, `attrs["dedup.cluster_size"]` (configurable). Writes: `id`
//!   of repeated copies. Manifest/stats: per source target, achieved, tokens, epochs.
//! * Memory: 5 bytes per input document (token count + multiplicity) plus 4 bytes for
//!   its planned copy count and, while planning one source, 4 bytes per rehydrated copy of
//!   that source; documents themselves live on disk (scratch spill files, deleted at the end).
//! * With several ranks each rank mixes its own split of the inputs to the same target.
//!
//! ```yaml
//! mixture:
//!   kind: mix
//!   inputs: [web, synthetic]
//!   target: {web: 0.85, synthetic: 0.15}
//!   max_epochs: {synthetic: 4}
//!   seed: 42
//!   rehydrate:
//!     sources: [web]
//!     table:
//!       - {min_cluster_size: 1, copies: 1}
//!       - {min_cluster_size: 2, copies: 2}
//!       - {min_cluster_size: 5, copies: 3}
//!       - {min_cluster_size: 20, copies: 5}
//!       - {min_cluster_size: 500, copies: 1}
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::document::{DocBatch, Document};
use crate::error::{Error, Result};
use crate::stage::{
    parse_config, BuildCtx, Emitter, Kind, Node, Role, Stage, StageConfig, OUT_REJECTED,
};
use crate::stages::spill::{SpillReader, SpillWriter, SplitMix64};

/// One rehydration rule.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RehydrateRule {
    /// Lower bound (inclusive) of the cluster size this rule applies to.
    pub min_cluster_size: u64,
    /// Copies of the document in one epoch (1..=255).
    pub copies: u8,
}

/// Rehydration settings.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rehydrate {
    /// Sources (input names) to rehydrate. Required.
    pub sources: Vec<String>,
    /// Attribute holding the cluster size. Default `dedup.cluster_size`.
    #[serde(default = "default_attr")]
    pub attr: String,
    /// Rules; the one with the largest `min_cluster_size` not above the size applies.
    pub table: Vec<RehydrateRule>,
}

fn default_attr() -> String {
    "dedup.cluster_size".into()
}

/// Config for `mix`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Target share of output tokens per input, keyed by input node name (`node`, or
    /// `node.port` for a port other than `out`). Shares must sum to 1. Required.
    pub target: BTreeMap<String, f64>,
    /// Upsampling cap per input, in epochs (may be fractional). Default 1 (no upsampling).
    #[serde(default)]
    pub max_epochs: BTreeMap<String, f64>,
    /// Total output tokens wanted; 0 (default) = as many as the shares and caps allow.
    #[serde(default)]
    pub total_tokens: u64,
    /// Token estimate per UTF-8 byte for documents without `tokens`. Default 0.25
    /// (about 4 bytes per token, close for both English and Chinese with modern BPEs).
    #[serde(default = "default_tpb")]
    pub tokens_per_byte: f64,
    /// Optional dedup rehydration. Default off.
    #[serde(default)]
    pub rehydrate: Option<Rehydrate>,
    /// Seed of the interleaving order. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Seed of which documents fill a partial epoch. Default 0.
    #[serde(default)]
    pub sample_seed: u64,
}

fn default_tpb() -> f64 {
    0.25
}

/// The key of an input as written in the config: `node` for `node` / `node.out`.
pub fn input_key(input: &str) -> String {
    input.strip_suffix(".out").unwrap_or(input).to_string()
}

impl StageConfig for Config {
    fn validate(&self, ctx: &BuildCtx) -> Vec<String> {
        let mut p = Vec::new();
        if self.target.is_empty() {
            p.push("target: at least one source is required".into());
        }
        let mut sum = 0.0;
        for (k, v) in &self.target {
            if !(*v > 0.0 && *v <= 1.0) {
                p.push(format!("target.{k}: share must be in (0, 1], got {v}"));
            }
            sum += v;
        }
        if !self.target.is_empty() && (sum - 1.0).abs() > 1e-6 {
            p.push(format!("target: shares must sum to 1, got {sum}"));
        }
        for (k, v) in &self.max_epochs {
            if !self.target.contains_key(k) {
                p.push(format!("max_epochs.{k}: not a key of `target`"));
            }
            if !(*v > 0.0 && *v <= 1000.0) {
                p.push(format!("max_epochs.{k}: must be in (0, 1000], got {v}"));
            }
        }
        if !(self.tokens_per_byte > 0.0 && self.tokens_per_byte < 10.0) {
            p.push(format!(
                "bad value: tokens_per_byte must be in (0, 10), got {}",
                self.tokens_per_byte
            ));
        }
        if let Some(r) = &self.rehydrate {
            if r.table.is_empty() {
                p.push("rehydrate.table: at least one rule is required".into());
            }
            for (i, rule) in r.table.iter().enumerate() {
                if rule.copies == 0 {
                    p.push(format!("rehydrate.table[{i}]: copies must be at least 1"));
                }
            }
            for s in &r.sources {
                if !self.target.contains_key(s) {
                    p.push(format!("rehydrate.sources: `{s}` is not a key of `target`"));
                }
            }
        }
        if !ctx.inputs.is_empty() {
            let keys: Vec<String> = ctx.inputs.iter().map(|i| input_key(i)).collect();
            for k in &keys {
                if !self.target.contains_key(k) {
                    p.push(format!("target: input `{k}` has no share"));
                }
            }
            for k in self.target.keys() {
                if !keys.contains(k) {
                    p.push(format!(
                        "target.{k}: not an input of this node (inputs: {})",
                        keys.join(", ")
                    ));
                }
            }
        }
        p
    }
}

struct Src {
    name: String,
    share: f64,
    max_epochs: f64,
    rehydrate: bool,
    path: PathBuf,
    writer: Option<SpillWriter>,
    toks: Vec<u32>,
    mult: Vec<u8>,
    counts: Vec<u32>,
    exact_docs: u64,
    // Planning and results.
    avail: u64,
    target_tokens: u64,
    effective_share: f64,
    emitted_tokens: u64,
    emitted_docs: u64,
    /// Documents given no copy (rejected `mix_not_selected`).
    unselected: u64,
}

/// The `mix` stage.
pub struct Mix {
    cfg: Config,
    node: String,
    /// Input index → source index.
    by_input: Vec<usize>,
    srcs: Vec<Src>,
    report: Option<serde_json::Value>,
    /// What limits the mixture's total (set by `plan`): a source at its epoch cap, or
    /// `total_tokens`.
    capped_by: String,
    /// Copies emitted beyond the first of each document (for the runtime's accounting).
    extra_copies: u64,
}

impl Mix {
    /// Build; `ctx.inputs` maps each batch's `input` index to a `target` key. With no
    /// inputs in the context (tools, tests), inputs are taken in `target` key order.
    pub fn new(cfg: Config, ctx: &BuildCtx) -> Result<Self> {
        let keys: Vec<String> = if ctx.inputs.is_empty() {
            cfg.target.keys().cloned().collect()
        } else {
            ctx.inputs.iter().map(|i| input_key(i)).collect()
        };
        let mut srcs = Vec::new();
        let mut by_input = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let share = *cfg
                .target
                .get(k)
                .ok_or_else(|| Error::msg(format!("mix: input `{k}` has no share in `target`")))?;
            by_input.push(srcs.len());
            srcs.push(Src {
                name: k.clone(),
                share,
                max_epochs: cfg.max_epochs.get(k).copied().unwrap_or(1.0),
                rehydrate: cfg
                    .rehydrate
                    .as_ref()
                    .is_some_and(|r| r.sources.contains(k)),
                path: ctx.scratch_dir.join(format!("input-{i:03}.spill")),
                writer: None,
                toks: Vec::new(),
                mult: Vec::new(),
                counts: Vec::new(),
                exact_docs: 0,
                avail: 0,
                target_tokens: 0,
                effective_share: 0.0,
                emitted_tokens: 0,
                emitted_docs: 0,
                unselected: 0,
            });
        }
        Ok(Mix {
            cfg,
            node: ctx.node.clone(),
            by_input,
            srcs,
            report: None,
            capped_by: String::new(),
            extra_copies: 0,
        })
    }

    fn copies(&self, doc: &Document) -> u8 {
        let Some(r) = &self.cfg.rehydrate else {
            return 1;
        };
        let Some(&size) = doc.attrs.get(&r.attr) else {
            return 1;
        };
        if !size.is_finite() || size < 0.0 {
            return 1;
        }
        let size = size as u64;
        r.table
            .iter()
            .filter(|rule| rule.min_cluster_size <= size)
            .max_by_key(|rule| rule.min_cluster_size)
            .map(|rule| rule.copies.max(1))
            .unwrap_or(1)
    }

    /// Choose copy counts for every document of every source (see the module doc).
    fn plan(&mut self) -> (u64, Vec<String>) {
        let mut shortfall = Vec::new();
        let active_share: f64 = self
            .srcs
            .iter()
            .filter(|s| s.avail > 0)
            .map(|s| s.share)
            .sum();
        for s in self.srcs.iter().filter(|s| s.avail == 0) {
            shortfall.push(format!(
                "source `{}` is empty: its {:.2}% share is spread over the others",
                s.name,
                s.share * 100.0
            ));
        }
        if active_share <= 0.0 {
            return (0, shortfall);
        }
        let mut t_max = f64::INFINITY;
        for s in self.srcs.iter_mut() {
            s.effective_share = if s.avail > 0 {
                s.share / active_share
            } else {
                0.0
            };
            if s.avail > 0 {
                let t = s.max_epochs * s.avail as f64 / s.effective_share;
                if t < t_max {
                    t_max = t;
                    self.capped_by = format!(
                        "source `{}` ({} tokens × max_epochs {} at a {:.2}% share)",
                        s.name,
                        s.avail,
                        s.max_epochs,
                        s.effective_share * 100.0
                    );
                }
            }
        }
        let mut total = t_max;
        if self.cfg.total_tokens > 0 {
            if (self.cfg.total_tokens as f64) <= t_max {
                self.capped_by = format!("total_tokens {}", self.cfg.total_tokens);
            }
            if (self.cfg.total_tokens as f64) > t_max {
                shortfall.push(format!(
                    "total_tokens {} asked, only {} possible within max_epochs at the target shares",
                    self.cfg.total_tokens, t_max.floor() as u64
                ));
            } else {
                total = self.cfg.total_tokens as f64;
            }
        }
        for s in self.srcs.iter_mut() {
            if s.avail == 0 {
                continue;
            }
            // Never above the cap (floating error must not add a document).
            let cap = (s.max_epochs * s.avail as f64).floor() as u64;
            s.target_tokens = ((s.effective_share * total).round() as u64).min(cap);
            let full = s.target_tokens / s.avail;
            let mut rest = s.target_tokens - full * s.avail;
            s.counts = s
                .mult
                .iter()
                .map(|&m| (full.min(u32::MAX as u64) as u32).saturating_mul(m as u32))
                .collect();
            if rest > 0 {
                let mut items: Vec<u32> = Vec::new();
                for (i, &m) in s.mult.iter().enumerate() {
                    for _ in 0..m {
                        items.push(i as u32);
                    }
                }
                let stream = xxhash_rust::xxh3::xxh3_64(s.name.as_bytes());
                SplitMix64::new(self.cfg.sample_seed, stream).shuffle(&mut items);
                for i in items {
                    let t = s.toks[i as usize] as u64;
                    if t <= rest {
                        rest -= t;
                        s.counts[i as usize] += 1;
                    } else if t - rest < rest {
                        rest = 0;
                        s.counts[i as usize] += 1;
                    }
                    if rest == 0 {
                        break;
                    }
                }
            }
        }
        (total.round() as u64, shortfall)
    }
}

/// Streams one source's planned copies: epoch `p` re-reads the spill file and yields the
/// documents whose planned count exceeds `p`.
struct Stream {
    src: usize,
    pass: u32,
    passes: u32,
    idx: usize,
    reader: Option<SpillReader>,
}

impl Stream {
    fn next(&mut self, s: &Src) -> Result<Option<(Document, u32)>> {
        loop {
            if self.pass >= self.passes {
                return Ok(None);
            }
            if self.reader.is_none() {
                self.reader = Some(SpillReader::open(&s.path)?);
                self.idx = 0;
            }
            let Some(r) = self.reader.as_mut() else {
                return Ok(None);
            };
            match r.next_doc()? {
                None => {
                    self.reader = None;
                    self.pass += 1;
                }
                Some(mut d) => {
                    let i = self.idx;
                    self.idx += 1;
                    let c = *s
                        .counts
                        .get(i)
                        .ok_or_else(|| Error::msg("mix: spill file longer than its index"))?;
                    if c > self.pass {
                        if self.pass > 0 {
                            d.id = format!("{}#{}", d.id, self.pass);
                        }
                        return Ok(Some((d, s.toks[i])));
                    }
                }
            }
        }
    }
}

impl Stage for Mix {
    fn accounting(&self) -> crate::stage::Accounting {
        crate::stage::Accounting::Copies {
            extra: self.extra_copies,
        }
    }

    fn process(&mut self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        let si = *self
            .by_input
            .get(batch.input)
            .ok_or_else(|| Error::msg(format!("mix: batch from unknown input {}", batch.input)))?;
        for doc in batch.docs {
            let (t, exact) = match &doc.tokens {
                Some(t) => (t.len() as u64, true),
                None => (
                    ((doc.text.len() as f64) * self.cfg.tokens_per_byte).ceil() as u64,
                    false,
                ),
            };
            if t == 0 {
                out.reject(doc, "empty", Some(0.0), "no tokens and no text");
                continue;
            }
            let m = if self.srcs[si].rehydrate {
                self.copies(&doc)
            } else {
                1
            };
            let s = &mut self.srcs[si];
            if s.writer.is_none() {
                s.writer = Some(SpillWriter::create(&s.path)?);
            }
            if let Some(w) = s.writer.as_mut() {
                w.write(&doc)?;
            }
            let t = t.min(u32::MAX as u64) as u32;
            s.toks.push(t);
            s.mult.push(m);
            s.avail += t as u64 * m as u64;
            s.exact_docs += exact as u64;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<()> {
        for s in self.srcs.iter_mut() {
            if let Some(w) = s.writer.take() {
                w.close()?;
            }
        }
        let (planned_total, shortfall) = self.plan();
        let mut streams: Vec<Stream> = Vec::new();
        let mut remaining: Vec<u64> = Vec::new();
        for (i, s) in self.srcs.iter().enumerate() {
            let passes = s.counts.iter().copied().max().unwrap_or(0);
            streams.push(Stream {
                src: i,
                pass: 0,
                passes,
                idx: 0,
                reader: None,
            });
            remaining.push(
                s.counts
                    .iter()
                    .zip(&s.toks)
                    .map(|(&c, &t)| c as u64 * t as u64)
                    .sum(),
            );
        }
        let mut rng = SplitMix64::new(self.cfg.seed, 0x006D_6978);
        let mut n = 0u64;
        loop {
            let total: u64 = remaining.iter().sum();
            if total == 0 {
                break;
            }
            let mut x = rng.below(total);
            let mut k = 0;
            while x >= remaining[k] {
                x -= remaining[k];
                k += 1;
            }
            let st = &mut streams[k];
            let src = &mut self.srcs[st.src];
            match st.next(src)? {
                Some((d, t)) => {
                    remaining[k] = remaining[k].saturating_sub(t as u64);
                    src.emitted_tokens += t as u64;
                    src.emitted_docs += 1;
                    out.emit(d);
                    n += 1;
                    if n % 1024 == 0 {
                        out.flush()?;
                    }
                }
                None => remaining[k] = 0,
            }
        }
        out.flush()?;
        // Nothing vanishes: documents the plan gave no copy leave through `rejected`.
        for s in self.srcs.iter_mut() {
            s.unselected = s.counts.iter().filter(|&&c| c == 0).count() as u64;
            self.extra_copies += s
                .counts
                .iter()
                .map(|&c| c.saturating_sub(1) as u64)
                .sum::<u64>();
            if s.unselected == 0 || !s.path.exists() {
                continue;
            }
            let detail = format!(
                "source `{}`: {} of {} documents not needed for the target mixture; capped by {}",
                s.name,
                s.unselected,
                s.toks.len(),
                self.capped_by
            );
            let mut r = SpillReader::open(&s.path)?;
            let mut i = 0usize;
            let mut k = 0u64;
            while let Some(d) = r.next_doc()? {
                if s.counts.get(i).copied().unwrap_or(0) == 0 {
                    out.reject(
                        d,
                        "mix_not_selected",
                        Some(s.toks[i] as f64),
                        detail.clone(),
                    );
                    k += 1;
                    if k % 1024 == 0 {
                        out.flush()?;
                    }
                }
                i += 1;
            }
            out.flush()?;
        }
        for s in &self.srcs {
            if s.path.exists() {
                std::fs::remove_file(&s.path).map_err(|e| Error::io(&s.path, e))?;
            }
        }
        // Report.
        let emitted: u64 = self.srcs.iter().map(|s| s.emitted_tokens).sum();
        let mut sources = BTreeMap::new();
        let mut within = true;
        for s in &self.srcs {
            let achieved = if emitted == 0 {
                0.0
            } else {
                s.emitted_tokens as f64 / emitted as f64
            };
            let err_pp = (achieved - s.share) * 100.0;
            if err_pp.abs() > 0.5 {
                within = false;
            }
            let exact = s.exact_docs as usize == s.toks.len();
            sources.insert(
                s.name.clone(),
                serde_json::json!({
                    "target_share": s.share,
                    "achieved_share": achieved,
                    "error_pp": err_pp,
                    "available_docs": s.toks.len(),
                    "available_tokens": s.avail,
                    "emitted_docs": s.emitted_docs,
                    "emitted_tokens": s.emitted_tokens,
                    "unselected_docs": s.unselected,
                    "used_docs_share": if s.toks.is_empty() { 0.0 } else { (s.toks.len() as u64 - s.unselected) as f64 / s.toks.len() as f64 },
                    "epochs": if s.avail == 0 { 0.0 } else { s.emitted_tokens as f64 / s.avail as f64 },
                    "max_epochs": s.max_epochs,
                    "rehydrated": s.rehydrate,
                    "token_count": if exact { "exact" } else if s.exact_docs == 0 { "estimated" } else { "mixed" },
                }),
            );
        }
        if !within && shortfall.is_empty() {
            tracing::warn!(node = %self.node, "mix: achieved shares miss the target by more than 0.5 pp (documents too large for the total?)");
        }
        for w in &shortfall {
            tracing::warn!(node = %self.node, "mix shortfall: {w}");
        }
        let used: Vec<String> = self
            .srcs
            .iter()
            .map(|s| {
                let n = s.toks.len() as u64;
                format!(
                    "{} {:.0}% of its documents ({} of {})",
                    s.name,
                    if n == 0 {
                        0.0
                    } else {
                        100.0 * (n - s.unselected) as f64 / n as f64
                    },
                    n - s.unselected,
                    n
                )
            })
            .collect();
        let summary = format!(
            "mixture capped by {}; used {}",
            if self.capped_by.is_empty() {
                "nothing"
            } else {
                &self.capped_by
            },
            used.join(", ")
        );
        self.report = Some(serde_json::json!({
            "summary": summary,
            "total_tokens": emitted,
            "planned_tokens": planned_total,
            "requested_tokens": self.cfg.total_tokens,
            "within_tolerance": within,
            "tolerance_pp": 0.5,
            "shortfall": shortfall,
            "capped_by": self.capped_by,
            "extra_copies": self.extra_copies,
            "seed": self.cfg.seed,
            "sample_seed": self.cfg.sample_seed,
            "sources": sources,
        }));
        Ok(())
    }

    fn stats(&self) -> Option<serde_json::Value> {
        self.report.clone()
    }

    fn manifest(&self) -> Option<serde_json::Value> {
        self.report.clone()
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "mix",
        doc: "Blend inputs to a target token mixture with epoch caps, rehydration and seeded interleaving; reports target vs achieved.",
        role: Role::Stage,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Stage(Box::new(Mix::new(cfg, ctx)?)))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::DocBatch;
    use crate::stage::Emitter;

    fn jsonl(
        path: &str,
        field: &str,
        source: &str,
        template: Option<(&str, &str)>,
    ) -> Vec<Document> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .enumerate()
            .map(|(i, l)| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let text = match template {
                    Some((a, b)) => {
                        format!("{}\n{}", v[a].as_str().unwrap(), v[b].as_str().unwrap())
                    }
                    None => v[field].as_str().unwrap().to_string(),
                };
                Document::new(format!("{source}:{i}"), source, text)
            })
            .collect()
    }

    /// web = 848 zh Wikipedia paragraphs, synthetic = 11 Alpaca-CoT records, qa = GSM8K.
    fn inputs() -> Vec<Vec<Document>> {
        vec![
            jsonl("samples/text/cmrc2018_zh.jsonl", "text", "web", None),
            jsonl(
                "samples/synthetic/alpaca_cot_zh.jsonl",
                "",
                "synthetic",
                Some(("instruction", "output")),
            ),
            jsonl(
                "samples/benchmarks/gsm8k_test.jsonl",
                "",
                "qa",
                Some(("question", "answer")),
            ),
        ]
    }

    /// Feed inputs as the runtime would: batches of `bs`, inputs interleaved.
    fn run(
        params: serde_json::Value,
        inputs: &[Vec<Document>],
        bs: usize,
    ) -> (Vec<Document>, serde_json::Value) {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = BuildCtx::for_tests("mixture", dir.path());
        ctx.inputs = ["web", "synthetic.out", "qa"][..inputs.len()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let cfg: Config = parse_config(&params, &ctx).unwrap();
        let mut m = Mix::new(cfg, &ctx).unwrap();
        let mut out = Vec::new();
        let chunks: Vec<Vec<Vec<Document>>> = inputs
            .iter()
            .map(|v| v.chunks(bs).map(|c| c.to_vec()).collect())
            .collect();
        let most = chunks.iter().map(|c| c.len()).max().unwrap();
        for j in 0..most {
            for (i, c) in chunks.iter().enumerate() {
                if let Some(docs) = c.get(j) {
                    let mut em = Emitter::new(OUT_REJECTED);
                    let mut b = DocBatch::new(j as u64, docs.clone());
                    b.input = i;
                    m.process(b, &mut em).unwrap();
                    out.extend(em.take(0));
                }
            }
        }
        assert!(out.is_empty(), "nothing leaves before the totals are known");
        let mut em = Emitter::new(OUT_REJECTED);
        m.finish(&mut em).unwrap();
        out.extend(em.take(0));
        assert!(
            !dir.path().join("tmp/mixture/input-000.spill").exists(),
            "spill files removed"
        );
        (out, m.manifest().unwrap())
    }

    fn est(d: &Document) -> u64 {
        (d.text.len() as f64 * 0.25).ceil() as u64
    }

    #[test]
    fn achieved_shares_within_half_a_point_on_sample_data() {
        let inp = inputs();
        let cases = [
            serde_json::json!({"target": {"web": 0.85, "synthetic": 0.15}, "max_epochs": {"synthetic": 4}}),
            serde_json::json!({"target": {"web": 0.6, "synthetic": 0.05, "qa": 0.35}, "max_epochs": {"synthetic": 3, "qa": 2}}),
            serde_json::json!({"target": {"web": 0.5, "synthetic": 0.1, "qa": 0.4}, "max_epochs": {"web": 2.5, "synthetic": 50, "qa": 1}}),
        ];
        for (ci, params) in cases.iter().enumerate() {
            let n = params["target"].as_object().unwrap().len();
            for bs in [1, 3, 1000] {
                let (out, rep) = run(params.clone(), &inp[..n], bs);
                assert_eq!(rep["within_tolerance"], true, "case {ci}: {rep:#}");
                assert!(rep["shortfall"].as_array().unwrap().is_empty());
                let mut per: BTreeMap<String, u64> = BTreeMap::new();
                for d in &out {
                    *per.entry(d.source.clone()).or_default() += est(d);
                }
                let total: u64 = per.values().sum();
                for (k, share) in params["target"].as_object().unwrap() {
                    let got = per[k] as f64 / total as f64;
                    assert!(
                        (got - share.as_f64().unwrap()).abs() < 0.005,
                        "case {ci} {k}: {got} vs {share}"
                    );
                    assert_eq!(rep["sources"][k]["emitted_tokens"], per[k]);
                    let epochs = rep["sources"][k]["epochs"].as_f64().unwrap();
                    let cap = params["max_epochs"]
                        .get(k)
                        .and_then(|v| v.as_f64())
                        .unwrap_or(1.0);
                    assert!(epochs <= cap + 1e-9, "{k}: {epochs} epochs > cap {cap}");
                }
                let ids: std::collections::BTreeSet<_> = out.iter().map(|d| d.id.clone()).collect();
                assert_eq!(ids.len(), out.len(), "ids stay unique across epochs");
            }
        }
    }

    #[test]
    fn upsampling_spreads_copies_an_epoch_apart() {
        let inp = inputs();
        let (out, rep) = run(
            serde_json::json!({"target": {"web": 0.85, "synthetic": 0.15}, "max_epochs": {"synthetic": 4}}),
            &inp[..2],
            64,
        );
        // Synthetic is the scarce source: all 4 epochs are used, web is downsampled.
        assert!(
            (rep["sources"]["synthetic"]["epochs"].as_f64().unwrap() - 4.0).abs() < 1e-9,
            "{rep:#}"
        );
        assert!(rep["sources"]["web"]["epochs"].as_f64().unwrap() < 1.0);
        let syn: Vec<&Document> = out.iter().filter(|d| d.source == "synthetic").collect();
        assert_eq!(syn.len(), 44);
        for k in 1..4 {
            assert_eq!(
                syn.iter()
                    .filter(|d| d.id.ends_with(&format!("#{k}")))
                    .count(),
                11
            );
        }
    }

    #[test]
    fn same_seed_identical_other_seed_reorders_same_multiset() {
        let inp = inputs();
        let p = |seed: u64| serde_json::json!({"target": {"web": 0.6, "synthetic": 0.05, "qa": 0.35}, "max_epochs": {"synthetic": 3}, "seed": seed});
        let (a, ra) = run(p(7), &inp, 50);
        let (b, rb) = run(p(7), &inp, 7);
        let (c, _) = run(p(8), &inp, 50);
        assert_eq!(
            a, b,
            "same seed gives identical output, whatever the batching"
        );
        assert_eq!(ra, rb);
        let ids = |v: &[Document]| v.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
        assert_ne!(ids(&a), ids(&c));
        let (mut sa, mut sc) = (a.clone(), c.clone());
        sa.sort_by(|x, y| x.id.cmp(&y.id));
        sc.sort_by(|x, y| x.id.cmp(&y.id));
        assert_eq!(sa, sc, "a different seed keeps the multiset");
        // sample_seed picks a different subset of the downsampled source.
        let mut q = p(7);
        q["sample_seed"] = 1.into();
        let (d, _) = run(q, &inp, 50);
        let set = |v: &[Document]| {
            v.iter()
                .map(|d| d.id.clone())
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert_ne!(set(&a), set(&d));
    }

    #[test]
    fn shortfall_is_reported_when_data_does_not_suffice() {
        let inp = inputs();
        let (_, rep) = run(
            serde_json::json!({"target": {"web": 0.85, "synthetic": 0.15}, "max_epochs": {"synthetic": 2}, "total_tokens": 10_000_000}),
            &inp[..2],
            100,
        );
        let sf = rep["shortfall"].as_array().unwrap();
        assert_eq!(sf.len(), 1, "{rep:#}");
        assert!(sf[0]
            .as_str()
            .unwrap()
            .contains("total_tokens 10000000 asked"));
        // The shares are still kept.
        assert_eq!(rep["within_tolerance"], true);
        // An empty input: reported, its share spread over the rest.
        let (out, rep) = run(
            serde_json::json!({"target": {"web": 0.5, "synthetic": 0.5}}),
            &[inp[0].clone(), vec![]],
            100,
        );
        assert_eq!(out.len(), 848);
        assert_eq!(rep["within_tolerance"], false);
        assert!(rep["shortfall"][0]
            .as_str()
            .unwrap()
            .contains("`synthetic` is empty"));
        // A reachable total_tokens is met.
        let (_, rep) = run(
            serde_json::json!({"target": {"web": 0.85, "synthetic": 0.15}, "max_epochs": {"synthetic": 4}, "total_tokens": 20000}),
            &inp[..2],
            100,
        );
        let t = rep["total_tokens"].as_u64().unwrap();
        assert!((19_500..=20_500).contains(&t), "{t}");
    }

    #[test]
    fn rehydration_upsamples_by_cluster_size() {
        let mut web = inputs()[0].clone();
        for (i, d) in web.iter_mut().enumerate() {
            d.attrs
                .insert("dedup.cluster_size".into(), [1.0, 3.0, 10.0, 1000.0][i % 4]);
        }
        let web = web[..40].to_vec();
        let (out, rep) = run(
            serde_json::json!({"target": {"web": 1.0}, "rehydrate": {"sources": ["web"], "table": [
                {"min_cluster_size": 1, "copies": 1}, {"min_cluster_size": 2, "copies": 2},
                {"min_cluster_size": 5, "copies": 5}, {"min_cluster_size": 100, "copies": 1}]}}),
            std::slice::from_ref(&web),
            10,
        );
        let count = |id: &str| {
            out.iter()
                .filter(|d| d.id == id || d.id.starts_with(&format!("{id}#")))
                .count()
        };
        assert_eq!(count("web:0"), 1);
        assert_eq!(count("web:1"), 2);
        assert_eq!(count("web:2"), 5);
        assert_eq!(count("web:3"), 1);
        assert_eq!(out.len(), 10 * (1 + 2 + 5 + 1));
        assert_eq!(rep["sources"]["web"]["rehydrated"], true);
    }

    #[test]
    fn exact_token_counts_are_used_when_tokenized() {
        let mut a = Document::new("a", "web", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        a.tokens = Some(vec![1; 3]);
        let mut b = Document::new("b", "synthetic", "y");
        b.tokens = Some(vec![1; 1]);
        let (out, rep) = run(
            serde_json::json!({"target": {"web": 0.75, "synthetic": 0.25}, "max_epochs": {"synthetic": 5}}),
            &[vec![a], vec![b]],
            1,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(rep["sources"]["web"]["token_count"], "exact");
        assert_eq!(rep["sources"]["web"]["achieved_share"], 0.75);
    }

    #[test]
    fn config_checks_against_inputs() {
        let mut ctx = BuildCtx::for_tests("m", "/tmp");
        ctx.inputs = vec!["web".into(), "syn.out".into()];
        let e = parse_config::<Config>(
            &serde_json::json!({"target": {"web": 0.8, "code": 0.1}, "max_epochs": {"x": 0}}),
            &ctx,
        )
        .unwrap_err();
        let all = e.join("\n");
        assert!(all.contains("shares must sum to 1"), "{all}");
        assert!(all.contains("input `syn` has no share"), "{all}");
        assert!(all.contains("target.code: not an input"), "{all}");
        assert!(all.contains("max_epochs.x"), "{all}");
    }
}
