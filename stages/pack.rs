//! `pack`: turn tokenized documents into fixed-length training sequences, then shuffle
//! the sequences globally with a seed, in bounded memory.
//!
//! Trainers want every row to hold exactly `seq_len` tokens (or `seq_len + 1`, so inputs
//! and labels are the same row shifted by one). Documents are joined with EOS (`eos_id`
//! appended after each document when `add_eos`, default), and every sequence records where
//! each document segment starts, so the trainer can reset positions and mask attention
//! across documents. A document that already ends with `eos_id` (the `tokenize` default)
//! gets no second one.
//!
//! **Strategies.**
//! * `greedy`: concatenate in arrival order and cut every `seq_len` tokens; a document may
//!   be split across sequences. Padding only in the very last sequence. Memory: one sequence.
//! * `best_fit_decreasing` (default): documents that fit in a sequence are never split.
//!   Longer ones are cut into full sequences and their remainder is packed like any other
//!   document. Packing runs over a window of `window_seqs` sequences' worth of tokens: items
//!   sorted by length (descending, ties by arrival), each placed in the open sequence with
//!   the least free room that still fits (a `BTreeSet` keyed by free room, O(log n)). After
//!   a round, sequences with at most `seq_len/128` free tokens are emitted; the items of the
//!   others go back into the next window (at most half a window's tokens are carried; beyond
//!   that the fullest open sequences are emitted). Everything is emitted at `finish`.
//!   Memory: the window (`window_seqs × seq_len` tokens).
//!
//! **Shuffle** (`shuffle: true`, default): a two-pass external shuffle. Pass 1: each finished
//! sequence goes to one of `shuffle_buckets` spill files under the node's scratch dir, the
//! bucket drawn from a SplitMix64 stream seeded by `seed`. Pass 2 (in `finish`): buckets are
//! read one at a time in order, Fisher-Yates-shuffled in memory with a per-bucket seeded
//! stream, and emitted (streamed through `Emitter::flush`). A bucket file larger than
//! `shuffle_max_bucket_bytes` is first split again the same way (recursively), so memory
//! never exceeds that bound whatever the corpus size. Every sequence lands in a uniformly
//! random bucket and each bucket is uniformly permuted, so the result is a uniform random
//! permutation, a fixed function of the input order and `seed`. Cost: every sequence is
//! written and read once more (twice for split buckets).
//!
//! * Reads: `tokens` (documents without are rejected: `no_tokens`; empty ones: `empty`),
//!   `id`, `source`.
//! * Writes one document per sequence: `id` = `<node>-r<rank>-<index>` (index in creation
//!   order, before the shuffle), `source` = node name, `text` empty, `tokens` = the
//!   sequence (padded with `pad_id` at the end), and `packed`: `doc_offsets` (start of every
//!   segment), `doc_ids` (the document id, suffixed `@<token offset>` when the segment
//!   starts inside the document, i.e. a continuation of a split document), `doc_urls`
//!   (each segment's `meta.url`, empty when none), `source_mix` (tokens per source and
//!   licence, EOS included; the licence is `meta.license` or `unknown`), `n_pad`.
//! * Stats/manifest: sequences, real and pad tokens, `padding_rate`, documents split.
//!
//! ```yaml
//! pack:
//!   kind: pack
//!   inputs: [tok]
//!   seq_len: 4096
//!   eos_id: 1                 # DeepSeek-V3 <｜end▁of▁sentence｜>
//!   strategy: best_fit_decreasing
//!   seed: 42
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::document::{DocBatch, Document, Packed};
use crate::error::{Error, Result};
use crate::stage::{
    parse_config, BuildCtx, Checks, Emitter, Kind, Node, Role, Stage, StageConfig, OUT_REJECTED,
};
use crate::stages::spill::{SpillReader, SpillWriter, SplitMix64};

/// Packing strategy.
#[derive(
    Debug, Clone, Copy, Deserialize, Serialize, schemars::JsonSchema, PartialEq, Eq, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Concatenate and cut; documents split across sequences.
    Greedy,
    /// Best-fit-decreasing bin packing; only documents longer than a sequence are split.
    #[default]
    BestFitDecreasing,
}

