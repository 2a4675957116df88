//! `feed`: the training-side loader of packed shards, with exact resume.
//!
//! **What and why.** sluice's output exists to drive a training cluster. A data-parallel
//! job needs, from every rank, a disjoint and deterministic stream of fixed-shape batches;
//! after a crash it must resume at exactly the next batch, neither repeating nor skipping
//! data. `feed` reads the packed shards written by `pack` + `parquet_shards` and yields
//! [`Batch`]es of `input_ids`, `labels`, `position_ids` and a document-boundary mask.
//!
//! **The stream.** Shards are put in canonical order (sorted by sha256, see
//! [`shards::ShardSet`]). Epoch `e` visits them in a seeded Fisher–Yates order and the rows
//! of each shard in a seeded order of their own ([`shuffle`]). Each valid row is cut into
//! windows of `seq_len` tokens (the last one padded; see [`window_count`]); every window
//! is one *sample*. The
//! epochs follow each other in one infinite stream of samples numbered `g = 0, 1, …`.
//! Global step `s` is samples `[s·B·W, (s+1)·B·W)` (B = per-rank batch size, W = world
//! size); rank `r` takes the block `[r·B, (r+1)·B)` of it. So the ranks are disjoint,
//! together cover every sample, and always agree on the step count (an epoch's tail
//! simply continues into the next epoch: nothing is dropped).
//!
//! **Fields read** (packed shard schema): `input_ids` list<uint32>, `doc_offsets`
//! list<uint32>, `n_pad` uint32. A row with nulls, no real tokens or broken offsets is
//! skipped, counted in [`Feed::bad_rows`] and logged.
//!
//! **Batch fields** (row-major `[batch_size, seq_len]`):
//! - `input_ids`: the window's tokens (positions past the row's end are 0);
//! - `labels`: the next token, or `-100` (ignored) where the next token starts a new
//!   document, lies in padding, or lies past the row's real tokens;
//! - `position_ids`: offset inside the current document segment, restarting at 0 at every
//!   document start, at the window start and at the start of padding;
//! - `doc_start`: 1 on the first token of each segment (the document-boundary mask).
//!   Attention must not cross a segment: segment ids are the running sum of `doc_start`.
//! - `cu_seqlens`, `max_seqlen`, `seqs_per_row`: the same segments as variable-length
//!   attention takes them ([`varlen`]): cumulative segment boundaries over the flattened
//!   `[batch_size * seq_len]` batch (FlashAttention's `flash_attn_varlen_func`, PyTorch
//!   flex attention's document masks), the longest segment, and segments per row. The
//!   Python package's batches carry the same three (a test compares them).
//!
//! **State and resume.** After each batch the loader's cursor sits at the start of the
//! next global step: `(epoch, shard, row, offset)` = epoch number, position in the epoch's
//! shard order, position in that shard's row order, window inside the row; plus `samples`
//! (the global sample number) and `steps`. That state is the same on every rank. A
//! [`FeedState`] saved after step k and passed to [`Feed::open`] makes the loader yield
//! exactly what an uninterrupted run yields from step k+1. It also records the shard
//! fingerprint, world size, batch size, sequence length and seed: resuming with any of
//! them changed is refused with a message naming the difference.
//!
//! **Memory.** One decoded shard (its three packed columns) plus `prefetch` batches. Every
//! rank decodes every shard of the epoch (it must count the other ranks' samples to find
//! its own); decoding is far cheaper than a training step (`benches/feed.rs`).
//!
//! **Threads.** A background thread builds batches ahead of the consumer through a
//! bounded channel of `prefetch` batches; it stops when the [`Feed`] is dropped.
//!
//! ```yaml
//! # sluice train --config configs/train/moe_tiny.yaml   (the `feed:` part)
//! feed:
//!   data: [out]        # run directory (its manifest.json), directory or Parquet files
//!   batch_size: 8      # samples per rank per step
//!   seq_len: 128       # tokens per sample
//!   seed: 1234
//!   prefetch: 4
//! ```

pub mod fixture;
pub mod shards;
pub mod shuffle;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use shards::{ShardRows, ShardSet};

/// Label value of positions that carry no next-token target.
pub const IGNORE: i64 = -100;
/// Version of the [`FeedState`] format.
pub const STATE_VERSION: u32 = 1;
/// Tag of a serialized [`FeedState`].
pub const STATE_MAGIC: &str = "sluice-feed-state";

