//! `parquet_shards`: the sink that writes training-ready Parquet shards.
//!
//! zstd compression by default (`compression: snappy` for old readers, `none` where CPU is
//! scarcer than disk); a new shard at `shard_size_bytes` or `shard_rows`; row groups of at
//! most `row_group_rows` rows or `row_group_bytes` buffered bytes, so readers can stream;
//! atomic writes (temp file, fsync, rename). Shard names derive from (node, rank, index):
//! `shards/<node>-r<rank>-<idx>.parquet`, so reruns and ranks never collide.
//!
//! Documents carrying `packed` (from the `pack` stage) are written with the packed schema
//! (`input_ids, n_tokens, doc_offsets, doc_ids, doc_urls, source_mix, n_pad, doc_starts`); others with the document
//! schema (`id, source, text, lang, url, tokens, n_tokens, n_chars, attrs, meta`), `attrs`
//! typed by the run's declared attributes (`crate::attrs`). See `crate::arrow_io`. One sink writes one schema: the first non-empty batch decides, and a
//! later batch of the other kind is an error. Packed sequences from a `pack` node with
//! length `buckets` go to one shard series per bucket, `<node>-r<rank>-L<tokens per row>-<idx>`,
//! so a trainer can read one sequence length at a time.
//!
//! The sink's own thread only cuts row groups and appends bytes: converting documents to
//! Arrow, encoding and compressing row groups all run on the run's worker pool, several at
//! once, and come back in order, and the file's sha256 is computed on a thread of its own.
//! So the sink keeps up with many cores and its files are the same for any thread count
//! (see `crate::shard_writer`).
//!
//! * Manifest: `licenses`: per licence (`meta.license`, or `unknown`), the tokens written
//!   and the packed rows holding it, or (document shards) the tokens, documents and text
//!   bytes.
//! * Reads: everything. Memory: up to `max(2, threads + 1)` input batches being converted, plus
//!   up to `threads + 2` row groups (each bounded by `row_group_bytes`, default 64 MiB, or
//!   `row_group_rows` rows).
//!
//! ```yaml
//! shards:
//!   kind: parquet_shards
//!   inputs: [tok]
//!   shard_size_bytes: 268435456
//!   write_text: true
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use arrow::array::RecordBatch;
use crossbeam_channel::Receiver;

use parquet::basic::{Compression, ZstdLevel};
use serde::{Deserialize, Serialize};

use crate::arrow_io;
use crate::attrs::AttrSchema;
use crate::document::{DocBatch, Document};
use crate::error::{Error, Result};
use crate::shard_writer::{
    inflight_limit, spawn_ordered, take_ordered, RotatingWriter, ShardLimits,
};
use crate::stage::{
    parse_config, BuildCtx, Checks, Kind, Node, Role, ShardInfo, Sink, StageConfig, NO_PORTS,
};

/// Config for `parquet_shards`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Start a new shard once the current one reaches this many bytes. Default 256 MiB.
    #[serde(default = "default_shard_size")]
    pub shard_size_bytes: u64,
    /// Start a new shard after this many rows. Default 1,000,000.
    #[serde(default = "default_shard_rows")]
    pub shard_rows: u64,
    /// Maximum rows per row group. Default 8192.
    #[serde(default = "default_rg_rows")]
    pub row_group_rows: usize,
    /// Flush a row group once it buffers this many (uncompressed) bytes. Default 64 MiB.
    #[serde(default = "default_rg_bytes")]
    pub row_group_bytes: usize,
    /// Page compression: `zstd` (default), `snappy` or `none`. zstd makes the smallest
    /// shards and is most of a pass-through run's CPU (level 1 compresses CJK text at
    /// about 375 MB/s per core); `snappy` is for readers without zstd (on the same text it
    /// costs as much CPU for shards about 25% larger); `none` writes nearly twice the bytes
    /// for about 40% less CPU. All three read in pyarrow, DuckDB and HF datasets.
    #[serde(default)]
    pub compression: Codec,
    /// zstd compression level (1-22), used when `compression: zstd`. Default 1, the
    /// default of pyarrow and parquet-rs: the fastest level; higher levels shrink text
    /// shards a few percent at a large cost.
    #[serde(default = "default_level")]
    pub zstd_level: i32,
    /// Write the `text` column (document schema only). Default true.
    #[serde(default = "default_true")]
    pub write_text: bool,
}

/// A Parquet page codec.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// zstd at `zstd_level`.
    #[default]
    Zstd,
    /// Snappy.
    Snappy,
    /// Uncompressed.
    None,
}