/// Config for `pack`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tokens per sequence. Default 4096.
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    /// Emit `seq_len + 1` tokens per sequence (inputs and labels shifted by one). Default false.
    #[serde(default)]
    pub seq_len_plus_one: bool,
    /// EOS token id joined after each document. Required (DeepSeek-V3: 1, Qwen2: 151643).
    pub eos_id: u32,
    /// Padding token id. Default: `eos_id`.
    #[serde(default)]
    pub pad_id: Option<u32>,
    /// Append `eos_id` after every document that does not already end with it (`tokenize`
    /// appends EOS by default). Default true.
    #[serde(default = "default_true")]
    pub add_eos: bool,
    /// `best_fit_decreasing` (default) or `greedy`.
    #[serde(default)]
    pub strategy: Strategy,
    /// Best-fit window, in sequences' worth of tokens. Default 512.
    #[serde(default = "default_window")]
    pub window_seqs: usize,
    /// Shuffle sequences globally (two-pass, bounded memory). Default true.
    #[serde(default = "default_true")]
    pub shuffle: bool,
    /// Shuffle seed. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Bucket files in the shuffle's first pass. Default 64.
    #[serde(default = "default_buckets")]
    pub shuffle_buckets: usize,
    /// Largest bucket file read into memory in the second pass, in bytes; larger ones are
    /// split again first. Default 268435456 (256 MiB).
    #[serde(default = "default_max_bucket")]
    pub shuffle_max_bucket_bytes: u64,
}

fn default_seq_len() -> usize {
    4096
}
fn default_true() -> bool {
    true
}
fn default_window() -> usize {
    512
}
fn default_buckets() -> usize {
    64
}
fn default_max_bucket() -> u64 {
    256 << 20
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        let mut c = Checks::new();
        c.int_range("seq_len", self.seq_len, 2, 1 << 24);
        c.at_least("window_seqs", self.window_seqs, 1);
        c.int_range("shuffle_buckets", self.shuffle_buckets, 1, 4096);
        c.at_least(
            "shuffle_max_bucket_bytes",
            self.shuffle_max_bucket_bytes,
            1 << 16,
        );
        c.into_vec()
    }
}

/// What a packed row records about a segment's document besides its id: the source and
/// licence (`source_mix` is keyed by both) and the url (`doc_urls`).
#[derive(Debug, Clone, Default)]
struct Src {
    source: String,
    license: String,
    url: String,
}

impl Src {
    fn of(doc: &Document) -> Src {
        Src {
            source: doc.source.clone(),
            license: doc
                .meta
                .get("license")
                .cloned()
                .unwrap_or_else(|| crate::stage::UNKNOWN_LICENSE.to_string()),
            url: doc.meta.get("url").cloned().unwrap_or_default(),
        }
    }
}

/// One document segment waiting to be packed.
#[derive(Debug)]
struct Seg {
    doc_id: String,
    src: Src,
    start: u32,
    tokens: Vec<u32>,
    order: u64,
}

/// A sequence under construction.
#[derive(Debug, Default)]
struct SeqBuilder {
    tokens: Vec<u32>,
    offsets: Vec<u32>,
    ids: Vec<String>,
    urls: Vec<String>,
    mix: BTreeMap<(String, String), u32>,
    segs: Vec<Seg>,
}

impl SeqBuilder {
    fn add(&mut self, doc_id: &str, src: &Src, start: u32, toks: &[u32]) {
        self.offsets.push(self.tokens.len() as u32);
        self.ids.push(if start == 0 {
            doc_id.to_string()
        } else {
            format!("{doc_id}@{start}")
        });
        self.urls.push(src.url.clone());
        *self
            .mix
            .entry((src.source.clone(), src.license.clone()))
            .or_default() += toks.len() as u32;
        self.tokens.extend_from_slice(toks);
    }
}