/// Loader options.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Run directories, directories of Parquet files or Parquet files holding packed shards.
    pub data: Vec<PathBuf>,
    /// Samples per rank per step. Default 8.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Tokens per sample; rows longer than this are cut into several windows. Default 128.
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    /// Shuffle seed. Default 1234.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// This process's data-parallel rank. Default 0.
    #[serde(default)]
    pub rank: usize,
    /// Number of data-parallel ranks. Default 1.
    #[serde(default = "default_world_size")]
    pub world_size: usize,
    /// Batches built ahead on the background thread. Default 4.
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
}

fn default_batch_size() -> usize {
    8
}
fn default_seq_len() -> usize {
    128
}
fn default_seed() -> u64 {
    1234
}
fn default_world_size() -> usize {
    1
}
fn default_prefetch() -> usize {
    4
}

impl FeedConfig {
    /// Defaults for everything but the data.
    pub fn new(data: Vec<PathBuf>) -> Self {
        FeedConfig {
            data,
            batch_size: default_batch_size(),
            seq_len: default_seq_len(),
            seed: default_seed(),
            rank: 0,
            world_size: default_world_size(),
            prefetch: default_prefetch(),
        }
    }

    fn validate(&self) -> Result<()> {
        let mut p = Vec::new();
        if self.batch_size == 0 {
            p.push("feed.batch_size must be at least 1".to_string());
        }
        if self.seq_len == 0 {
            p.push("feed.seq_len must be at least 1".to_string());
        }
        if self.world_size == 0 {
            p.push("feed.world_size must be at least 1".to_string());
        }
        if self.rank >= self.world_size.max(1) {
            p.push(format!(
                "feed.rank {} is not below world_size {}",
                self.rank, self.world_size
            ));
        }
        if self.data.is_empty() {
            p.push("feed.data lists no input".to_string());
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(p))
        }
    }
}

/// Where the stream stands: saved with a checkpoint, restored on resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedState {
    /// Always [`STATE_MAGIC`].
    pub magic: String,
    /// Always [`STATE_VERSION`].
    pub version: u32,
    /// Epoch of the next sample.
    pub epoch: u64,
    /// Position, in the epoch's shard order, of the shard holding the next sample.
    pub shard: u64,
    /// Position, in that shard's row order, of the row holding the next sample.
    pub row: u64,
    /// Window inside that row.
    pub offset: u64,
    /// Global number of the next sample (counting all ranks).
    pub samples: u64,
    /// Steps (batches per rank) delivered so far.
    pub steps: u64,
    /// Shard fingerprint ([`ShardSet::fingerprint`]).
    pub shards_sha256: String,
    /// Number of shards.
    pub n_shards: u64,
    /// Data-parallel world size.
    pub world_size: u64,
    /// Samples per rank per step.
    pub batch_size: u64,
    /// Tokens per sample.
    pub seq_len: u64,
    /// Shuffle seed.
    pub seed: u64,
}

impl FeedState {
    /// Refuse to resume when the data or the partitioning changed.
    pub fn check_compatible(
        &self,
        fingerprint: &str,
        n_shards: usize,
        cfg: &FeedConfig,
    ) -> Result<()> {
        let mut p = Vec::new();
        if self.magic != STATE_MAGIC || self.version != STATE_VERSION {
            p.push(format!(
                "loader state is `{}` v{}, this sluice reads `{STATE_MAGIC}` v{STATE_VERSION}",
                self.magic, self.version
            ));
        }
        if self.shards_sha256 != fingerprint {
            p.push(format!(
                "the shards changed since the checkpoint: it was written over {} shards with fingerprint {}, \
                 the data now has {} shards with fingerprint {}; resuming would repeat or skip data \
                 (point --data at the original shards, or start a fresh run)",
                self.n_shards,
                short(&self.shards_sha256),
                n_shards,
                short(fingerprint)
            ));
        }
        if self.world_size != cfg.world_size as u64 {
            p.push(format!(
                "the world size changed: checkpoint world_size {}, now {}; the per-rank streams would no \
                 longer line up with the global batches already consumed",
                self.world_size, cfg.world_size
            ));
        }
        if self.batch_size != cfg.batch_size as u64 {
            p.push(format!(
                "batch_size changed: checkpoint {}, now {}",
                self.batch_size, cfg.batch_size
            ));
        }
        if self.seq_len != cfg.seq_len as u64 {
            p.push(format!(
                "seq_len changed: checkpoint {}, now {}",
                self.seq_len, cfg.seq_len
            ));
        }
        if self.seed != cfg.seed {
            p.push(format!(
                "seed changed: checkpoint {}, now {}",
                self.seed, cfg.seed
            ));
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(Error::msg(format!(
                "cannot resume the loader:\n  - {}",
                p.join("\n  - ")
            )))
        }
    }
}