fn default_shard_size() -> u64 {
    256 << 20
}
fn default_shard_rows() -> u64 {
    1_000_000
}
fn default_rg_rows() -> usize {
    8192
}
fn default_rg_bytes() -> usize {
    64 << 20
}
fn default_level() -> i32 {
    1
}
fn default_true() -> bool {
    true
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        let mut c = Checks::new();
        c.at_least("shard_size_bytes", self.shard_size_bytes, 1);
        c.at_least("shard_rows", self.shard_rows, 1);
        c.at_least("row_group_rows", self.row_group_rows, 1);
        c.at_least("row_group_bytes", self.row_group_bytes, 1);
        c.int_range("zstd_level", self.zstd_level, 1, 22);
        c.into_vec()
    }
}

/// A batch turned into Arrow (on the pool), with each row's token count.
type Converted = Result<(RecordBatch, Vec<u64>)>;

/// The sink.
pub struct ParquetShards {
    cfg: Config,
    ctx: BuildCtx,
    /// Packed schema or document schema, fixed by the first non-empty batch.
    packed: Option<bool>,
    /// One writer per length bucket (key 0: no bucket).
    writers: BTreeMap<u32, RotatingWriter>,
    pool: Option<Arc<rayon::ThreadPool>>,
    /// Batches being converted to Arrow on the pool, oldest first, with their bucket.
    converting: VecDeque<(u32, Receiver<Converted>)>,
    /// Per-licence totals for the manifest.
    licenses: BTreeMap<String, LicenseTotals>,
    /// The run's `attrs` type (see `crate::attrs`), from the runtime.
    attrs: Arc<AttrSchema>,
}

impl ParquetShards {
    fn limits(&self) -> ShardLimits {
        ShardLimits {
            shard_size_bytes: self.cfg.shard_size_bytes,
            shard_rows: self.cfg.shard_rows,
            row_group_rows: self.cfg.row_group_rows,
            row_group_bytes: self.cfg.row_group_bytes,
            compression: match self.cfg.compression {
                Codec::Zstd => Compression::ZSTD(
                    ZstdLevel::try_new(self.cfg.zstd_level).expect("validated 1..=22"),
                ),
                Codec::Snappy => Compression::SNAPPY,
                Codec::None => Compression::UNCOMPRESSED,
            },
        }
    }

    /// The writer of bucket `key` (0: no bucket), created on first use.
    fn writer(&mut self, key: u32) -> &mut RotatingWriter {
        if !self.writers.contains_key(&key) {
            let schema = if self.packed == Some(true) {
                arrow_io::packed_schema()
            } else {
                arrow_io::doc_schema(self.cfg.write_text, &self.attrs)
            };
            let mut stem = format!("{}-r{:04}", self.ctx.node, self.ctx.rank);
            if key > 0 {
                stem.push_str(&format!("-L{key}"));
            }
            let w = RotatingWriter::new(
                self.ctx.out_dir.clone(),
                "shards",
                stem,
                self.ctx.node.clone(),
                schema,
                self.limits(),
            )
            .with_pool(self.pool.clone());
            self.writers.insert(key, w);
        }
        self.writers.get_mut(&key).expect("just inserted")
    }

    /// Hand converted batches to the writer in arrival order: those already done, and
    /// (blocking) the oldest while more than `keep` are in flight.
    fn drain(&mut self, keep: usize) -> Result<()> {
        while let Some((key, front)) = self.converting.front() {
            let key = *key;
            let Some(done) = take_ordered(front, self.converting.len() > keep)? else {
                break;
            };
            self.converting.pop_front();
            let (rb, tokens) = done?;
            self.writer(key).write(&rb, &tokens)?;
        }
        Ok(())
    }
}

