//! `pack`: turn tokenized documents into fixed-length training sequences, in one length or
//! in several length buckets, then shuffle the sequences globally with a seed, in bounded
//! memory.
//!
//! Trainers want every row to hold exactly `seq_len` tokens (or `seq_len + 1`, so inputs
//! and labels are the same row shifted by one). Documents are joined with EOS (`eos_id`
//! appended after each document when `add_eos`, default), and every sequence records where
//! each document segment starts, so the trainer can reset positions and mask attention
//! across documents. A document that already ends with `eos_id` (the `tokenize` default)
//! gets no second one.
//!
//! **Strategies** (one `seq_len`).
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
//! **Length buckets** (`buckets:` instead of `seq_len`, best-fit only). Several sequence
//! lengths in one node, e.g. 4k / 32k / 128k / 1M. Every document (EOS included) goes whole
//! to the smallest bucket it fits in, and each bucket packs best-fit-decreasing in a window
//! of its own (`window_seqs` per bucket; default `max(4, 2M tokens / seq_len)` rows). With
//! `fill: true` (default) the open rows of a bucket are topped up, best fit, with documents
//! waiting in the smaller buckets' windows before they are emitted or carried, so a 1M row
//! holding a 300k book is completed with shorter documents instead of padding. `share`
//! sets a bucket's target share of tokens: a document whose own bucket is at or above its
//! target is promoted to the first larger bucket still below its target (target and
//! achieved shares are in the stats). A document longer than the largest bucket is split
//! into segments of at most that length, each cut placed just after a paragraph break
//! (a token ending in a blank line, or two line ends), else a line end, else a sentence end
//! (`. ! ? 。！？`), searched back from the longest cut to half of it; only a stretch with
//! none of them is cut at the length (`split_boundaries` counts each kind). The boundary
//! tokens are read from `tokenizer` (the tokenizer.json `tokenize` used); without it cuts
//! fall at the length. Segments are packed like documents; a continuation segment (one that
//! does not end its document) is always the last segment of its row, so every segment but
//! a row's last still ends with EOS. Sequences carry `packed.bucket` and the
//! `parquet_shards` sink writes one shard series per bucket (`<node>-r<rank>-L<len>-…`).
//! Memory: the buckets' windows (≈ 12 M tokens, 48 MiB, for the four defaults above, plus
//! carried rows up to half of each) and one document being split (O(document)).
//!
//! **Long-document upsampling** (`upsample:`, best-fit only). Documents of at least
//! `min_tokens` tokens from the listed `sources` (default all) get `factor` copies (a
//! fractional part is drawn per document, seeded by its id). Copies are ids `<id>#u<k>`
//! (`k ≥ 1`; the original keeps its id) and are never placed in the same sequence as
//! another copy of the same document (the best-fit search skips such rows). With
//! `keep_mix: true` (default) each source pays for its extra tokens by dropping its own
//! short documents (below `min_tokens`, in arrival order, as `upsample_rebalance` rejects),
//! so every source keeps its token share while its long share grows (Fu et al. 2024); debt
//! a source could not pay (its long documents came last) is reported as `unpaid_tokens`,
//! and the stats give every source's token share in and out.
//!
//! **Related documents together** (`order:`, best-fit only; in-context-pretraining style).
//! Within each best-fit window, segments are grouped before packing: `by: site` (host of
//! `meta.url`), `url_series` (host + path without page markers: the pages of one thread or
//! article series), `meta` (one `meta` field, e.g. a thread id or title) or `minhash`
//! (union of segments sharing any LSH band of a 32-value MinHash signature over token
//! 5-grams; `rows_per_band: 2` links pairs from Jaccard ≈ 0.25, far below dedup's 0.8). A
//! group that fits in a row is one unit; a larger one is best-fit packed into row-sized
//! units first; then the units are packed best-fit-decreasing, so a row holds whole groups
//! and padding stays as low as without ordering. Rows keep group members adjacent. With
//! `order` (or `report_relatedness: true`) the stats give `relatedness`: the mean
//! estimated Jaccard (same MinHash) of neighbouring segments in a row and of random pairs
//! (each segment against one of the last 4,096 seen, seeded). Memory: 128 bytes of
//! signature per waiting segment. Related ordering works within a window, not globally.
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
//!   starts inside the document, i.e. a continuation of a split document), `doc_starts`
//!   (that token offset, 0 for a whole document), `doc_urls` (each segment's `meta.url`,
//!   empty when none), `source_mix` (tokens per source and licence, EOS included; the
//!   licence is `meta.license` or `unknown`), `n_pad`, `bucket` (row length, with `buckets`).
//! * Stats/manifest: sequences, real and pad tokens, `padding_rate`, documents split; with
//!   buckets, per bucket (`buckets`: sequences, tokens, padding, fill, share) and
//!   `split_boundaries`; with upsampling, per source (`upsample`); with `order` or
//!   `report_relatedness`, `relatedness`.
//! * Document index: every document that goes into a sequence is also written, without its
//!   tokens, to `docs_index/<node>-r<rank>-NNNNN.parquet` in the run directory (document
//!   schema; text kept for a bounded, seeded sample of 64 documents), so `sluice report` and
//!   `sluice audit` (table `docs_index`) can still describe a packed run's documents; see
//!   [`index`]. The manifest lists the files (`docs_index`).
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
//!
//! ```yaml
//! pack_long:
//!   kind: pack
//!   inputs: [tok]
//!   eos_id: 1
//!   buckets: [{seq_len: 4096}, {seq_len: 32768}, {seq_len: 131072}, {seq_len: 1048576}]
//!   tokenizer: samples/tokenizers/deepseek-v3/tokenizer.json   # paragraph/sentence cuts
//!   upsample: {min_tokens: 32768, factor: 2}
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

pub mod index;

use serde::{Deserialize, Serialize};

use crate::document::{DocBatch, Document, Packed};
use crate::error::{Error, Result};
use crate::stage::{
    check_file, parse_config, BuildCtx, Checks, Emitter, Kind, Node, Role, Stage, StageConfig,
    OUT_REJECTED,
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

/// One length bucket.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    /// Tokens per sequence in this bucket.
    pub seq_len: usize,
    /// Target share of all packed tokens (0-1); documents are promoted from smaller buckets
    /// while this bucket is below it. Default: none (documents stay in their own bucket).
    #[serde(default)]
    pub share: Option<f64>,
    /// Best-fit window of this bucket, in sequences. Default `max(4, 2097152 / seq_len)`.
    #[serde(default)]
    pub window_seqs: Option<usize>,
}

/// Long-document upsampling.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsampleConfig {
    /// Documents with at least this many tokens (EOS included) are upsampled.
    pub min_tokens: usize,
    /// Copies per long document, original included (≥ 1; a fractional part is drawn per
    /// document).
    pub factor: f64,
    /// Sources to upsample. Default: all.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Drop short documents of the same source to pay for the extra tokens, keeping every
    /// source's token share. Default true.
    #[serde(default = "default_true")]
    pub keep_mix: bool,
}

/// What makes documents related for `order`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OrderBy {
    /// Same host in `meta.url`.
    Site,
    /// Same URL series: host and path with the last path component, the query and page
    /// numbers removed (`/thread/42/page-3` and `/thread/42/page-4` are one series).
    UrlSeries,
    /// Same value of the `meta` field named by `field` (a thread id, a title).
    Meta,
    /// MinHash neighbours over token 5-gram shingles: documents sharing any LSH band of
    /// `rows_per_band` signature values (32 values; 2 rows: Jaccard ≈ 0.25 and up, far
    /// below dedup's 0.8).
    Minhash,
}

/// Related-document ordering before packing.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderConfig {
    /// `site`, `url_series`, `meta` or `minhash`.
    pub by: OrderBy,
    /// The `meta` field for `by: meta`.
    #[serde(default)]
    pub field: Option<String>,
    /// Signature values per LSH band for `by: minhash` (1-8). Default 2.
    #[serde(default = "default_rows_per_band")]
    pub rows_per_band: usize,
}

fn default_rows_per_band() -> usize {
    2
}

/// Config for `pack`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tokens per sequence. Default 4096. Not with `buckets`.
    #[serde(default)]
    pub seq_len: Option<usize>,
    /// Length buckets (instead of `seq_len`): each document goes to the smallest one it fits.
    #[serde(default)]
    pub buckets: Vec<BucketConfig>,
    /// With `buckets`: top up a bucket's open rows with documents waiting for smaller
    /// buckets. Default true.
    #[serde(default = "default_true")]
    pub fill: bool,
    /// tokenizer.json whose vocabulary gives the paragraph/line/sentence-end tokens at which
    /// a document longer than the largest bucket is split. Default: none (cut at the length).
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// Long-document upsampling. Default: none.
    #[serde(default)]
    pub upsample: Option<UpsampleConfig>,
    /// Put related documents in the same sequence (best-fit only). Default: none.
    #[serde(default)]
    pub order: Option<OrderConfig>,
    /// Report `relatedness` (mean estimated Jaccard of neighbouring segments in a row vs
    /// random pairs) even without `order`. Default false (always reported with `order`).
    #[serde(default)]
    pub report_relatedness: bool,
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