#[derive(Debug, Default, Clone, Serialize)]
struct Counters {
    sequences: u64,
    docs: u64,
    docs_split: u64,
    segments: u64,
    real_tokens: u64,
    pad_tokens: u64,
    spill_bytes: u64,
    max_bucket_bytes_read: u64,
    buckets_resplit: u64,
}

/// The `pack` stage.
pub struct Pack {
    cfg: Config,
    len: usize,
    pad: u32,
    node: String,
    rank: usize,
    scratch: PathBuf,
    cur: SeqBuilder,
    window: Vec<Seg>,
    window_tokens: usize,
    order: u64,
    next_seq: u64,
    assign: SplitMix64,
    buckets: Vec<Option<SpillWriter>>,
    c: Counters,
}

impl Pack {
    /// Build from a config and context (node name, rank, scratch dir).
    pub fn new(cfg: Config, ctx: &BuildCtx) -> Self {
        let len = cfg.seq_len + cfg.seq_len_plus_one as usize;
        let pad = cfg.pad_id.unwrap_or(cfg.eos_id);
        Pack {
            assign: SplitMix64::new(cfg.seed, 1),
            buckets: (0..cfg.shuffle_buckets).map(|_| None).collect(),
            len,
            pad,
            node: ctx.node.clone(),
            rank: ctx.rank,
            scratch: ctx.scratch_dir.clone(),
            cur: SeqBuilder::default(),
            window: Vec::new(),
            window_tokens: 0,
            order: 0,
            next_seq: 0,
            c: Counters::default(),
            cfg,
        }
    }

    /// Tokens per emitted sequence (`seq_len`, or `seq_len + 1`).
    pub fn sequence_len(&self) -> usize {
        self.len
    }

    fn finish_seq(&mut self, b: SeqBuilder, out: &mut Emitter) -> Result<()> {
        let mut tokens = b.tokens;
        let n_pad = self.len - tokens.len();
        tokens.resize(self.len, self.pad);
        self.c.sequences += 1;
        self.c.segments += b.offsets.len() as u64;
        self.c.real_tokens += (self.len - n_pad) as u64;
        self.c.pad_tokens += n_pad as u64;
        let doc = Document {
            id: format!("{}-r{:04}-{:010}", self.node, self.rank, self.next_seq),
            source: self.node.clone(),
            tokens: Some(tokens),
            packed: Some(Packed {
                doc_offsets: b.offsets,
                doc_ids: b.ids,
                doc_urls: b.urls,
                source_mix: b.mix,
                n_pad: n_pad as u32,
            }),
            ..Default::default()
        };
        self.next_seq += 1;
        if self.cfg.shuffle {
            let k = self.assign.below(self.buckets.len() as u64) as usize;
            if self.buckets[k].is_none() {
                self.buckets[k] = Some(SpillWriter::create(
                    self.scratch.join(format!("bucket-{k:04}.spill")),
                )?);
            }
            if let Some(w) = self.buckets[k].as_mut() {
                w.write(&doc)?;
            }
        } else {
            out.emit(doc);
        }
        Ok(())
    }

    fn push_greedy(&mut self, id: &str, src: &Src, toks: &[u32], out: &mut Emitter) -> Result<()> {
        let mut pos = 0;
        while pos < toks.len() {
            let take = (self.len - self.cur.tokens.len()).min(toks.len() - pos);
            self.cur.add(id, src, pos as u32, &toks[pos..pos + take]);
            pos += take;
            if self.cur.tokens.len() == self.len {
                let b = std::mem::take(&mut self.cur);
                self.finish_seq(b, out)?;
            }
        }
        Ok(())
    }

    fn push_bfd(
        &mut self,
        id: &str,
        src: &Src,
        mut toks: Vec<u32>,
        out: &mut Emitter,
    ) -> Result<()> {
        let mut pos = 0;
        while toks.len() - pos >= self.len {
            let mut b = SeqBuilder::default();
            b.add(id, src, pos as u32, &toks[pos..pos + self.len]);
            self.finish_seq(b, out)?;
            pos += self.len;
        }
        if pos < toks.len() {
            let rest = if pos == 0 { toks } else { toks.split_off(pos) };
            self.window_tokens += rest.len();
            self.window.push(Seg {
                doc_id: id.to_string(),
                src: src.clone(),
                start: pos as u32,
                tokens: rest,
                order: self.order,
            });
            self.order += 1;
        }
        if self.window_tokens >= self.cfg.window_seqs * self.len {
            self.pack_window(false, out)?;
        }
        Ok(())
    }

