//! The contracts every node implements: [`Source`], [`Transform`], [`Stage`], [`Sink`],
//! the [`Emitter`] that routes documents to named ports, and the [`Kind`] registry entry.
//!
//! **Push, not pull.** The runtime owns the loop and calls `process`; a stage is a plain
//! method, not a `poll_next` state machine. The work is CPU-bound, so threads, bounded
//! channels and rayon are enough.
//!
//! * [`Transform`] is stateless (`&self`): the runtime runs it over many batches at once on
//!   the rayon pool and restores order by batch `seq`, so output is byte-identical at any
//!   thread count.
//! * [`Stage`] is stateful (`&mut self`): it sees batches strictly in `seq` order and may
//!   flush in [`Stage::finish`].
//! * [`Source`] lists its splits (usually files) in a stable order; the runtime keeps the
//!   splits of this rank (`index % world_size == rank`) and calls [`Source::read`] on each.
//! * [`Sink`] writes batches and reports the shards it finished.
//!
//! What a builder gets ([`BuildCtx`], [`RunSettings`], the [`Kind`] registry entry) is in
//! `ctx.rs`; parsing a node's parameters into its typed config, with every problem worded
//! the same way ([`parse_config`], [`Checks`]), in `params.rs`. Everything is re-exported
//! here, so `crate::stage::X` is the one path.

use std::path::PathBuf;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::document::{DocBatch, Document, RejectInfo};
use crate::error::{Error, Result};

mod ctx;
mod params;

pub use ctx::{source_license, BuildCtx, BuildFn, Kind, RunSettings, StageConfig, UNKNOWN_LICENSE};
pub use params::{
    check_file, describe_value, deserialize_fields, field_problem, humanize_serde, parse_config,
    problem, unknown_field_message, Checks, Fields,
};

/// Standard port names.
pub const OUT: &str = "out";
/// Standard port for rejected documents.
pub const REJECTED: &str = "rejected";
/// Ports of an ordinary source or transform.
pub const OUT_REJECTED: &[&str] = &[OUT, REJECTED];
/// A sink has no output ports.
pub const NO_PORTS: &[&str] = &[];

/// A runtime hook that receives a port's documents early, see [`Emitter::flush`]. It may
/// borrow the runtime's output state for the emitter's lifetime `'a`.
pub type FlushFn<'a> = Box<dyn FnMut(usize, Vec<Document>) -> Result<()> + Send + 'a>;

/// Collects the documents a node emits during one `process`/`finish` call, per port.
/// (The lifetime only matters for an emitter with a flush hook; `Emitter::new` gives
/// `Emitter<'static>`, and `&mut Emitter` in signatures elides it.)
pub struct Emitter<'a> {
    names: &'static [&'static str],
    ports: Vec<Vec<Document>>,
    flush_hook: Option<FlushFn<'a>>,
}

impl std::fmt::Debug for Emitter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("names", &self.names)
            .field("ports", &self.ports)
            .field("flush_hook", &self.flush_hook.is_some())
            .finish()
    }
}