fn short(h: &str) -> &str {
    &h[..h.len().min(16)]
}

/// Identifies one sample: canonical shard index, row number in the file, window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SampleKey {
    /// Index in [`ShardSet::shards`].
    pub shard: u32,
    /// Row number inside the Parquet file.
    pub row: u32,
    /// Window number inside the row.
    pub window: u32,
}

/// One rank's batch, row-major `[batch_size, seq_len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Step number (0-based) of this batch.
    pub step: u64,
    /// Samples in the batch.
    pub batch_size: usize,
    /// Tokens per sample.
    pub seq_len: usize,
    /// Token ids.
    pub input_ids: Vec<u32>,
    /// Next-token targets, [`IGNORE`] where there is none.
    pub labels: Vec<i64>,
    /// Position inside the document segment.
    pub position_ids: Vec<u32>,
    /// 1 on the first token of each document segment.
    pub doc_start: Vec<u8>,
    /// Segment boundaries over the flattened batch, `[S + 1]` (see [`varlen`]).
    pub cu_seqlens: Vec<i32>,
    /// Length of the longest segment.
    pub max_seqlen: usize,
    /// Segments in each row, `[batch_size]`.
    pub seqs_per_row: Vec<i32>,
    /// Which samples make up the batch.
    pub samples: Vec<SampleKey>,
    /// The loader state after this batch (what to save with a checkpoint taken now).
    pub state: FeedState,
}

impl Batch {
    /// Positions holding real (non-padding) input tokens.
    pub fn real_tokens(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE).count()
    }
}

/// The decoded shard under the cursor and its row order in the cursor's epoch.
struct Loaded {
    epoch: u64,
    canon: usize,
    rows: ShardRows,
    perm: Vec<u32>,
}

/// The walk over the infinite sample stream.
struct Cursor {
    set: Arc<ShardSet>,
    cfg: FeedConfig,
    fingerprint: String,
    epoch: u64,
    shard: usize,
    row: usize,
    offset: usize,
    samples: u64,
    steps: u64,
    order: Vec<u32>,
    loaded: Option<Loaded>,
    epoch_samples: u64,
    bad_rows: Arc<AtomicU64>,
}

impl Cursor {
    fn order_for(&self, epoch: u64) -> Vec<u32> {
        shuffle::permutation(
            self.set.shards.len(),
            shuffle::epoch_seed(self.cfg.seed, epoch),
        )
    }

    /// Make sure the shard at `self.shard` is decoded, with this epoch's row order.
    fn ensure_loaded(&mut self) -> Result<()> {
        let canon = self.order[self.shard] as usize;
        let epoch = self.epoch;
        let row_seed = shuffle::row_seed(self.cfg.seed, epoch, canon as u64);
        match &mut self.loaded {
            Some(l) if l.canon == canon && l.epoch == epoch => return Ok(()),
            Some(l) if l.canon == canon => {
                // Same shard again across an epoch boundary: keep the rows, reshuffle.
                l.perm = shuffle::permutation(l.rows.rows(), row_seed);
                l.epoch = epoch;
                return Ok(());
            }
            _ => {}
        }
        let info = &self.set.shards[canon];
        let rows = ShardRows::load(&info.path)?;
        let bad = rows.bad_rows();
        if bad > 0 {
            tracing::warn!(shard = %info.path.display(), bad_rows = bad, "feed: skipping bad packed rows");
            self.bad_rows.fetch_add(bad as u64, Ordering::Relaxed);
        }
        let perm = shuffle::permutation(rows.rows(), row_seed);
        self.loaded = Some(Loaded {
            epoch,
            canon,
            rows,
            perm,
        });
        Ok(())
    }

    fn windows(&self, rows: &ShardRows, r: usize) -> usize {
        if !rows.valid[r] {
            return 0;
        }
        window_count(rows.real_len(r), self.cfg.seq_len)
    }