    /// Best-fit-decreasing over the window; emit full sequences, carry the rest (or, when
    /// `last`, emit everything).
    fn pack_window(&mut self, last: bool, out: &mut Emitter) -> Result<()> {
        let mut items = std::mem::take(&mut self.window);
        self.window_tokens = 0;
        items.sort_by(|a, b| {
            b.tokens
                .len()
                .cmp(&a.tokens.len())
                .then(a.order.cmp(&b.order))
        });
        let mut bins: Vec<SeqBuilder> = Vec::new();
        let mut free: BTreeSet<(usize, usize)> = BTreeSet::new();
        for it in items {
            let n = it.tokens.len();
            let slot = free.range((n, 0)..).next().copied();
            let bi = match slot {
                Some(k) => {
                    free.remove(&k);
                    k.1
                }
                None => {
                    bins.push(SeqBuilder::default());
                    bins.len() - 1
                }
            };
            let b = &mut bins[bi];
            b.tokens.extend_from_slice(&it.tokens);
            b.segs.push(it);
            let room = self.len - b.tokens.len();
            if room > 0 {
                free.insert((room, bi));
            }
        }
        // Decide which bins close now.
        let slack = self.len / 128;
        let cap = self.cfg.window_seqs * self.len / 2;
        let mut open: Vec<usize> = if last {
            Vec::new()
        } else {
            (0..bins.len())
                .filter(|&i| self.len - bins[i].tokens.len() > slack)
                .collect()
        };
        // Keep the emptiest bins open, within the carry cap.
        open.sort_by_key(|&i| (bins[i].tokens.len(), i));
        let mut carried = 0usize;
        let mut keep = vec![false; bins.len()];
        for &i in &open {
            if carried + bins[i].tokens.len() > cap {
                break;
            }
            carried += bins[i].tokens.len();
            keep[i] = true;
        }
        for (i, mut b) in bins.into_iter().enumerate() {
            let segs = std::mem::take(&mut b.segs);
            if keep[i] {
                for s in segs {
                    self.window_tokens += s.tokens.len();
                    self.window.push(s);
                }
            } else {
                let mut sb = SeqBuilder::default();
                // Within a sequence, segments go in arrival order (stable, readable).
                let mut segs = segs;
                segs.sort_by_key(|s| s.order);
                for s in &segs {
                    sb.add(&s.doc_id, &s.src, s.start, &s.tokens);
                }
                self.finish_seq(sb, out)?;
            }
        }
        Ok(())
    }

    /// Second pass of the shuffle: read, permute and emit one bucket file, splitting it
    /// first when it is too large to hold.
    fn drain_bucket(&mut self, path: PathBuf, label: String, out: &mut Emitter) -> Result<()> {
        let size = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len();
        let stream = xxhash_rust::xxh3::xxh3_64(label.as_bytes());
        if size > self.cfg.shuffle_max_bucket_bytes {
            self.c.buckets_resplit += 1;
            let k = (size / self.cfg.shuffle_max_bucket_bytes + 2) as usize;
            let mut rng = SplitMix64::new(self.cfg.seed, stream ^ 0xA5A5);
            let mut subs = Vec::with_capacity(k);
            for j in 0..k {
                subs.push(SpillWriter::create(
                    path.with_extension(format!("{j}.spill")),
                )?);
            }
            let mut r = SpillReader::open(&path)?;
            while let Some(d) = r.next_doc()? {
                let j = rng.below(k as u64) as usize;
                subs[j].write(&d)?;
            }
            drop(r);
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            let paths: Vec<PathBuf> = subs.into_iter().map(|w| w.close()).collect::<Result<_>>()?;
            for (j, p) in paths.into_iter().enumerate() {
                self.drain_bucket(p, format!("{label}.{j}"), out)?;
            }
            return Ok(());
        }
        self.c.max_bucket_bytes_read = self.c.max_bucket_bytes_read.max(size);
        let mut docs = Vec::new();
        let mut r = SpillReader::open(&path)?;
        while let Some(d) = r.next_doc()? {
            docs.push(d);
        }
        drop(r);
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        SplitMix64::new(self.cfg.seed, stream).shuffle(&mut docs);
        for (i, d) in docs.into_iter().enumerate() {
            out.emit(d);
            if i % 1024 == 1023 {
                out.flush()?;
            }
        }
        out.flush()
    }