impl<'a> Emitter<'a> {
    /// An emitter for the given port names.
    pub fn new(names: &'static [&'static str]) -> Self {
        Emitter {
            names,
            ports: names.iter().map(|_| Vec::new()).collect(),
            flush_hook: None,
        }
    }
    /// An emitter whose [`Emitter::flush`] hands documents to `hook(port index, docs)` at
    /// once. The runtime uses this for [`Stage::finish`], so a stage that releases a large
    /// state at the end (`mix`, `pack`) streams it out instead of holding it all.
    pub fn with_flush(names: &'static [&'static str], hook: FlushFn<'a>) -> Self {
        let mut e = Emitter::new(names);
        e.flush_hook = Some(hook);
        e
    }
    /// Hand what was emitted so far to the runtime now, if it installed a hook; otherwise
    /// a no-op (documents are then forwarded when the call returns, as usual). Stages call
    /// this every few thousand documents while flushing state in `finish`.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(h) = self.flush_hook.as_mut() {
            for (i, port) in self.ports.iter_mut().enumerate() {
                if !port.is_empty() {
                    h(i, std::mem::take(port))?;
                }
            }
        }
        Ok(())
    }
    /// Send a document to the `out` port (always the first port).
    pub fn emit(&mut self, doc: Document) {
        self.ports[0].push(doc);
    }
    /// Send a document to the `rejected` port with a reason, an optional score and detail.
    pub fn reject(
        &mut self,
        mut doc: Document,
        reason: &str,
        score: Option<f64>,
        detail: impl Into<String>,
    ) {
        doc.reject = Some(RejectInfo {
            stage: String::new(),
            reason: reason.to_string(),
            score,
            detail: detail.into(),
        });
        self.emit_to(REJECTED, doc);
    }
    /// Send a document to a named port. Panics only on a programming error (a port the
    /// stage did not declare), never on data.
    pub fn emit_to(&mut self, port: &str, doc: Document) {
        let i = self
            .names
            .iter()
            .position(|p| *p == port)
            .unwrap_or_else(|| panic!("stage emitted to undeclared port `{port}`"));
        self.ports[i].push(doc);
    }
    /// Port names.
    pub fn names(&self) -> &'static [&'static str] {
        self.names
    }
    /// Take the documents emitted to port `i`.
    pub fn take(&mut self, i: usize) -> Vec<Document> {
        std::mem::take(&mut self.ports[i])
    }
    /// Total documents held.
    pub fn len(&self) -> usize {
        self.ports.iter().map(|p| p.len()).sum()
    }
    /// Whether no documents are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A stateless transform. `process` takes `&self`, so the runtime may call it on many
/// batches at once. Use atomics or a mutex for counters reported through `stats`.
pub trait Transform: Send + Sync {
    /// Process one batch, emitting every document to some port.
    fn process(&self, batch: DocBatch, out: &mut Emitter) -> Result<()>;
    /// The attributes this node may set on documents (see `crate::attrs`): every key it
    /// writes to `Document::attrs`, typed. The run's shard schema is built from these.
    fn attrs(&self) -> Vec<crate::attrs::AttrDecl> {
        Vec::new()
    }
    /// Extra statistics merged into `stats.json` under this node.
    fn stats(&self) -> Option<serde_json::Value> {
        None
    }
    /// Extra entries merged into `manifest.json` under `nodes.<name>`.
    fn manifest(&self) -> Option<serde_json::Value> {
        None
    }
}

/// How a node's documents in relate to its documents out: the runtime checks this at the
/// end of every run (see `runtime::check_accounting`), so no document leaves without a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accounting {
    /// Every document in leaves through exactly one port (`out`, `rejected` or another).
    Conserving,
    /// Every document in leaves through a port, and `extra` additional copies were emitted
    /// (upsampling): `in + extra = Σ ports`.
    Copies {
        /// Copies emitted beyond the first of each document.
        extra: u64,
    },
    /// Documents are merged into rows (`pack`): `consumed` documents went into rows and the
    /// rest left through `rejected`: `in = consumed + rejected`.
    Merging {
        /// Documents merged into output rows.
        consumed: u64,
    },
}

/// A stateful stage. Sees batches in `seq` order.
pub trait Stage: Send {
    /// How documents in relate to documents out; checked by the runtime after `finish`.
    fn accounting(&self) -> Accounting {
        Accounting::Conserving
    }
    /// Process one batch.
    fn process(&mut self, batch: DocBatch, out: &mut Emitter) -> Result<()>;
    /// The attributes this node may set on documents (see `crate::attrs`).
    fn attrs(&self) -> Vec<crate::attrs::AttrDecl> {
        Vec::new()
    }
    /// The run's attribute schema, for a stage that writes documents itself (`pack`'s
    /// document index); given before the first batch.
    fn use_attrs(&mut self, _attrs: Arc<crate::attrs::AttrSchema>) {}
    /// Called once after the last batch of every input; flush buffered documents here.
    fn finish(&mut self, _out: &mut Emitter) -> Result<()> {
        Ok(())
    }
    /// Extra statistics merged into `stats.json` under this node.
    fn stats(&self) -> Option<serde_json::Value> {
        None
    }
    /// Extra entries merged into `manifest.json` under `nodes.<name>`.
    fn manifest(&self) -> Option<serde_json::Value> {
        None
    }
}