    /// Move forward until the cursor names an existing sample (crossing rows, shards and
    /// epochs as needed).
    fn normalize(&mut self) -> Result<()> {
        let mut shards_seen = 0usize;
        loop {
            if self.shard >= self.set.shards.len() {
                if self.epoch_samples == 0 && shards_seen >= self.set.shards.len() {
                    return Err(Error::msg("feed: the shards hold no usable packed rows"));
                }
                self.epoch += 1;
                self.shard = 0;
                self.row = 0;
                self.offset = 0;
                self.epoch_samples = 0;
                self.order = self.order_for(self.epoch);
            }
            self.ensure_loaded()?;
            let l = self
                .loaded
                .as_ref()
                .ok_or_else(|| Error::msg("feed: shard not loaded"))?;
            let n = l.rows.rows();
            while self.row < n {
                let w = self.windows(&l.rows, l.perm[self.row] as usize);
                if self.offset < w {
                    return Ok(());
                }
                self.row += 1;
                self.offset = 0;
            }
            self.shard += 1;
            self.row = 0;
            self.offset = 0;
            shards_seen += 1;
        }
    }

    fn key(&self) -> SampleKey {
        let l = self.loaded.as_ref().expect("normalized cursor has a shard");
        SampleKey {
            shard: l.canon as u32,
            row: l.perm[self.row],
            window: self.offset as u32,
        }
    }

    fn advance(&mut self) -> Result<()> {
        self.offset += 1;
        self.samples += 1;
        self.epoch_samples += 1;
        self.normalize()
    }

    fn state(&self) -> FeedState {
        FeedState {
            magic: STATE_MAGIC.to_string(),
            version: STATE_VERSION,
            epoch: self.epoch,
            shard: self.shard as u64,
            row: self.row as u64,
            offset: self.offset as u64,
            samples: self.samples,
            steps: self.steps,
            shards_sha256: self.fingerprint.clone(),
            n_shards: self.set.shards.len() as u64,
            world_size: self.cfg.world_size as u64,
            batch_size: self.cfg.batch_size as u64,
            seq_len: self.cfg.seq_len as u64,
            seed: self.cfg.seed,
        }
    }

    /// Write the current sample into slot `b` of the batch.
    fn fill(&self, batch: &mut Batch, b: usize) {
        let l = self.loaded.as_ref().expect("normalized cursor has a shard");
        let r = l.perm[self.row] as usize;
        fill_window(
            l.rows.row(r),
            l.rows.real_len(r),
            l.rows.row_offs(r),
            self.offset * self.cfg.seq_len,
            self.cfg.seq_len,
            b,
            batch,
        );
    }

    /// Build this rank's next batch and leave the cursor at the next global step.
    fn next_batch(&mut self) -> Result<Batch> {
        let (bs, t, w) = (
            self.cfg.batch_size,
            self.cfg.seq_len,
            self.cfg.world_size as u64,
        );
        let mut batch = Batch {
            step: self.steps,
            batch_size: bs,
            seq_len: t,
            input_ids: vec![0; bs * t],
            labels: vec![IGNORE; bs * t],
            position_ids: vec![0; bs * t],
            doc_start: vec![0; bs * t],
            cu_seqlens: Vec::new(),
            max_seqlen: 0,
            seqs_per_row: Vec::new(),
            samples: Vec::with_capacity(bs),
            state: self.state(),
        };
        let global = bs as u64 * w;
        let mine = self.cfg.rank as u64 * bs as u64;
        for _ in 0..global {
            let slot = self.samples % global;
            if slot >= mine && slot < mine + bs as u64 {
                let b = (slot - mine) as usize;
                self.fill(&mut batch, b);
                batch.samples.push(self.key());
            }
            self.advance()?;
        }
        (batch.cu_seqlens, batch.max_seqlen, batch.seqs_per_row) = varlen(&batch.doc_start, t);
        self.steps += 1;
        batch.state = self.state();
        Ok(batch)
    }
}