/// What the sink wrote under one licence (manifest `nodes.<sink>.licenses`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct LicenseTotals {
    /// Tokens (packed rows: from `source_mix`, padding excluded; documents: `n_tokens`).
    pub tokens: u64,
    /// Packed rows holding tokens of this licence (packed shards only).
    #[serde(skip_serializing_if = "is_zero")]
    pub rows: u64,
    /// Documents (document shards only).
    #[serde(skip_serializing_if = "is_zero")]
    pub documents: u64,
    /// Text bytes (document shards only; packed rows carry no text).
    #[serde(skip_serializing_if = "is_zero")]
    pub bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ParquetShards {
    /// Add a batch's documents to the per-licence totals.
    fn count_licenses(&mut self, docs: &[Document]) {
        for d in docs {
            match &d.packed {
                Some(p) => {
                    let mut seen: Vec<&str> = Vec::new();
                    for ((_, lic), t) in &p.source_mix {
                        let e = self.licenses.entry(lic.clone()).or_default();
                        e.tokens += *t as u64;
                        if !seen.contains(&lic.as_str()) {
                            seen.push(lic);
                            e.rows += 1;
                        }
                    }
                }
                None => {
                    let lic = d
                        .meta
                        .get("license")
                        .map_or(crate::stage::UNKNOWN_LICENSE, |l| l.as_str());
                    let e = self.licenses.entry(lic.to_string()).or_default();
                    e.documents += 1;
                    e.bytes += d.text.len() as u64;
                    e.tokens += d.tokens.as_ref().map_or(0, |t| t.len() as u64);
                }
            }
        }
    }
}

/// Documents → Arrow rows (document or packed schema) and each row's token count (padding
/// excluded). The documents are dropped here too, so freeing them costs the caller nothing.
fn convert(docs: Vec<Document>, packed: bool, with_text: bool, attrs: &AttrSchema) -> Converted {
    let rb = if packed {
        arrow_io::packed_to_batch(&docs)?
    } else {
        arrow_io::docs_to_batch(&docs, with_text, attrs)?
    };
    let tokens = docs
        .iter()
        .map(|d| {
            let n = d.tokens.as_ref().map(|t| t.len() as u64).unwrap_or(0);
            n - d
                .packed
                .as_ref()
                .map(|p| p.n_pad as u64)
                .unwrap_or(0)
                .min(n)
        })
        .collect();
    Ok((rb, tokens))
}

impl Sink for ParquetShards {
    fn use_pool(&mut self, pool: Arc<rayon::ThreadPool>) {
        self.pool = Some(pool);
    }

    fn use_attrs(&mut self, attrs: Arc<AttrSchema>) {
        self.attrs = attrs;
    }

    fn write(&mut self, batch: DocBatch) -> Result<()> {
        if batch.docs.is_empty() {
            return Ok(());
        }
        let is_packed = *self.packed.get_or_insert(batch.docs[0].packed.is_some());
        if let Some(d) = batch.docs.iter().find(|d| d.packed.is_some() != is_packed) {
            let (is, was) = match is_packed {
                true => ("a plain document", "packed sequences"),
                false => ("a packed sequence", "plain documents"),
            };
            return Err(Error::data(
                &d.id,
                format!(
                    "is {is}, but this parquet_shards sink already received {was}; use two sinks"
                ),
            ));
        }
        self.count_licenses(&batch.docs);
        let key = |d: &Document| d.packed.as_ref().and_then(|p| p.bucket).unwrap_or(0);
        let first = key(&batch.docs[0]);
        let groups: Vec<(u32, Vec<Document>)> = if batch.docs.iter().all(|d| key(d) == first) {
            vec![(first, batch.docs)]
        } else {
            // Length buckets: one group per bucket, rows in arrival order within each.
            let mut g: BTreeMap<u32, Vec<Document>> = BTreeMap::new();
            for d in batch.docs {
                g.entry(key(&d)).or_default().push(d);
            }
            g.into_iter().collect()
        };
        // Converting to Arrow (and freeing the documents) runs on the pool, several
        // batches at once; the writers still receive them strictly in order.
        let with_text = self.cfg.write_text;
        for (k, docs) in groups {
            self.writer(k);
            let attrs = self.attrs.clone();
            self.converting.push_back((
                k,
                spawn_ordered(self.pool.as_deref(), move || {
                    convert(docs, is_packed, with_text, &attrs)
                }),
            ));
        }
        self.drain(inflight_limit(self.pool.as_deref()))
    }

    fn manifest(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "licenses": self.licenses }))
    }

    fn finish(&mut self) -> Result<Vec<ShardInfo>> {
        self.drain(0)?;
        let mut all = Vec::new();
        for w in self.writers.values_mut() {
            all.extend(w.finish()?);
        }
        Ok(all)
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "parquet_shards",
        doc: "Write documents (or packed sequences) to compressed (zstd by default) Parquet shards with atomic commits.",
        role: Role::Sink,
        ports: NO_PORTS,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Sink(Box::new(ParquetShards {
                cfg,
                ctx: ctx.clone(),
                packed: None,
                writers: BTreeMap::new(),
                pool: None,
                converting: VecDeque::new(),
                licenses: BTreeMap::new(),
                attrs: Arc::default(),
            })))
        },
    }
}