const DEFAULT_SEQ_LEN: usize = 4096;
/// Default best-fit window of a length bucket, in tokens.
const BUCKET_WINDOW_TOKENS: usize = 1 << 21;

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
        if let Some(n) = self.seq_len {
            c.int_range("seq_len", n, 2, 1 << 24);
        }
        if !self.buckets.is_empty() {
            if self.seq_len.is_some() {
                c.problem("buckets", "give either `seq_len` or `buckets`, not both");
            }
            if self.strategy != Strategy::BestFitDecreasing {
                c.problem(
                    "buckets",
                    "length buckets pack best-fit; drop `strategy: greedy`",
                );
            }
            let mut prev = 0;
            let mut shares = 0.0;
            for (i, b) in self.buckets.iter().enumerate() {
                let f = format!("buckets[{i}].seq_len");
                c.int_range(&f, b.seq_len, 2, 1 << 24);
                if b.seq_len <= prev {
                    c.problem(&f, "buckets must be listed by increasing seq_len");
                }
                prev = b.seq_len;
                c.fraction_opt(&format!("buckets[{i}].share"), b.share);
                shares += b.share.unwrap_or(0.0);
                c.at_least_opt(&format!("buckets[{i}].window_seqs"), b.window_seqs, 1);
            }
            if shares > 1.0 + 1e-9 {
                c.problem("buckets", format!("shares add up to {shares} > 1"));
            }
        }
        if let Some(u) = &self.upsample {
            c.at_least("upsample.min_tokens", u.min_tokens, 1);
            c.number("upsample.factor", u.factor, (1.0, true), (64.0, true));
            if self.strategy != Strategy::BestFitDecreasing {
                c.problem(
                    "upsample",
                    "upsampling needs best_fit_decreasing (greedy would put copies side by side)",
                );
            }
        }
        if let Some(o) = &self.order {
            c.int_range("order.rows_per_band", o.rows_per_band, 1, 8);
            if o.by == OrderBy::Meta && o.field.is_none() {
                c.problem("order.field", "`by: meta` needs the meta field to group by");
            }
            if self.strategy != Strategy::BestFitDecreasing {
                c.problem("order", "ordering needs best_fit_decreasing");
            }
        }
        if let Some(t) = &self.tokenizer {
            if let Some(p) = check_file("tokenizer", t) {
                c.problem("tokenizer", p);
            }
        }
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

/// Boundary strength of a cut after a token: none, sentence end, line end, paragraph break.
const SENTENCE: u8 = 1;
const LINE: u8 = 2;
const PARAGRAPH: u8 = 3;

/// Per token id, the boundary strength of a cut right after that token, read from the
/// decoded text of every vocabulary entry.
fn boundary_levels(path: &std::path::Path) -> Result<Vec<u8>> {
    let tok = tokenizers::Tokenizer::from_file(path)
        .map_err(|e| Error::msg(format!("cannot load tokenizer {}: {e}", path.display())))?;
    let n = tok.get_vocab_size(true);
    let mut lv = vec![0u8; n];
    for (id, l) in lv.iter_mut().enumerate() {
        let Ok(s) = tok.decode(&[id as u32], false) else {
            continue;
        };
        *l = if s.ends_with("\n\n") || s.ends_with("\n\r\n") {
            PARAGRAPH
        } else if s.ends_with('\n') {
            LINE
        } else if s
            .trim_end()
            .ends_with(['.', '!', '?', '。', '！', '？', '…'])
        {
            SENTENCE
        } else {
            0
        };
    }
    Ok(lv)
}

/// Where to cut a document of `toks` into segments of at most `max` tokens: the end of
/// every segment but the last, and the boundary kind of each cut (0 = at the length).
fn split_points(toks: &[u32], max: usize, levels: Option<&[u8]>) -> Vec<(usize, u8)> {
    let level = |i: usize| -> u8 {
        let Some(lv) = levels else { return 0 };
        let l = lv.get(toks[i] as usize).copied().unwrap_or(0);
        if l == LINE && i > 0 && lv.get(toks[i - 1] as usize).copied().unwrap_or(0) >= LINE {
            PARAGRAPH
        } else {
            l
        }
    };
    let mut cuts = Vec::new();
    let mut pos = 0;
    while toks.len() - pos > max {
        // A cut after token i ends the segment at i + 1, within (pos + max/2, pos + max].
        let lo = pos + max / 2 + 1;
        let hi = pos + max;
        let mut best = (hi, 0u8);
        for end in (lo..=hi).rev() {
            let l = level(end - 1);
            if l > best.1 {
                best = (end, l);
                if l == PARAGRAPH {
                    break;
                }
            }
        }
        cuts.push(best);
        pos = best.0;
    }
    cuts
}

/// MinHash signature length (values per segment) for `order: minhash` and `relatedness`.
const SIG: usize = 32;

/// The `SIG` (multiplier, increment) pairs of the signature's hash permutations.
fn sig_perms(seed: u64) -> Vec<(u64, u64)> {
    let mut r = SplitMix64::new(seed ^ 0x005E_ED0F_5167, 3);
    (0..SIG).map(|_| (r.next_u64() | 1, r.next_u64())).collect()
}