/// Variable-length attention metadata of a row-major `[B, t]` `doc_start` mask:
/// `(cu_seqlens, max_seqlen, seqs_per_row)`. `cu_seqlens` (`[S + 1]`) holds the start of
/// every segment in the flattened batch followed by `B·t`, as FlashAttention's varlen
/// kernels take it (`cu_seqlens_q = cu_seqlens_k`); every row starts a segment, so none
/// crosses rows, and segment `i` has length `cu_seqlens[i+1] - cu_seqlens[i]`.
/// `seqs_per_row[b]` counts the segments of row `b` (split `cu_seqlens` per row with it).
/// Padding and the tail past a row's end form segments of their own, whose labels are all
/// ignored. Mirrors `sluice_feed.feed.varlen` in Python.
pub fn varlen(doc_start: &[u8], t: usize) -> (Vec<i32>, usize, Vec<i32>) {
    let mut cu: Vec<i32> = doc_start
        .iter()
        .enumerate()
        .filter(|&(_, &s)| s != 0)
        .map(|(i, _)| i as i32)
        .collect();
    cu.push(doc_start.len() as i32);
    let max = cu
        .windows(2)
        .map(|w| (w[1] - w[0]) as usize)
        .max()
        .unwrap_or(0);
    let per_row = doc_start
        .chunks(t.max(1))
        .map(|r| r.iter().filter(|&&s| s != 0).count() as i32)
        .collect();
    (cu, max, per_row)
}

/// Windows of `seq_len` cut from a row with `real` real tokens: those holding at least one
/// next-token target (`w·seq_len + 1 < real`). A row of `seq_len + 1` tokens (the packer's
/// `seq_len_plus_one`) thus gives one window whose last label is the extra token.
pub fn window_count(real: usize, seq_len: usize) -> usize {
    real.saturating_sub(1).div_ceil(seq_len)
}

/// Write one window of a packed row into slot `b` of `batch`.
fn fill_window(
    ids: &[u32],
    real: usize,
    offs: &[u32],
    start: usize,
    t: usize,
    b: usize,
    batch: &mut Batch,
) {
    let base = b * t;
    // Index of the document holding `start`.
    let mut d = offs
        .partition_point(|&o| (o as usize) <= start)
        .saturating_sub(1);
    let mut seg_start = start;
    for i in 0..t {
        let a = start + i;
        let k = base + i;
        batch.input_ids[k] = ids.get(a).copied().unwrap_or(0);
        if a < real {
            if d + 1 < offs.len() && offs[d + 1] as usize == a {
                d += 1;
                seg_start = a;
            }
            batch.position_ids[k] = (a - seg_start) as u32;
            batch.doc_start[k] = (a == seg_start) as u8;
            let next_is_start = d + 1 < offs.len() && offs[d + 1] as usize == a + 1;
            if a + 1 < real && !next_is_start {
                batch.labels[k] = ids[a + 1] as i64;
            }
        } else {
            if a == real || i == 0 {
                seg_start = a;
            }
            batch.position_ids[k] = (a - seg_start) as u32;
            batch.doc_start[k] = (a == seg_start) as u8;
        }
    }
}

/// The loader: a background thread building batches ahead through a bounded channel.
pub struct Feed {
    rx: Option<Receiver<Result<Batch>>>,
    worker: Option<JoinHandle<()>>,
    set: Arc<ShardSet>,
    fingerprint: String,
    last: FeedState,
    bad_rows: Arc<AtomicU64>,
}

impl Feed {
    /// Open the loader at the start of the stream, or at `resume` (a state saved from a
    /// batch), after checking that the shards and partitioning are unchanged.
    pub fn open(cfg: FeedConfig, resume: Option<FeedState>) -> Result<Feed> {
        cfg.validate()?;
        let set = Arc::new(ShardSet::discover(&cfg.data)?);
        let fingerprint = set.fingerprint();
        let bad_rows = Arc::new(AtomicU64::new(0));
        let mut cur = Cursor {
            set: set.clone(),
            cfg: cfg.clone(),
            fingerprint: fingerprint.clone(),
            epoch: 0,
            shard: 0,
            row: 0,
            offset: 0,
            samples: 0,
            steps: 0,
            order: Vec::new(),
            loaded: None,
            epoch_samples: 0,
            bad_rows: bad_rows.clone(),
        };
        if let Some(st) = &resume {
            st.check_compatible(&fingerprint, set.shards.len(), &cfg)?;
            if st.shard >= set.shards.len() as u64 {
                return Err(Error::msg(format!(
                    "cannot resume the loader: state names shard position {} of {}",
                    st.shard,
                    set.shards.len()
                )));
            }
            cur.epoch = st.epoch;
            cur.shard = st.shard as usize;
            cur.row = st.row as usize;
            cur.offset = st.offset as usize;
            cur.samples = st.samples;
            cur.steps = st.steps;
            // Only used to detect data without a single sample; a resumed cursor has seen some.
            cur.epoch_samples = 1;
        }
        cur.order = cur.order_for(cur.epoch);
        cur.normalize()?;
        let last = cur.state();
        let (tx, rx) = bounded(cfg.prefetch.max(1));
        let worker = std::thread::Builder::new()
            .name(format!("feed-r{}", cfg.rank))
            .spawn(move || loop {
                let b = cur.next_batch();
                let failed = b.is_err();
                if tx.send(b).is_err() || failed {
                    return;
                }
            })
            .map_err(|e| Error::msg(format!("feed: cannot start the prefetch thread: {e}")))?;
        Ok(Feed {
            rx: Some(rx),
            worker: Some(worker),
            set,
            fingerprint,
            last,
            bad_rows,
        })
    }