    fn summary(&self) -> serde_json::Value {
        let total = self.c.real_tokens + self.c.pad_tokens;
        let rate = if total == 0 {
            0.0
        } else {
            self.c.pad_tokens as f64 / total as f64
        };
        serde_json::json!({
            "strategy": self.cfg.strategy,
            "seq_len": self.cfg.seq_len,
            "tokens_per_sequence": self.len,
            "eos_id": self.cfg.eos_id,
            "pad_id": self.pad,
            "sequences": self.c.sequences,
            "docs": self.c.docs,
            "docs_split": self.c.docs_split,
            "segments": self.c.segments,
            "real_tokens": self.c.real_tokens,
            "pad_tokens": self.c.pad_tokens,
            "padding_rate": rate,
            "shuffled": self.cfg.shuffle,
            "seed": self.cfg.seed,
        })
    }
}

impl Stage for Pack {
    fn accounting(&self) -> crate::stage::Accounting {
        // Documents merge into sequences; `docs` counts every one that went into a row.
        crate::stage::Accounting::Merging {
            consumed: self.c.docs,
        }
    }

    fn process(&mut self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        for mut doc in batch.docs {
            let Some(mut toks) = doc.tokens.take() else {
                out.reject(
                    doc,
                    "no_tokens",
                    None,
                    "pack needs `tokens`: put a tokenize node before it",
                );
                continue;
            };
            // `tokenize` appends EOS by default: never join with a second one.
            if self.cfg.add_eos && toks.last() != Some(&self.cfg.eos_id) {
                toks.push(self.cfg.eos_id);
            }
            if toks.is_empty() {
                out.reject(doc, "empty", Some(0.0), "document has no tokens");
                continue;
            }
            self.c.docs += 1;
            let split = match self.cfg.strategy {
                Strategy::Greedy => {
                    let start = self.cur.tokens.len();
                    start + toks.len() > self.len
                }
                Strategy::BestFitDecreasing => toks.len() > self.len,
            };
            self.c.docs_split += split as u64;
            let src = Src::of(&doc);
            match self.cfg.strategy {
                Strategy::Greedy => self.push_greedy(&doc.id, &src, &toks, out)?,
                Strategy::BestFitDecreasing => self.push_bfd(&doc.id, &src, toks, out)?,
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<()> {
        match self.cfg.strategy {
            Strategy::Greedy => {
                if !self.cur.tokens.is_empty() {
                    let b = std::mem::take(&mut self.cur);
                    self.finish_seq(b, out)?;
                }
            }
            Strategy::BestFitDecreasing => self.pack_window(true, out)?,
        }
        if self.cfg.shuffle {
            let mut paths = Vec::new();
            for (k, w) in std::mem::take(&mut self.buckets).into_iter().enumerate() {
                if let Some(w) = w {
                    self.c.spill_bytes += w.bytes;
                    paths.push((k, w.close()?));
                }
            }
            for (k, p) in paths {
                self.drain_bucket(p, format!("b{k}"), out)?;
            }
            let _ = std::fs::remove_dir(&self.scratch);
        }
        let s = self.summary();
        tracing::info!(
            node = %self.node,
            sequences = self.c.sequences,
            padding_rate = s["padding_rate"].as_f64().unwrap_or(0.0),
            "pack finished"
        );
        Ok(())
    }

    fn stats(&self) -> Option<serde_json::Value> {
        let mut s = self.summary();
        s["spill_bytes"] = self.c.spill_bytes.into();
        s["max_bucket_bytes_read"] = self.c.max_bucket_bytes_read.into();
        s["buckets_resplit"] = self.c.buckets_resplit.into();
        Some(s)
    }

    fn manifest(&self) -> Option<serde_json::Value> {
        Some(self.summary())
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "pack",
        doc: "Pack tokenized documents into fixed-length sequences (greedy or best-fit-decreasing), EOS-joined, with a seeded bounded-memory global shuffle.",
        role: Role::Stage,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Stage(Box::new(Pack::new(cfg, ctx))))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_stage_docs;

    /// Real documents: Chinese Wikipedia paragraphs and GSM8K Q&A, tokenized with the
    /// DeepSeek-V3 tokenizer.
    pub(crate) fn tokenized_corpus() -> Vec<Document> {
        let tok = tokenizers::Tokenizer::from_file("samples/tokenizers/deepseek-v3/tokenizer.json")
            .unwrap();
        let mut docs = Vec::new();
        let wiki = std::fs::read_to_string("samples/text/cmrc2018_zh.jsonl").unwrap();
        for (i, l) in wiki.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            docs.push(Document::new(
                format!("w{i}"),
                "web",
                v["text"].as_str().unwrap(),
            ));
        }
        let q = std::fs::read_to_string("samples/benchmarks/gsm8k_test.jsonl").unwrap();
        for (i, l) in q.lines().take(400).enumerate() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let t = format!(
                "Question: {}\nAnswer: {}",
                v["question"].as_str().unwrap(),
                v["answer"].as_str().unwrap()
            );
            docs.push(Document::new(format!("q{i}"), "qa", t));
        }
        // Interleave the two sources deterministically.
        docs.sort_by_key(|d| xxhash_rust::xxh3::xxh3_64(d.id.as_bytes()));
        for d in &mut docs {
            let enc = tok.encode(d.text.as_str(), false).unwrap();
            d.tokens = Some(enc.get_ids().to_vec());
        }
        docs
    }

    fn pack(params: serde_json::Value, dir: &std::path::Path) -> Pack {
        let ctx = BuildCtx::for_tests("pack", dir);
        Pack::new(parse_config(&params, &ctx).unwrap(), &ctx)
    }

    const EOS: u32 = 1;

    /// Check every invariant the trainer relies on; return real tokens (for multiset checks).
    fn check(out: &[Document], input: &[Document], len: usize, bfd: bool) {
        // Reassemble every document from its segments.
        let mut parts: BTreeMap<String, Vec<(u32, Vec<u32>)>> = BTreeMap::new();
        let mut ids = BTreeSet::new();
        for s in out {
            assert!(ids.insert(s.id.clone()), "duplicate sequence id");
            let t = s.tokens.as_ref().unwrap();
            let p = s.packed.as_ref().unwrap();
            assert_eq!(
                t.len(),
                len,
                "every sequence has exactly the configured length"
            );
            assert_eq!(p.doc_offsets.len(), p.doc_ids.len());
            assert_eq!(p.doc_offsets[0], 0);
            let real = len - p.n_pad as usize;
            assert!(t[real..].iter().all(|&x| x == EOS));
            for (i, &o) in p.doc_offsets.iter().enumerate() {
                if i > 0 {
                    assert_eq!(t[o as usize - 1], EOS, "offset {o} follows an EOS");
                    assert!(o > p.doc_offsets[i - 1]);
                }
                let end = p
                    .doc_offsets
                    .get(i + 1)
                    .map(|&x| x as usize)
                    .unwrap_or(real);
                let (id, start) = match p.doc_ids[i].split_once('@') {
                    Some((a, b)) => (a.to_string(), b.parse::<u32>().unwrap()),
                    None => (p.doc_ids[i].clone(), 0),
                };
                parts
                    .entry(id)
                    .or_default()
                    .push((start, t[o as usize..end].to_vec()));
            }
            let mix_total: u32 = p.source_mix.values().sum();
            assert_eq!(mix_total as usize, real);
        }
        assert_eq!(parts.len(), input.len(), "every document appears");
        for d in input {
            let mut segs = parts.remove(&d.id).unwrap();
            if bfd && d.tokens.as_ref().unwrap().len() < len {
                assert_eq!(segs.len(), 1, "best-fit never splits a document that fits");
            }
            segs.sort_by_key(|s| s.0);
            let mut joined = Vec::new();
            for (start, s) in segs {
                assert_eq!(start as usize, joined.len());
                joined.extend(s);
            }
            let mut want = d.tokens.clone().unwrap();
            want.push(EOS);
            assert_eq!(joined, want, "document {} reassembles exactly", d.id);
        }
    }

    #[test]
    fn both_strategies_keep_every_token_and_exact_lengths() {
        let corpus = tokenized_corpus();
        let dir = tempfile::tempdir().unwrap();
        for strategy in ["greedy", "best_fit_decreasing"] {
            for (seq_len, plus_one) in [(512, false), (4096, true), (64, false)] {
                for bs in [1, 3, 1000] {
                    let mut p = pack(
                        serde_json::json!({"seq_len": seq_len, "seq_len_plus_one": plus_one, "eos_id": EOS,
                                           "strategy": strategy, "window_seqs": 8, "shuffle": bs != 3}),
                        dir.path(),
                    );
                    let len = p.sequence_len();
                    let (out, rej) = run_stage_docs(&mut p, corpus.clone(), bs);
                    assert!(rej.is_empty());
                    check(&out, &corpus, len, strategy != "greedy");
                    let st = p.stats().unwrap();
                    assert_eq!(st["sequences"], out.len());
                    if strategy == "greedy" {
                        assert!(
                            out.iter()
                                .filter(|s| s.packed.as_ref().unwrap().n_pad > 0)
                                .count()
                                <= 1
                        );
                    }
                }
            }
        }
        assert!(
            !dir.path().join("tmp/pack").exists(),
            "scratch files are removed"
        );
    }

    #[test]
    fn best_fit_padding_under_two_percent_on_sample_corpus() {
        let corpus = tokenized_corpus();
        let dir = tempfile::tempdir().unwrap();
        let mut rates = BTreeMap::new();
        for strategy in ["greedy", "best_fit_decreasing"] {
            let mut p = pack(
                serde_json::json!({"seq_len": 4096, "eos_id": EOS, "strategy": strategy}),
                dir.path(),
            );
            let (out, _) = run_stage_docs(&mut p, corpus.clone(), 256);
            check(&out, &corpus, 4096, strategy != "greedy");
            rates.insert(
                strategy,
                p.stats().unwrap()["padding_rate"].as_f64().unwrap(),
            );
        }
        assert!(rates["best_fit_decreasing"] < 0.02, "{rates:?}");
        assert!(rates["greedy"] < 0.02, "{rates:?}");
    }

    #[test]
    fn shuffle_is_seeded_and_a_permutation() {
        let corpus = tokenized_corpus();
        let dir = tempfile::tempdir().unwrap();
        let run = |seed: u64, buckets: usize, max_bytes: u64| {
            let mut p = pack(
                serde_json::json!({"seq_len": 256, "eos_id": EOS, "seed": seed, "shuffle_buckets": buckets,
                                   "shuffle_max_bucket_bytes": max_bytes}),
                dir.path(),
            );
            let (out, _) = run_stage_docs(&mut p, corpus.clone(), 100);
            (out, p.stats().unwrap())
        };
        let (a, _) = run(1, 8, 1 << 28);
        let (b, _) = run(1, 8, 1 << 28);
        let (c, _) = run(2, 8, 1 << 28);
        assert_eq!(a, b, "same seed, identical output");
        let ids = |v: &[Document]| v.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
        assert_ne!(ids(&a), ids(&c), "different seed, different order");
        let mut sa = a.clone();
        let mut sc = c.clone();
        sa.sort_by(|x, y| x.id.cmp(&y.id));
        sc.sort_by(|x, y| x.id.cmp(&y.id));
        assert_eq!(sa, sc, "same multiset of sequences");
        // The unshuffled creation order is not what comes out.
        let mut sorted = ids(&a);
        sorted.sort();
        assert_ne!(ids(&a), sorted);
        // A tiny memory bound forces buckets to be split again: still a permutation.
        let (d, st) = run(1, 2, 1 << 16);
        assert!(st["buckets_resplit"].as_u64().unwrap() > 0);
        assert!(st["max_bucket_bytes_read"].as_u64().unwrap() <= 1 << 16);
        let mut sd = d.clone();
        sd.sort_by(|x, y| x.id.cmp(&y.id));
        assert_eq!(sa, sd);
    }

    #[test]
    fn finish_streams_through_the_flush_hook() {
        let corpus = tokenized_corpus();
        let dir = tempfile::tempdir().unwrap();
        let mut p = pack(
            serde_json::json!({"seq_len": 64, "eos_id": EOS, "shuffle_buckets": 2}),
            dir.path(),
        );
        for (i, c) in corpus.chunks(100).enumerate() {
            let mut em = Emitter::new(OUT_REJECTED);
            p.process(DocBatch::new(i as u64, c.to_vec()), &mut em)
                .unwrap();
            assert!(em.is_empty(), "shuffled output waits for finish");
        }
        let mut got = Vec::new();
        let mut largest = 0;
        {
            let mut em = Emitter::with_flush(
                OUT_REJECTED,
                Box::new(|port, docs| {
                    assert_eq!(port, 0);
                    largest = largest.max(docs.len());
                    got.extend(docs);
                    Ok(())
                }),
            );
            p.finish(&mut em).unwrap();
            assert!(em.is_empty(), "everything went through the hook");
        }
        assert!(got.len() > 1500);
        assert_eq!(p.stats().unwrap()["sequences"], got.len());
        assert!(
            largest <= 1024,
            "handed over in chunks of at most 1024, got {largest}"
        );
        check(&got, &corpus, 64, true);
    }

    #[test]
    fn a_document_already_ending_in_eos_gets_no_second_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pack(
            serde_json::json!({"seq_len": 4, "eos_id": 9, "pad_id": 0, "strategy": "greedy", "shuffle": false}),
            dir.path(),
        );
        let mut a = Document::new("a", "web", "x");
        a.tokens = Some(vec![1, 2, 9]);
        let mut b = Document::new("b", "web", "y");
        b.tokens = Some(vec![3]);
        let (out, _) = run_stage_docs(&mut p, vec![a, b], 1);
        assert_eq!(out[0].tokens.as_ref().unwrap(), &vec![1, 2, 9, 3]);
        assert_eq!(out[1].tokens.as_ref().unwrap(), &vec![9, 0, 0, 0]);
        assert_eq!(out[1].packed.as_ref().unwrap().doc_ids, vec!["b@1"]);
    }

    #[test]
    fn untokenized_and_empty_docs_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pack(
            serde_json::json!({"seq_len": 8, "eos_id": 0, "add_eos": false, "shuffle": false}),
            dir.path(),
        );
        let mut a = Document::new("a", "web", "x");
        a.tokens = Some(vec![5; 10]);
        let b = Document::new("b", "web", "y");
        let mut c = Document::new("c", "web", "");
        c.tokens = Some(vec![]);
        let (out, rej) = run_stage_docs(&mut p, vec![a, b, c], 1);
        let reasons: Vec<_> = rej
            .iter()
            .map(|d| d.reject.as_ref().unwrap().reason.as_str())
            .collect();
        assert_eq!(reasons, vec!["no_tokens", "empty"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].packed.as_ref().unwrap().doc_ids, vec!["a@8"]);
        assert_eq!(out[1].packed.as_ref().unwrap().n_pad, 6);
        assert_eq!(
            out[1].tokens.as_ref().unwrap(),
            &vec![5, 5, 0, 0, 0, 0, 0, 0]
        );
    }
}