/// The context a source pushes documents into. It batches, applies backpressure,
/// counts bad records against the run's budget, and notices cancellation.
pub trait SourceSink {
    /// Push a document to `out`.
    fn emit(&mut self, doc: Document) -> Result<()>;
    /// Push a document to `rejected` with a reason.
    fn reject(
        &mut self,
        doc: Document,
        reason: &str,
        score: Option<f64>,
        detail: String,
    ) -> Result<()>;
    /// Count a bad record (skipped input that could not become a document).
    /// `location` is e.g. `file.jsonl:42` or `file.warc.gz@1234`. Fails once the budget is spent.
    fn bad_record(&mut self, location: &str, reason: &str) -> Result<()>;
    /// Report raw input bytes consumed, for progress and stats.
    fn bytes_read(&mut self, n: u64);
}

/// A source of documents.
pub trait Source: Send {
    /// The splits (usually file paths) in a stable order. The runtime assigns split `i`
    /// to rank `i % world_size`.
    fn splits(&self) -> Result<Vec<String>>;
    /// Read one split, pushing documents into `ctx`.
    fn read(&mut self, split: &str, ctx: &mut dyn SourceSink) -> Result<()>;
    /// Extra statistics merged into `stats.json` under this node.
    fn stats(&self) -> Option<serde_json::Value> {
        None
    }
}

/// One finished output file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ShardInfo {
    /// Path relative to the run directory, `/`-separated.
    pub path: String,
    /// Node that wrote it.
    pub node: String,
    /// Rows in the file.
    pub rows: u64,
    /// Sum of `n_tokens` over rows.
    pub tokens: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// sha256 of the file bytes, hex.
    pub sha256: String,
}

/// A sink writes batches (in `seq` order) and reports its finished files.
pub trait Sink: Send {
    /// Called once before the first batch with the run's worker pool (`--threads`). `write`
    /// and `finish` run on the sink's own thread, not on the pool, so a sink may hand work
    /// to the pool (e.g. encoding row groups) and block waiting for it.
    fn use_pool(&mut self, _pool: Arc<rayon::ThreadPool>) {}
    /// The run's attribute schema (the `attrs` column type), given before the first write.
    fn use_attrs(&mut self, _attrs: Arc<crate::attrs::AttrSchema>) {}
    /// Write one batch.
    fn write(&mut self, batch: DocBatch) -> Result<()>;
    /// `Conserving` (default): every document in is one row of the files `finish` returns.
    /// `Merging { consumed }`: documents are folded into other state (an index, a side file).
    fn accounting(&self) -> Accounting {
        Accounting::Conserving
    }
    /// Flush and close; return every file written.
    fn finish(&mut self) -> Result<Vec<ShardInfo>>;
    /// Extra entries merged into `manifest.json` under `nodes.<name>`.
    fn manifest(&self) -> Option<serde_json::Value> {
        None
    }
}

/// A built node.
pub enum Node {
    /// Produces documents.
    Source(Box<dyn Source>),
    /// Stateless, parallel across batches.
    Transform(Arc<dyn Transform>),
    /// Stateful, sequential.
    Stage(Box<dyn Stage>),
    /// Consumes documents and writes files.
    Sink(Box<dyn Sink>),
}

/// What a node kind is, for graph checks before anything is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No inputs.
    Source,
    /// Stateless transform.
    Transform,
    /// Stateful stage.
    Stage,
    /// Sink (no output ports).
    Sink,
}