    /// The next batch (the stream never ends; it cycles through epochs).
    pub fn next_batch(&mut self) -> Result<Batch> {
        let rx = self
            .rx
            .as_ref()
            .ok_or_else(|| Error::msg("feed: loader already failed"))?;
        match rx.recv() {
            Ok(Ok(b)) => {
                self.last = b.state.clone();
                Ok(b)
            }
            Ok(Err(e)) => {
                self.rx = None;
                Err(e)
            }
            Err(_) => Err(Error::msg("feed: the prefetch thread stopped")),
        }
    }

    /// State after the last batch returned (or the opening state): save this with a
    /// checkpoint.
    pub fn state(&self) -> &FeedState {
        &self.last
    }

    /// The canonical shard list.
    pub fn shards(&self) -> &ShardSet {
        &self.set
    }

    /// The shard fingerprint.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Bad rows skipped so far (counted as shards are decoded, possibly ahead of use).
    pub fn bad_rows(&self) -> u64 {
        self.bad_rows.load(Ordering::Relaxed)
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        // Dropping the receiver makes the worker's next send fail, so it exits.
        self.rx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty(t: usize) -> Batch {
        Batch {
            step: 0,
            batch_size: 1,
            seq_len: t,
            input_ids: vec![0; t],
            labels: vec![IGNORE; t],
            position_ids: vec![0; t],
            doc_start: vec![0; t],
            cu_seqlens: vec![],
            max_seqlen: 0,
            seqs_per_row: vec![],
            samples: vec![],
            state: FeedState {
                magic: String::new(),
                version: 0,
                epoch: 0,
                shard: 0,
                row: 0,
                offset: 0,
                samples: 0,
                steps: 0,
                shards_sha256: String::new(),
                n_shards: 0,
                world_size: 1,
                batch_size: 1,
                seq_len: t as u64,
                seed: 0,
            },
        }
    }

    #[test]
    fn window_labels_positions_and_boundaries() {
        // Two documents [10 11 12] [20 21], then 2 pad tokens.
        let ids = [10, 11, 12, 20, 21, 0, 0];
        let mut b = empty(8);
        fill_window(&ids, 5, &[0, 3], 0, 8, 0, &mut b);
        assert_eq!(b.input_ids, vec![10, 11, 12, 20, 21, 0, 0, 0]);
        assert_eq!(
            b.labels,
            vec![11, 12, IGNORE, 21, IGNORE, IGNORE, IGNORE, IGNORE]
        );
        assert_eq!(b.position_ids, vec![0, 1, 2, 0, 1, 0, 1, 2]);
        assert_eq!(b.doc_start, vec![1, 0, 0, 1, 0, 1, 0, 0]);
        // Segments [0,3) [3,5) and the padding [5,8).
        assert_eq!(varlen(&b.doc_start, 8), (vec![0, 3, 5, 8], 3, vec![3]));
    }

    #[test]
    fn varlen_over_two_rows() {
        let ds = [1, 0, 0, 0, 1, 0, /* row 2 */ 1, 1, 0, 0, 0, 0];
        let (cu, max, per) = varlen(&ds, 6);
        assert_eq!(cu, vec![0, 4, 6, 7, 12]);
        assert_eq!(max, 5);
        assert_eq!(per, vec![2, 2]);
    }

    #[test]
    fn second_window_restarts_positions() {
        let ids = [10, 11, 12, 13, 14, 20, 21];
        let mut b = empty(3);
        fill_window(&ids, 7, &[0, 5], 3, 3, 0, &mut b);
        assert_eq!(b.input_ids, vec![13, 14, 20]);
        assert_eq!(b.labels, vec![14, IGNORE, 21]);
        assert_eq!(b.position_ids, vec![0, 1, 0]);
        assert_eq!(b.doc_start, vec![1, 0, 1]);
    }
}