/// MinHash signature of a token sequence over its 5-token shingles (the whole sequence as
/// one shingle when shorter).
fn signature(toks: &[u32], perms: &[(u64, u64)]) -> Vec<u32> {
    let mut sig = vec![u32::MAX; perms.len()];
    let k = toks.len().clamp(1, 5);
    for w in toks.windows(k) {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for &t in w {
            h = (h ^ t as u64).wrapping_mul(0x100_0000_01b3);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        for (v, &(a, b)) in sig.iter_mut().zip(perms) {
            *v = (*v).min((a.wrapping_mul(h).wrapping_add(b) >> 32) as u32);
        }
    }
    sig
}

/// Estimated Jaccard similarity of two signatures (share of equal values).
fn jaccard(a: &[u32], b: &[u32]) -> f64 {
    if a.is_empty() || a.len() != b.len() {
        return 0.0;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

/// Host of a URL, lowercased, without scheme, port, user and a leading `www.`.
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    host.strip_prefix("www.")
        .map(str::to_string)
        .unwrap_or(host)
}

/// A URL's series: host and path without page markers (a last path component such as
/// `page-3`, `p2`, `3.html` after another component that is a number, or query parameters
/// `page`, `p`, `pg`, `start`, `offset`), the fragment dropped.
fn url_series(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split('#').next().unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = path.split_once('/').map_or("", |(_, p)| p);
    let is_page = |c: &str| {
        let c = c.to_ascii_lowercase();
        let c = c.trim_end_matches(".html").trim_end_matches(".htm");
        let c = c
            .strip_prefix("page")
            .or_else(|| c.strip_prefix('p'))
            .unwrap_or(c);
        let c = c.trim_start_matches(['-', '_']);
        !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit())
    };
    let mut comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if let Some(last) = comps.last() {
        let numeric = last.bytes().all(|b| b.is_ascii_digit());
        let prev_numeric =
            comps.len() >= 2 && comps[comps.len() - 2].bytes().all(|b| b.is_ascii_digit());
        if (is_page(last) && !numeric) || (numeric && prev_numeric) {
            comps.pop();
        }
    }
    let mut q: Vec<&str> = query
        .split('&')
        .filter(|kv| {
            let k = kv.split('=').next().unwrap_or("").to_ascii_lowercase();
            !kv.is_empty() && !["page", "p", "pg", "start", "offset"].contains(&k.as_str())
        })
        .collect();
    q.sort_unstable();
    format!("{}/{}?{}", url_host(url), comps.join("/"), q.join("&"))
}

/// Mean estimated Jaccard of neighbouring segments in a row against random pairs.
#[derive(Debug, Default)]
struct Relatedness {
    neighbour_sum: f64,
    neighbour_pairs: u64,
    random_sum: f64,
    random_pairs: u64,
    /// Recent signatures, the random partners.
    ring: Vec<Vec<u32>>,
    ring_pos: usize,
}

impl Relatedness {
    const RING: usize = 4096;

    fn row(&mut self, segs: &[Seg], rng: &mut SplitMix64) {
        for w in segs.windows(2) {
            if !w[0].sig.is_empty() && !w[1].sig.is_empty() {
                self.neighbour_sum += jaccard(&w[0].sig, &w[1].sig);
                self.neighbour_pairs += 1;
            }
        }
        for s in segs.iter().filter(|s| !s.sig.is_empty()) {
            if !self.ring.is_empty() {
                let k = rng.below(self.ring.len() as u64) as usize;
                self.random_sum += jaccard(&s.sig, &self.ring[k]);
                self.random_pairs += 1;
            }
            if self.ring.len() < Self::RING {
                self.ring.push(s.sig.clone());
            } else {
                self.ring[self.ring_pos] = s.sig.clone();
                self.ring_pos = (self.ring_pos + 1) % Self::RING;
            }
        }
    }

    fn report(&self) -> serde_json::Value {
        let mean = |s: f64, n: u64| if n == 0 { 0.0 } else { s / n as f64 };
        serde_json::json!({
            "neighbour_pairs": self.neighbour_pairs,
            "neighbour_jaccard": mean(self.neighbour_sum, self.neighbour_pairs),
            "random_pairs": self.random_pairs,
            "random_jaccard": mean(self.random_sum, self.random_pairs),
        })
    }
}

/// One document segment waiting to be packed.
#[derive(Debug)]
struct Seg {
    doc_id: String,
    src: Src,
    /// Token offset of the segment in its document.
    start: u64,
    tokens: Vec<u32>,
    order: u64,
    /// The bucket the segment was assigned to.
    home: usize,
    /// Upsampling copy number (0 = the original).
    copy: u32,
    /// The document has several copies in play: never two of them in one sequence.
    dup: bool,
    /// The segment ends its document (a continuation segment goes last in its row).
    ends_doc: bool,
    /// Relatedness group key (`order` by site/series/meta; 0 = none).
    key: u64,
    /// MinHash signature of the segment's tokens (empty unless needed).
    sig: Vec<u32>,
}

/// A sequence under construction.
#[derive(Debug, Default)]
struct SeqBuilder {
    tokens: Vec<u32>,
    offsets: Vec<u32>,
    ids: Vec<String>,
    starts: Vec<u64>,
    urls: Vec<String>,
    mix: BTreeMap<(String, String), u32>,
}

impl SeqBuilder {
    fn add(&mut self, doc_id: &str, copy: u32, src: &Src, start: u64, toks: &[u32]) {
        self.offsets.push(self.tokens.len() as u32);
        let base = if copy == 0 {
            doc_id.to_string()
        } else {
            format!("{doc_id}#u{copy}")
        };
        self.ids.push(if start == 0 {
            base
        } else {
            format!("{base}@{start}")
        });
        self.starts.push(start);
        self.urls.push(src.url.clone());
        *self
            .mix
            .entry((src.source.clone(), src.license.clone()))
            .or_default() += toks.len() as u32;
        self.tokens.extend_from_slice(toks);
    }
}

/// A row being planned in a best-fit round.
#[derive(Debug, Default)]
struct Bin {
    used: usize,
    segs: Vec<Seg>,
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

#[derive(Debug, Default, Clone, Serialize)]
struct BucketCounters {
    sequences: u64,
    segments: u64,
    real_tokens: u64,
    pad_tokens: u64,
    /// Tokens assigned to this bucket (their own or promoted).
    assigned_tokens: u64,
    /// Tokens promoted here from a smaller bucket by `share`.
    promoted_tokens: u64,
    /// Tokens that topped up this bucket's rows from a smaller bucket's window (`fill`).
    fill_tokens: u64,
}

/// One length bucket's packing state.
#[derive(Debug)]
struct Bucket {
    seq_len: usize,
    /// Tokens per row (`seq_len`, or `seq_len + 1`).
    len: usize,
    share: Option<f64>,
    /// Window size in tokens.
    window_cap: usize,
    window: Vec<Seg>,
    window_tokens: usize,
    c: BucketCounters,
}

/// Per-source upsampling figures.
#[derive(Debug, Default, Clone, Serialize)]
struct SourceUp {
    docs_in: u64,
    tokens_in: u64,
    long_docs: u64,
    long_tokens_in: u64,
    copies: u64,
    copy_tokens: u64,
    dropped_docs: u64,
    dropped_tokens: u64,
    unpaid_tokens: u64,
}

/// The `pack` stage.
pub struct Pack {
    cfg: Config,
    pad: u32,
    node: String,
    rank: usize,
    scratch: PathBuf,
    cur: SeqBuilder,
    /// Length buckets, by increasing length (one for a plain `seq_len`).
    lens: Vec<Bucket>,
    bucketed: bool,
    levels: Option<Vec<u8>>,
    split_kinds: [u64; 4],
    assigned_total: u64,
    up: BTreeMap<String, SourceUp>,
    /// Signature permutations when signatures are needed (`order: minhash`, relatedness).
    perms: Option<Vec<(u64, u64)>>,
    /// Relatedness key of the document being pushed.
    doc_key: u64,
    rel: Option<Relatedness>,
    rel_rng: SplitMix64,
    order: u64,
    next_seq: u64,
    assign: SplitMix64,
    buckets: Vec<Option<SpillWriter>>,
    c: Counters,
    /// Documents as they go in, for audits (`docs_index/`).
    index: index::DocIndex,
    /// Files of the document index, once finished.
    index_files: Vec<String>,
}

impl Pack {
    /// Build from a config and context (node name, rank, scratch dir). Loads `tokenizer`
    /// (for split boundaries) when given.
    pub fn try_new(cfg: Config, ctx: &BuildCtx) -> Result<Self> {
        let levels = match &cfg.tokenizer {
            Some(p) => Some(boundary_levels(p)?),
            None => None,
        };
        let mut p = Pack::new(cfg, ctx);
        p.levels = levels;
        Ok(p)
    }

    /// Build from a config and context (node name, rank, scratch dir), without loading a
    /// tokenizer (cuts of over-long documents then fall at the length).
    pub fn new(cfg: Config, ctx: &BuildCtx) -> Self {
        let plus = cfg.seq_len_plus_one as usize;
        let pad = cfg.pad_id.unwrap_or(cfg.eos_id);
        let bucketed = !cfg.buckets.is_empty();
        let lens = if bucketed {
            cfg.buckets
                .iter()
                .map(|b| {
                    let len = b.seq_len + plus;
                    let seqs = b
                        .window_seqs
                        .unwrap_or((BUCKET_WINDOW_TOKENS / b.seq_len).max(4));
                    Bucket::new(b.seq_len, len, b.share, seqs * len)
                })
                .collect()
        } else {
            let seq_len = cfg.seq_len.unwrap_or(DEFAULT_SEQ_LEN);
            let len = seq_len + plus;
            vec![Bucket::new(seq_len, len, None, cfg.window_seqs * len)]
        };
        Pack {
            assign: SplitMix64::new(cfg.seed, 1),
            buckets: (0..cfg.shuffle_buckets).map(|_| None).collect(),
            pad,
            node: ctx.node.clone(),
            rank: ctx.rank,
            scratch: ctx.scratch_dir.clone(),
            cur: SeqBuilder::default(),
            lens,
            bucketed,
            levels: None,
            split_kinds: [0; 4],
            assigned_total: 0,
            up: BTreeMap::new(),
            perms: (cfg.report_relatedness || cfg.order.is_some()).then(|| sig_perms(cfg.seed)),
            doc_key: 0,
            rel: (cfg.report_relatedness || cfg.order.is_some()).then(Relatedness::default),
            rel_rng: SplitMix64::new(cfg.seed, 0x4E1A),
            order: 0,
            next_seq: 0,
            c: Counters::default(),
            index: index::DocIndex::new(ctx.out_dir.clone(), &ctx.node, ctx.rank, cfg.seed),
            index_files: Vec::new(),
            cfg,
        }
    }

    /// Tokens per emitted sequence (`seq_len`, or `seq_len + 1`; the largest bucket's).
    pub fn sequence_len(&self) -> usize {
        self.lens.last().map_or(0, |b| b.len)
    }

    fn finish_seq(&mut self, bi: usize, b: SeqBuilder, out: &mut Emitter) -> Result<()> {
        let len = self.lens[bi].len;
        let mut tokens = b.tokens;
        let n_pad = len - tokens.len();
        tokens.resize(len, self.pad);
        self.c.sequences += 1;
        self.c.segments += b.offsets.len() as u64;
        self.c.real_tokens += (len - n_pad) as u64;
        self.c.pad_tokens += n_pad as u64;
        let bc = &mut self.lens[bi].c;
        bc.sequences += 1;
        bc.segments += b.offsets.len() as u64;
        bc.real_tokens += (len - n_pad) as u64;
        bc.pad_tokens += n_pad as u64;
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
                doc_starts: b.starts,
                bucket: self.bucketed.then_some(len as u32),
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
        let len = self.lens[0].len;
        let mut pos = 0;
        while pos < toks.len() {
            let take = (len - self.cur.tokens.len()).min(toks.len() - pos);
            self.cur.add(id, 0, src, pos as u64, &toks[pos..pos + take]);
            pos += take;
            if self.cur.tokens.len() == len {
                let b = std::mem::take(&mut self.cur);
                self.finish_seq(0, b, out)?;
            }
        }
        Ok(())
    }

    /// Queue one segment in bucket `bi`'s window (packing the window when full).
    #[allow(clippy::too_many_arguments)]
    fn queue(
        &mut self,
        bi: usize,
        id: &str,
        src: &Src,
        start: u64,
        tokens: Vec<u32>,
        copy: u32,
        dup: bool,
        ends_doc: bool,
        out: &mut Emitter,
    ) -> Result<()> {
        let sig = self
            .perms
            .as_ref()
            .map_or_else(Vec::new, |p| signature(&tokens, p));
        let key = self.doc_key;
        let b = &mut self.lens[bi];
        b.window_tokens += tokens.len();
        b.window.push(Seg {
            doc_id: id.to_string(),
            src: src.clone(),
            start,
            tokens,
            order: self.order,
            home: bi,
            copy,
            dup,
            ends_doc,
            key,
            sig,
        });
        self.order += 1;
        if b.window_tokens >= b.window_cap {
            self.pack_window(bi, false, out)?;
        }
        Ok(())
    }

    /// One plain `seq_len`: full rows of a long document are emitted at once, the rest is
    /// queued for best fit.
    fn push_bfd(
        &mut self,
        id: &str,
        src: &Src,
        mut toks: Vec<u32>,
        copy: u32,
        dup: bool,
        out: &mut Emitter,
    ) -> Result<()> {
        let len = self.lens[0].len;
        let mut pos = 0;
        while toks.len() - pos >= len {
            let mut b = SeqBuilder::default();
            b.add(id, copy, src, pos as u64, &toks[pos..pos + len]);
            self.finish_seq(0, b, out)?;
            pos += len;
        }
        if pos < toks.len() {
            let rest = if pos == 0 { toks } else { toks.split_off(pos) };
            self.queue(0, id, src, pos as u64, rest, copy, dup, true, out)?;
        }
        Ok(())
    }

    /// The bucket for a segment of `n` tokens: the smallest that holds it, or a larger one
    /// still below its `share`.
    fn pick_bucket(&mut self, n: usize) -> usize {
        let own = self
            .lens
            .iter()
            .position(|b| b.len >= n)
            .unwrap_or(self.lens.len() - 1);
        self.assigned_total += n as u64;
        let total = self.assigned_total as f64;
        let below = |b: &Bucket| {
            b.share
                .is_some_and(|s| (b.c.assigned_tokens as f64) < s * total)
        };
        let own_full = self.lens[own].share.is_none_or(|_| !below(&self.lens[own]));
        let bi = if own_full {
            (own + 1..self.lens.len())
                .find(|&j| below(&self.lens[j]))
                .unwrap_or(own)
        } else {
            own
        };
        self.lens[bi].c.assigned_tokens += n as u64;
        if bi != own {
            self.lens[bi].c.promoted_tokens += n as u64;
        }
        bi
    }

    /// Length buckets: split a document longer than the largest bucket at boundaries, and
    /// queue every segment in its bucket.
    fn push_bucketed(
        &mut self,
        id: &str,
        src: &Src,
        mut toks: Vec<u32>,
        copy: u32,
        dup: bool,
        out: &mut Emitter,
    ) -> Result<()> {
        let max = self.sequence_len();
        let cuts = split_points(&toks, max, self.levels.as_deref());
        if cuts.is_empty() {
            let bi = self.pick_bucket(toks.len());
            return self.queue(bi, id, src, 0, toks, copy, dup, true, out);
        }
        if copy == 0 {
            for &(_, kind) in &cuts {
                self.split_kinds[kind as usize] += 1;
            }
        }
        // Cut from the back, so each `split_off` is the segment after a cut.
        let mut segs = Vec::with_capacity(cuts.len() + 1);
        for &(end, _) in cuts.iter().rev() {
            segs.push((end as u64, toks.split_off(end)));
        }
        segs.push((0, toks));
        segs.reverse();
        let n = segs.len();
        for (k, (start, seg)) in segs.into_iter().enumerate() {
            let bi = self.pick_bucket(seg.len());
            self.queue(bi, id, src, start, seg, copy, dup, k + 1 == n, out)?;
        }
        Ok(())
    }

    /// Best-fit slot for a unit of `n` tokens among the open bins: the least room that still
    /// fits, skipping bins that hold another copy of a document in the unit.
    fn slot(
        free: &BTreeSet<(usize, usize)>,
        bins: &[Bin],
        unit: &[Seg],
        n: usize,
    ) -> Option<(usize, usize)> {
        free.range((n, 0)..)
            .find(|&&(_, i)| {
                unit.iter().all(|it| {
                    !it.dup || !bins[i].segs.iter().any(|s| s.dup && s.doc_id == it.doc_id)
                })
            })
            .copied()
    }

    /// `order`: group the window's segments into units of related segments (same key, or
    /// MinHash LSH neighbours), each unit at most `len` tokens (a larger group is cut in
    /// arrival order); unrelated segments are units of one.
    fn units(&self, items: Vec<Seg>, len: usize) -> Vec<Vec<Seg>> {
        let Some(o) = &self.cfg.order else {
            return items.into_iter().map(|s| vec![s]).collect();
        };
        let n = items.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], mut i: usize) -> usize {
            while p[i] != i {
                p[i] = p[p[i]];
                i = p[i];
            }
            i
        }
        let mut seen: std::collections::HashMap<(usize, u64), usize> =
            std::collections::HashMap::new();
        for (i, it) in items.iter().enumerate() {
            let keys: Vec<(usize, u64)> = if o.by == OrderBy::Minhash {
                let r = o.rows_per_band;
                it.sig
                    .chunks_exact(r)
                    .enumerate()
                    .map(|(b, band)| {
                        let mut h = 0xcbf2_9ce4_8422_2325u64;
                        for &v in band {
                            h = (h ^ v as u64).wrapping_mul(0x100_0000_01b3);
                        }
                        (b, h)
                    })
                    .collect()
            } else if it.key != 0 {
                vec![(0, it.key)]
            } else {
                Vec::new()
            };
            for k in keys {
                match seen.entry(k) {
                    std::collections::hash_map::Entry::Occupied(e) => {
                        let (x, y) = (find(&mut parent, i), find(&mut parent, *e.get()));
                        if x != y {
                            parent[x.max(y)] = x.min(y);
                        }
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(i);
                    }
                }
            }
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..n {
            let r = find(&mut parent, i);
            groups.entry(r).or_default().push(i);
        }
        let mut slots: Vec<Option<Seg>> = items.into_iter().map(Some).collect();
        let mut units = Vec::new();
        for (_, members) in groups {
            let mut segs: Vec<Seg> = members
                .into_iter()
                .filter_map(|i| slots[i].take())
                .collect();
            let total: usize = segs.iter().map(|s| s.tokens.len()).sum();
            if total <= len && !segs.iter().any(|s| s.dup) {
                segs.sort_by_key(|s| s.order);
                units.push(segs);
                continue;
            }
            // A group larger than a row: best-fit-decreasing inside the group, so its
            // units come out nearly full (two copies of a document never share one).
            segs.sort_by(|a, b| {
                b.tokens
                    .len()
                    .cmp(&a.tokens.len())
                    .then(a.order.cmp(&b.order))
            });
            let mut gbins: Vec<Bin> = Vec::new();
            let mut gfree: BTreeSet<(usize, usize)> = BTreeSet::new();
            for sg in segs {
                let n = sg.tokens.len();
                let i = match Self::slot(&gfree, &gbins, std::slice::from_ref(&sg), n) {
                    Some(k) => {
                        gfree.remove(&k);
                        k.1
                    }
                    None => {
                        gbins.push(Bin::default());
                        gbins.len() - 1
                    }
                };
                gbins[i].used += n;
                gbins[i].segs.push(sg);
                if gbins[i].used < len {
                    gfree.insert((len - gbins[i].used, i));
                }
            }
            for mut b in gbins {
                b.segs.sort_by_key(|s| s.order);
                units.push(b.segs);
            }
        }
        units
    }

    /// Best-fit-decreasing over bucket `bi`'s window (topped up from the smaller buckets'
    /// windows with `fill`); emit full sequences, carry the rest (or, when `last`, emit
    /// everything).
    fn pack_window(&mut self, bi: usize, last: bool, out: &mut Emitter) -> Result<()> {
        let len = self.lens[bi].len;
        let items = std::mem::take(&mut self.lens[bi].window);
        self.lens[bi].window_tokens = 0;
        let ulen = |u: &[Seg]| u.iter().map(|s| s.tokens.len()).sum::<usize>();
        let mut units = self.units(items, len);
        units.sort_by(|a, b| ulen(b).cmp(&ulen(a)).then(a[0].order.cmp(&b[0].order)));
        let mut bins: Vec<Bin> = Vec::new();
        let mut free: BTreeSet<(usize, usize)> = BTreeSet::new();
        let place = |bins: &mut Vec<Bin>,
                     free: &mut BTreeSet<(usize, usize)>,
                     unit: Vec<Seg>,
                     k: Option<(usize, usize)>| {
            let i = match k {
                Some(k) => {
                    free.remove(&k);
                    k.1
                }
                None => {
                    bins.push(Bin::default());
                    bins.len() - 1
                }
            };
            bins[i].used += ulen(&unit);
            bins[i].segs.extend(unit);
            let room = len - bins[i].used;
            if room > 0 {
                free.insert((room, i));
            }
        };
        for u in units {
            let k = Self::slot(&free, &bins, &u, ulen(&u));
            place(&mut bins, &mut free, u, k);
        }
        // Top up open rows with what waits in the smaller buckets.
        if self.bucketed && self.cfg.fill && bi > 0 && !free.is_empty() {
            let mut small: Vec<Seg> = Vec::new();
            for j in 0..bi {
                small.append(&mut self.lens[j].window);
                self.lens[j].window_tokens = 0;
            }
            small.sort_by(|a, b| {
                b.tokens
                    .len()
                    .cmp(&a.tokens.len())
                    .then(a.order.cmp(&b.order))
            });
            for it in small {
                let n = it.tokens.len();
                match Self::slot(&free, &bins, std::slice::from_ref(&it), n) {
                    Some(k) => {
                        self.lens[bi].c.fill_tokens += n as u64;
                        place(&mut bins, &mut free, vec![it], Some(k));
                    }
                    None => {
                        let h = &mut self.lens[it.home];
                        h.window_tokens += it.tokens.len();
                        h.window.push(it);
                    }
                }
            }
        }
        // Decide which bins close now.
        let slack = len / 128;
        let cap = self.lens[bi].window_cap / 2;
        let mut open: Vec<usize> = if last {
            Vec::new()
        } else {
            (0..bins.len())
                .filter(|&i| len - bins[i].used > slack)
                .collect()
        };
        // Keep the emptiest bins open, within the carry cap.
        open.sort_by_key(|&i| (bins[i].used, i));
        let mut carried = 0usize;
        let mut keep = vec![false; bins.len()];
        for &i in &open {
            if carried + bins[i].used > cap {
                break;
            }
            carried += bins[i].used;
            keep[i] = true;
        }
        for (i, b) in bins.into_iter().enumerate() {
            let mut segs = b.segs;
            if keep[i] {
                let w = &mut self.lens[bi];
                for s in segs {
                    w.window_tokens += s.tokens.len();
                    w.window.push(s);
                }
            } else {
                let mut sb = SeqBuilder::default();
                // Within a sequence, segments go in arrival order (stable, readable), or
                // with `order` in their related groups; a continuation segment (not ending
                // its document) goes last.
                if self.cfg.order.is_some() {
                    segs.sort_by_key(|s| !s.ends_doc);
                } else {
                    segs.sort_by_key(|s| (!s.ends_doc, s.order));
                }
                if let Some(r) = self.rel.as_mut() {
                    r.row(&segs, &mut self.rel_rng);
                }
                for s in &segs {
                    sb.add(&s.doc_id, s.copy, &s.src, s.start, &s.tokens);
                }
                self.finish_seq(bi, sb, out)?;
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
        let rate = |real: u64, pad: u64| {
            if real + pad == 0 {
                0.0
            } else {
                pad as f64 / (real + pad) as f64
            }
        };
        let mut s = serde_json::json!({
            "strategy": self.cfg.strategy,
            "seq_len": self.lens.last().map_or(0, |b| b.seq_len),
            "tokens_per_sequence": self.sequence_len(),
            "eos_id": self.cfg.eos_id,
            "pad_id": self.pad,
            "sequences": self.c.sequences,
            "docs": self.c.docs,
            "docs_split": self.c.docs_split,
            "segments": self.c.segments,
            "real_tokens": self.c.real_tokens,
            "pad_tokens": self.c.pad_tokens,
            "padding_rate": rate(self.c.real_tokens, self.c.pad_tokens),
            "shuffled": self.cfg.shuffle,
            "seed": self.cfg.seed,
        });
        if self.bucketed {
            let real = self.c.real_tokens.max(1) as f64;
            s["buckets"] = self
                .lens
                .iter()
                .map(|b| {
                    serde_json::json!({
                        "seq_len": b.seq_len,
                        "tokens_per_sequence": b.len,
                        "sequences": b.c.sequences,
                        "segments": b.c.segments,
                        "real_tokens": b.c.real_tokens,
                        "pad_tokens": b.c.pad_tokens,
                        "padding_rate": rate(b.c.real_tokens, b.c.pad_tokens),
                        "assigned_tokens": b.c.assigned_tokens,
                        "promoted_tokens": b.c.promoted_tokens,
                        "fill_tokens": b.c.fill_tokens,
                        "share_target": b.share,
                        "share": b.c.real_tokens as f64 / real,
                    })
                })
                .collect();
            s["split_boundaries"] = serde_json::json!({
                "paragraph": self.split_kinds[PARAGRAPH as usize],
                "line": self.split_kinds[LINE as usize],
                "sentence": self.split_kinds[SENTENCE as usize],
                "length": self.split_kinds[0],
            });
        }
        if let Some(r) = &self.rel {
            s["relatedness"] = r.report();
            s["relatedness"]["order"] =
                serde_json::to_value(self.cfg.order.as_ref().map(|o| o.by)).unwrap_or_default();
        }
        if let Some(u) = &self.cfg.upsample {
            let tin: u64 = self.up.values().map(|v| v.tokens_in).sum();
            let tout: u64 = self
                .up
                .values()
                .map(|v| v.tokens_in + v.copy_tokens - v.dropped_tokens)
                .sum();
            let share = |a: u64, t: u64| if t == 0 { 0.0 } else { a as f64 / t as f64 };
            let per: serde_json::Map<String, serde_json::Value> = self
                .up
                .iter()
                .map(|(k, v)| {
                    let out = v.tokens_in + v.copy_tokens - v.dropped_tokens;
                    let long_out = v.long_tokens_in + v.copy_tokens;
                    let mut j = serde_json::to_value(v).unwrap_or_default();
                    j["tokens_out"] = out.into();
                    j["share_in"] = share(v.tokens_in, tin).into();
                    j["share_out"] = share(out, tout).into();
                    j["long_share_in"] = share(v.long_tokens_in, v.tokens_in).into();
                    j["long_share_out"] = share(long_out, out).into();
                    (k.clone(), j)
                })
                .collect();
            s["upsample"] = serde_json::json!({
                "min_tokens": u.min_tokens,
                "factor": u.factor,
                "keep_mix": u.keep_mix,
                "sources": per,
            });
        }
        s
    }

    /// The relatedness group key of a document under `order` (0: none).
    fn key_of(&self, doc: &Document) -> u64 {
        let Some(o) = &self.cfg.order else { return 0 };
        let v = match o.by {
            OrderBy::Minhash => return 0,
            OrderBy::Site => doc.meta.get("url").map(|u| url_host(u)),
            OrderBy::UrlSeries => doc.meta.get("url").map(|u| url_series(u)),
            OrderBy::Meta => o.field.as_ref().and_then(|f| doc.meta.get(f)).cloned(),
        };
        v.filter(|v| !v.is_empty())
            .map_or(0, |v| xxhash_rust::xxh3::xxh3_64(v.as_bytes()) | 1)
    }

    /// Upsampling: how many copies of this document to pack (0 = dropped to pay for
    /// another document's copies).
    fn copies(&mut self, id: &str, source: &str, n: usize) -> u32 {
        let Some(u) = &self.cfg.upsample else {
            return 1;
        };
        let st = self.up.entry(source.to_string()).or_default();
        st.docs_in += 1;
        st.tokens_in += n as u64;
        if !u.sources.is_empty() && !u.sources.iter().any(|s| s == source) {
            return 1;
        }
        if n >= u.min_tokens {
            let whole = u.factor.floor();
            let draw = xxhash_rust::xxh3::xxh3_64_with_seed(id.as_bytes(), self.cfg.seed);
            let extra = ((draw >> 11) as f64 / (1u64 << 53) as f64) < u.factor - whole;
            let k = whole as u32 + extra as u32;
            st.long_docs += 1;
            st.long_tokens_in += n as u64;
            st.copies += (k - 1) as u64;
            st.copy_tokens += (k - 1) as u64 * n as u64;
            if u.keep_mix {
                st.unpaid_tokens += (k - 1) as u64 * n as u64;
            }
            k
        } else if u.keep_mix && st.unpaid_tokens >= n as u64 {
            st.unpaid_tokens -= n as u64;
            st.dropped_docs += 1;
            st.dropped_tokens += n as u64;
            0
        } else {
            1
        }
    }
}

impl Bucket {
    fn new(seq_len: usize, len: usize, share: Option<f64>, window_cap: usize) -> Self {
        Bucket {
            seq_len,
            len,
            share,
            window_cap,
            window: Vec::new(),
            window_tokens: 0,
            c: BucketCounters::default(),
        }
    }
}

impl Stage for Pack {
    fn use_attrs(&mut self, attrs: std::sync::Arc<crate::attrs::AttrSchema>) {
        self.index.attrs = attrs;
    }

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
            self.doc_key = self.key_of(&doc);
            let copies = self.copies(&doc.id, &doc.source, toks.len());
            if copies == 0 {
                let n = toks.len();
                out.reject(
                    doc,
                    "upsample_rebalance",
                    Some(n as f64),
                    "short document dropped so that its source keeps its token share after its long documents were upsampled",
                );
                continue;
            }
            self.c.docs += 1;
            self.index.add(&doc, toks.len())?;
            let split = match self.cfg.strategy {
                Strategy::Greedy => {
                    let start = self.cur.tokens.len();
                    start + toks.len() > self.lens[0].len
                }
                Strategy::BestFitDecreasing => toks.len() > self.sequence_len(),
            };
            self.c.docs_split += split as u64;
            let dup = copies > 1;
            let src = Src::of(&doc);
            for copy in 0..copies {
                let t = if copy + 1 == copies {
                    std::mem::take(&mut toks)
                } else {
                    toks.clone()
                };
                match self.cfg.strategy {
                    Strategy::Greedy => self.push_greedy(&doc.id, &src, &t, out)?,
                    Strategy::BestFitDecreasing if self.bucketed => {
                        self.push_bucketed(&doc.id, &src, t, copy, dup, out)?
                    }
                    Strategy::BestFitDecreasing => {
                        self.push_bfd(&doc.id, &src, t, copy, dup, out)?
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<()> {
        match self.cfg.strategy {
            Strategy::Greedy => {
                if !self.cur.tokens.is_empty() {
                    let b = std::mem::take(&mut self.cur);
                    self.finish_seq(0, b, out)?;
                }
            }
            // Largest first, so its last rows are topped up from the smaller windows.
            Strategy::BestFitDecreasing => {
                for bi in (0..self.lens.len()).rev() {
                    self.pack_window(bi, true, out)?;
                }
            }
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
        self.index_files = self.index.finish()?;
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
        let mut s = self.summary();
        s["docs_index"] = serde_json::json!({"rows": self.index.rows, "files": self.index_files});
        Some(s)
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "pack",
        doc: "Pack tokenized documents into fixed-length sequences or length buckets (greedy or best-fit-decreasing), EOS-joined, optional long-document upsampling and related-document ordering, with a seeded bounded-memory global shuffle.",
        role: Role::Stage,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Stage(Box::new(Pack::try_new(cfg, ctx)?)))
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
        check_rows(out, input, &[len], if bfd { len } else { 0 });
    }

    /// Rows of one of the lengths `lens` (the bucket's, when bucketed); documents of at most
    /// `whole` tokens (EOS included) are never split; every segment's `doc_starts` matches
    /// its id; every document reassembles exactly, in order.
    fn check_rows(out: &[Document], input: &[Document], lens: &[usize], whole: usize) {
        // Reassemble every document from its segments.
        let mut parts: BTreeMap<String, Vec<(u64, Vec<u32>)>> = BTreeMap::new();
        let mut ids = BTreeSet::new();
        for s in out {
            assert!(ids.insert(s.id.clone()), "duplicate sequence id");
            let t = s.tokens.as_ref().unwrap();
            let p = s.packed.as_ref().unwrap();
            assert!(
                lens.contains(&t.len()),
                "every sequence has a configured length ({} not in {lens:?})",
                t.len()
            );
            if lens.len() > 1 {
                assert_eq!(p.bucket, Some(t.len() as u32));
            }
            let len = t.len();
            assert_eq!(p.doc_offsets.len(), p.doc_ids.len());
            assert_eq!(p.doc_starts.len(), p.doc_ids.len());
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
                    Some((a, b)) => (a.to_string(), b.parse::<u64>().unwrap()),
                    None => (p.doc_ids[i].clone(), 0),
                };
                assert_eq!(p.doc_starts[i], start, "doc_starts matches the id suffix");
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
            if d.tokens.as_ref().unwrap().len() < whole {
                assert_eq!(segs.len(), 1, "best-fit never splits a document that fits");
            }
            segs.sort_by_key(|s| s.0);
            let mut joined = Vec::new();
            for (start, s) in segs {
                assert_eq!(start as usize, joined.len());
                joined.extend(s);
            }
            let mut want = d.tokens.clone().unwrap();
            if want.last() != Some(&EOS) {
                want.push(EOS);
            }
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

    const DS: &str = "samples/tokenizers/deepseek-v3/tokenizer.json";

    /// All CMRC 2018 paragraphs (Chinese Wikipedia; consecutive paragraphs of one article
    /// share a title) joined with blank lines, then the GSM8K items, as one token stream:
    /// real text to cut long documents from.
    fn long_stream() -> (tokenizers::Tokenizer, Vec<u32>) {
        let tok = tokenizers::Tokenizer::from_file(DS).unwrap();
        let mut text = String::new();
        for l in std::fs::read_to_string("samples/text/cmrc2018_zh.jsonl")
            .unwrap()
            .lines()
        {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            text.push_str(v["text"].as_str().unwrap());
            text.push_str("\n\n");
        }
        for l in std::fs::read_to_string("samples/benchmarks/gsm8k_test.jsonl")
            .unwrap()
            .lines()
        {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            text.push_str(&format!(
                "Question: {}\nAnswer: {}\n\n",
                v["question"].as_str().unwrap(),
                v["answer"].as_str().unwrap()
            ));
        }
        let ids = tok.encode(text.as_str(), false).unwrap().get_ids().to_vec();
        (tok, ids)
    }

    /// Documents of the given token counts (EOS included), cut from the real stream at
    /// spread-out offsets.
    fn docs_of(stream: &[u32], sizes: &[usize], prefix: &str, source: &str) -> Vec<Document> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let off = (i * 7919 * 13) % (stream.len() - n);
                let mut d = Document::new(format!("{prefix}{i}"), source, "");
                let mut t = stream[off..off + n - 1].to_vec();
                t.push(EOS);
                d.tokens = Some(t);
                d
            })
            .collect()
    }

    #[test]
    fn buckets_keep_each_size_whole_and_split_longer_ones_at_paragraphs() {
        let (tok, stream) = long_stream();
        let dir = tempfile::tempdir().unwrap();
        let lens = [512usize, 4096, 32768];
        // A document of exactly each bucket's size, one token over each, short ones, and
        // the whole stream (over 10 rows of the largest bucket) as one long document.
        let mut docs = docs_of(
            &stream,
            &[512, 513, 4096, 4097, 32768, 300, 40, 2000],
            "d",
            "web",
        );
        let mut long = Document::new("book", "books", "");
        let mut t = stream.clone();
        t.push(EOS);
        assert!(t.len() > 10 * 32768, "{} tokens", t.len());
        long.tokens = Some(t);
        docs.push(long);
        docs.extend(tokenized_corpus().into_iter().take(300));
        for tokenizer in [true, false] {
            let mut params = serde_json::json!({"eos_id": EOS, "shuffle": true,
                "buckets": [{"seq_len": 512}, {"seq_len": 4096, "window_seqs": 8}, {"seq_len": 32768}]});
            if tokenizer {
                params["tokenizer"] = DS.into();
            } else {
                params["fill"] = false.into();
            }
            let ctx = BuildCtx::for_tests("pack", dir.path());
            let mut p = Pack::try_new(parse_config(&params, &ctx).unwrap(), &ctx).unwrap();
            let (out, rej) = run_stage_docs(&mut p, docs.clone(), 7);
            assert!(rej.is_empty());
            check_rows(&out, &docs, &lens, 32768 + 1);
            // The exact-size documents stay whole (checked above); without `fill` each fills
            // a row of its own bucket alone (with it, it may top up a larger bucket's row).
            for (id, len) in [("d0", 512), ("d2", 4096), ("d4", 32768)] {
                let row = out
                    .iter()
                    .find(|s| s.packed.as_ref().unwrap().doc_ids.contains(&id.to_string()))
                    .unwrap();
                let rl = row.tokens.as_ref().unwrap().len();
                if tokenizer {
                    assert!(rl >= len, "{id}");
                } else {
                    assert_eq!(rl, len, "{id}");
                    assert_eq!(row.packed.as_ref().unwrap().doc_ids, vec![id.to_string()]);
                }
            }
            // The long document: segments of more than half and at most the largest length,
            // in order, each cut right after a line or paragraph end when boundaries are known.
            let mut segs: Vec<(u64, usize, bool)> = Vec::new();
            for s in &out {
                let p = s.packed.as_ref().unwrap();
                for (i, id) in p.doc_ids.iter().enumerate() {
                    if id == "book" || id.starts_with("book@") {
                        let end =
                            p.doc_offsets.get(i + 1).map_or(
                                s.tokens.as_ref().unwrap().len() - p.n_pad as usize,
                                |&x| x as usize,
                            );
                        let last_in_row = i + 1 == p.doc_ids.len();
                        segs.push((
                            p.doc_starts[i],
                            end - p.doc_offsets[i] as usize,
                            last_in_row,
                        ));
                    }
                }
            }
            segs.sort();
            assert!(segs.len() > 10);
            let n = segs.len();
            for (k, &(start, len, last_in_row)) in segs.iter().enumerate() {
                assert!(len <= 32768);
                if k + 1 < n {
                    assert!(len > 16384, "segment {k}: {len} tokens");
                    assert!(last_in_row, "a continuation segment ends its row");
                    let cut = start as usize + len;
                    let before = tok.decode(&[stream[cut - 1]], false).unwrap();
                    if tokenizer {
                        assert!(before.ends_with('\n'), "cut {k} after {before:?}");
                    } else {
                        assert_eq!(len, 32768, "without a tokenizer cuts fall at the length");
                    }
                }
            }
            let st = p.stats().unwrap();
            let sb = &st["split_boundaries"];
            let cuts = (n - 1) as u64;
            if tokenizer {
                assert_eq!(sb["paragraph"].as_u64().unwrap(), cuts, "{sb}");
            } else {
                assert_eq!(sb["length"].as_u64().unwrap(), cuts, "{sb}");
            }
            assert_eq!(st["buckets"].as_array().unwrap().len(), 3);
        }
    }

    #[test]
    fn split_points_prefer_paragraph_then_line_then_sentence() {
        // Levels by token id: 7 = line end, 8 = sentence end, 9 = paragraph end.
        let mut lv = vec![0u8; 10];
        lv[7] = LINE;
        lv[8] = SENTENCE;
        lv[9] = PARAGRAPH;
        let t = |v: &[u32]| v.to_vec();
        // Max 10: the cut window is (5, 10]; a paragraph end at index 6 wins over a later
        // sentence end; two line ends in a row count as a paragraph.
        let a = t(&[0, 0, 0, 0, 0, 0, 9, 0, 8, 0, 0, 0, 0, 0]);
        assert_eq!(split_points(&a, 10, Some(&lv)), vec![(7, PARAGRAPH)]);
        let b = t(&[0, 0, 0, 0, 0, 7, 7, 0, 7, 0, 0, 0]);
        assert_eq!(split_points(&b, 10, Some(&lv)), vec![(7, PARAGRAPH)]);
        let c = t(&[0, 0, 0, 0, 0, 0, 7, 0, 8, 0, 0, 0]);
        assert_eq!(split_points(&c, 10, Some(&lv)), vec![(7, LINE)]);
        let d = t(&[0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0]);
        assert_eq!(split_points(&d, 10, Some(&lv)), vec![(7, SENTENCE)]);
        // A boundary in the first half is not used: cut at the length.
        let e = t(&[0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(split_points(&e, 10, Some(&lv)), vec![(10, 0)]);
        assert_eq!(split_points(&e, 10, None), vec![(10, 0)]);
        assert!(split_points(&e, 12, Some(&lv)).is_empty());
        let f = vec![0u32; 35];
        assert_eq!(split_points(&f, 10, None), vec![(10, 0), (20, 0), (30, 0)]);
    }

    /// A realistic length mix: many short documents, some of 4k-32k, a few of 32k-128k
    /// (all real text), into 4k / 32k / 128k buckets with small windows so that many rounds
    /// run; every bucket's padding stays under 1%.
    #[test]
    fn bucket_padding_under_one_percent() {
        let (_, stream) = long_stream();
        let mut docs = Vec::new();
        for r in 0..4 {
            for mut d in tokenized_corpus() {
                d.id = format!("{}-{r}", d.id);
                docs.push(d);
            }
        }
        let mid: Vec<usize> = (0..48).map(|i| 4200 + (i * 2791) % 27000).collect();
        let big: Vec<usize> = (0..6).map(|i| 36000 + (i * 17011) % 80000).collect();
        docs.extend(docs_of(&stream, &mid, "m", "web"));
        docs.extend(docs_of(&stream, &big, "b", "web"));
        docs.sort_by_key(|d| xxhash_rust::xxh3::xxh3_64(d.id.as_bytes()));
        let dir = tempfile::tempdir().unwrap();
        let mut p = pack(
            serde_json::json!({"eos_id": EOS, "buckets": [
                {"seq_len": 4096, "window_seqs": 64}, {"seq_len": 32768, "window_seqs": 8},
                {"seq_len": 131072, "window_seqs": 2}]}),
            dir.path(),
        );
        let (out, _) = run_stage_docs(&mut p, docs.clone(), 64);
        check_rows(&out, &docs, &[4096, 32768, 131072], 131073);
        let st = p.stats().unwrap();
        eprintln!("bucket padding: {}", st["buckets"]);
        for b in st["buckets"].as_array().unwrap() {
            assert!(b["sequences"].as_u64().unwrap() > 0, "{b}");
            assert!(b["padding_rate"].as_f64().unwrap() < 0.01, "{b}");
        }
        assert!(st["padding_rate"].as_f64().unwrap() < 0.01);
    }

    /// Shares: with a 40% target on the 32k bucket, short documents are promoted into it.
    #[test]
    fn bucket_share_promotes_documents() {
        let corpus = tokenized_corpus();
        let dir = tempfile::tempdir().unwrap();
        let mut p = pack(
            serde_json::json!({"eos_id": EOS, "shuffle": false, "buckets": [
                {"seq_len": 512}, {"seq_len": 8192, "share": 0.4}]}),
            dir.path(),
        );
        let (out, _) = run_stage_docs(&mut p, corpus.clone(), 64);
        check_rows(&out, &corpus, &[512, 8192], 513);
        let st = p.stats().unwrap();
        let b = &st["buckets"][1];
        assert!(b["promoted_tokens"].as_u64().unwrap() > 0);
        let share = b["share"].as_f64().unwrap();
        assert!((share - 0.4).abs() < 0.05, "{st}");
    }

    /// Upsampling: long documents come in `factor` copies, never two in one row, and the
    /// source's token count is kept by dropping its short documents.
    #[test]
    fn upsampling_keeps_copies_apart_and_the_source_mix() {
        let (_, stream) = long_stream();
        let mut docs = tokenized_corpus();
        let sizes: Vec<usize> = (0..12).map(|i| 700 + (i * 331) % 1500).collect();
        docs.extend(docs_of(&stream, &sizes, "long", "web"));
        docs.sort_by_key(|d| xxhash_rust::xxh3::xxh3_64(d.id.as_bytes()));
        let dir = tempfile::tempdir().unwrap();
        for (params, lens) in [
            (serde_json::json!({"seq_len": 2048}), vec![2048usize]),
            (
                serde_json::json!({"buckets": [{"seq_len": 256}, {"seq_len": 2048}]}),
                vec![256, 2048],
            ),
        ] {
            let mut params = params;
            params["eos_id"] = EOS.into();
            params["window_seqs"] = 4.into();
            params["upsample"] = serde_json::json!({"min_tokens": 600, "factor": 3});
            let mut p = pack(params, dir.path());
            let (out, rej) = run_stage_docs(&mut p, docs.clone(), 16);
            // Nothing vanishes: every input is packed or rejected as rebalance.
            assert!(rej
                .iter()
                .all(|d| d.reject.as_ref().unwrap().reason == "upsample_rebalance"));
            let rejected: BTreeSet<_> = rej.iter().map(|d| d.id.clone()).collect();
            let mut copies: BTreeMap<String, usize> = BTreeMap::new();
            for s in &out {
                let p = s.packed.as_ref().unwrap();
                let mut seen = BTreeSet::new();
                for id in &p.doc_ids {
                    let base = id.split('@').next().unwrap();
                    let doc = base.split("#u").next().unwrap().to_string();
                    assert!(seen.insert(doc.clone()), "two copies of {doc} in {}", s.id);
                    if !id.contains('@') {
                        *copies.entry(doc).or_default() += 1;
                    }
                }
                assert!(lens.contains(&s.tokens.as_ref().unwrap().len()));
            }
            let n_long = docs
                .iter()
                .filter(|d| d.tokens.as_ref().unwrap().len() >= 599)
                .count();
            let tripled = copies.values().filter(|&&c| c == 3).count();
            assert_eq!(tripled, n_long, "every long document has three copies");
            for d in &docs {
                assert!(
                    copies.contains_key(&d.id) != rejected.contains(&d.id),
                    "{}",
                    d.id
                );
            }
            let st = p.stats().unwrap();
            let web = &st["upsample"]["sources"]["web"];
            assert!(web["dropped_docs"].as_u64().unwrap() > 0, "{web}");
            // The source mix is kept: web's share moves by less than 2 points.
            let (a, b) = (
                web["share_in"].as_f64().unwrap(),
                web["share_out"].as_f64().unwrap(),
            );
            assert!((a - b).abs() < 0.02, "{web}");
            let tin = web["tokens_in"].as_u64().unwrap();
            let tout = web["tokens_out"].as_u64().unwrap();
            assert_eq!(tout, tin + web["unpaid_tokens"].as_u64().unwrap(), "{web}");
            assert!(
                web["long_share_out"].as_f64().unwrap() > web["long_share_in"].as_f64().unwrap()
            );
            let qa = &st["upsample"]["sources"]["qa"];
            assert_eq!(qa["copies"], 0);
        }
    }

    #[test]
    fn url_keys() {
        assert_eq!(
            url_host("https://www.Example.com:8080/a/b?x=1"),
            "example.com"
        );
        assert_eq!(url_host("http://user@bbs.example.cn/t"), "bbs.example.cn");
        let s = |u: &str| url_series(u);
        assert_eq!(
            s("https://bbs.x.cn/thread/42/page-3"),
            s("https://bbs.x.cn/thread/42/page-4")
        );
        assert_eq!(
            s("https://bbs.x.cn/thread/42/2"),
            s("https://bbs.x.cn/thread/42/3")
        );
        assert_ne!(
            s("https://bbs.x.cn/thread/42"),
            s("https://bbs.x.cn/thread/43")
        );
        assert_eq!(
            s("http://f.x.cn/viewtopic.php?t=123&start=20"),
            s("http://f.x.cn/viewtopic.php?start=40&t=123")
        );
        assert_ne!(
            s("http://f.x.cn/viewtopic.php?t=123"),
            s("http://f.x.cn/viewtopic.php?t=124")
        );
        assert_eq!(
            s("https://x.cn/news/p2.html#c"),
            s("https://x.cn/news/p3.html")
        );
        assert_ne!(
            s("https://x.cn/news/a-1.html"),
            s("https://x.cn/news/a-2.html")
        );
    }

    /// The near-duplicate families of `samples/text/zh_neardup` (70 Wikipedia articles and
    /// their 86 edited copies) among the 848 CMRC paragraphs: with `order: minhash` related
    /// documents share rows; the report shows neighbours far more similar than random pairs.
    #[test]
    fn minhash_order_puts_related_documents_together() {
        let tok = tokenizers::Tokenizer::from_file(DS).unwrap();
        let mut docs = tokenized_corpus();
        docs.retain(|d| d.source == "web");
        for l in std::fs::read_to_string("samples/text/zh_neardup/docs.jsonl")
            .unwrap()
            .lines()
        {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let mut d = Document::new(
                v["id"].as_str().unwrap(),
                "fam",
                v["text"].as_str().unwrap(),
            );
            d.tokens = Some(
                tok.encode(d.text.as_str(), false)
                    .unwrap()
                    .get_ids()
                    .to_vec(),
            );
            docs.push(d);
        }
        docs.sort_by_key(|d| xxhash_rust::xxh3::xxh3_64(d.id.as_bytes()));
        let dir = tempfile::tempdir().unwrap();
        let mut res = Vec::new();
        for order in [None, Some("minhash")] {
            let mut params =
                serde_json::json!({"seq_len": 4096, "eos_id": EOS, "report_relatedness": true});
            if let Some(o) = order {
                params["order"] = serde_json::json!({"by": o});
            }
            let mut p = pack(params, dir.path());
            let (out, _) = run_stage_docs(&mut p, docs.clone(), 64);
            check(&out, &docs, 4096, true);
            // Same-family neighbours in a row.
            let fam = |id: &str| id.split('-').next().unwrap().to_string();
            let mut same = 0;
            for s in &out {
                let ids = &s.packed.as_ref().unwrap().doc_ids;
                same += ids
                    .windows(2)
                    .filter(|w| {
                        w[0].starts_with('f') && w[1].starts_with('f') && fam(&w[0]) == fam(&w[1])
                    })
                    .count();
            }
            let st = p.stats().unwrap();
            res.push((
                same,
                st["relatedness"].clone(),
                st["padding_rate"].as_f64().unwrap(),
            ));
        }
        eprintln!("relatedness (none, minhash): {res:?}");
        let (same0, rel0, _) = &res[0];
        let (same1, rel1, pad1) = &res[1];
        let j = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap();
        assert!(*same1 >= 30 && *same1 > 5 * same0.max(&1), "{res:?}");
        assert!(
            j(rel1, "neighbour_jaccard") > 3.0 * j(rel1, "random_jaccard"),
            "{res:?}"
        );
        assert!(
            j(rel1, "neighbour_jaccard") > 3.0 * j(rel0, "neighbour_jaccard"),
            "{res:?}"
        );
        assert!(*pad1 < 0.02, "ordering keeps padding low: {res:?}");
    }

    /// `order: site` keeps one site's pages together.
    #[test]
    fn site_order_groups_pages_of_one_site() {
        let mut docs = tokenized_corpus();
        for (i, d) in docs.iter_mut().enumerate() {
            d.meta.insert(
                "url".into(),
                format!("https://s{}.example.cn/a/{i}.html", i % 40),
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let mut rates = Vec::new();
        for order in [false, true] {
            let mut params = serde_json::json!({"seq_len": 4096, "eos_id": EOS});
            if order {
                params["order"] = serde_json::json!({"by": "site"});
            }
            let mut p = pack(params, dir.path());
            let (out, _) = run_stage_docs(&mut p, docs.clone(), 64);
            check(&out, &docs, 4096, true);
            let site: BTreeMap<String, usize> = docs
                .iter()
                .enumerate()
                .map(|(i, d)| (d.id.clone(), i % 40))
                .collect();
            let (mut same, mut pairs) = (0, 0);
            for s in &out {
                for w in s.packed.as_ref().unwrap().doc_ids.windows(2) {
                    pairs += 1;
                    same += (site[&w[0]] == site[&w[1]]) as usize;
                }
            }
            rates.push((
                same as f64 / pairs as f64,
                p.stats().unwrap()["padding_rate"].as_f64().unwrap(),
            ));
        }
        eprintln!("same-site neighbour share and padding (none, site): {rates:?}");
        assert!(rates[0].0 < 0.1 && rates[1].0 > 0.8, "{rates:?}");
        assert!(rates[1].1 < 0.02, "{rates:?}");
    }

    #[test]
    fn bucket_config_problems_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = BuildCtx::for_tests("pack", dir.path());
        let problems = |p: serde_json::Value| {
            parse_config::<Config>(&p, &ctx)
                .err()
                .unwrap_or_default()
                .join("\n")
        };
        let b = serde_json::json!([{"seq_len": 4096}, {"seq_len": 1024}]);
        let e = problems(serde_json::json!({"eos_id": 1, "seq_len": 4096, "buckets": b}));
        assert!(e.contains("either `seq_len` or `buckets`"), "{e}");
        assert!(e.contains("increasing seq_len"), "{e}");
        let b =
            serde_json::json!([{"seq_len": 512, "share": 0.7}, {"seq_len": 4096, "share": 0.6}]);
        let e = problems(serde_json::json!({"eos_id": 1, "buckets": b, "strategy": "greedy"}));
        assert!(e.contains("best-fit") && e.contains("add up to"), "{e}");
        let e = problems(serde_json::json!({"eos_id": 1, "strategy": "greedy",
            "upsample": {"min_tokens": 10, "factor": 2}, "order": {"by": "meta"}}));
        assert!(
            e.contains("upsampling needs") && e.contains("`by: meta` needs"),
            "{e}"
        );
        assert!(
            problems(serde_json::json!({"eos_id": 1, "buckets": [{"seq_len": 64}]})).is_empty()
        );
    }
}
