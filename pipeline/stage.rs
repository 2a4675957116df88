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

use std::path::PathBuf;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::document::{DocBatch, Document, RejectInfo};
use crate::error::{Error, Result};

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
    /// Extra statistics merged into `stats.json` under this node.
    fn stats(&self) -> Option<serde_json::Value> {
        None
    }
    /// Extra entries merged into `manifest.json` under `nodes.<name>`.
    fn manifest(&self) -> Option<serde_json::Value> {
        None
    }
}

/// A stateful stage. Sees batches in `seq` order.
pub trait Stage: Send {
    /// Process one batch.
    fn process(&mut self, batch: DocBatch, out: &mut Emitter) -> Result<()>;
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
    /// Write one batch.
    fn write(&mut self, batch: DocBatch) -> Result<()>;
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

/// Run-wide settings (the `run:` section of the config).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// Documents per batch produced by sources. Default 256.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Batches buffered on each edge (backpressure). Default 4.
    #[serde(default = "default_queue_batches")]
    pub queue_batches: usize,
    /// Bad records tolerated per source before the run fails. Default 1000.
    #[serde(default = "default_max_bad_records")]
    pub max_bad_records: u64,
    /// Characters of text kept in `rejects/` rows. Default 200.
    #[serde(default = "default_reject_prefix_chars")]
    pub reject_prefix_chars: usize,
    /// Reject rows per rejects file before rotating. Default 500000.
    #[serde(default = "default_reject_shard_rows")]
    pub reject_shard_rows: usize,
    /// Largest document text, in bytes, any source may emit. A bigger one goes to the
    /// source's `rejected` port as `too_large` (score = its size in bytes) right after the
    /// source, so no stage ever holds it. Bounds every stage's working memory (see
    /// `docs/memory.md`). Default 67108864 (64 MiB).
    #[serde(default = "default_max_doc_bytes")]
    pub max_doc_bytes: u64,
}

fn default_batch_size() -> usize {
    256
}
fn default_queue_batches() -> usize {
    4
}
fn default_max_bad_records() -> u64 {
    1000
}
fn default_reject_prefix_chars() -> usize {
    200
}
fn default_reject_shard_rows() -> usize {
    500_000
}
fn default_max_doc_bytes() -> u64 {
    64 << 20
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            batch_size: default_batch_size(),
            queue_batches: default_queue_batches(),
            max_bad_records: default_max_bad_records(),
            reject_prefix_chars: default_reject_prefix_chars(),
            reject_shard_rows: default_reject_shard_rows(),
            max_doc_bytes: default_max_doc_bytes(),
        }
    }
}

/// Everything a builder may need to know about where and how it runs.
#[derive(Debug, Clone)]
pub struct BuildCtx {
    /// Node name.
    pub node: String,
    /// Names of this node's inputs as written in the config (`node` or `node.port`).
    pub inputs: Vec<String>,
    /// Run-wide settings.
    pub run: RunSettings,
    /// Run directory.
    pub out_dir: PathBuf,
    /// Private scratch directory for this node and rank (created on demand by the stage).
    pub scratch_dir: PathBuf,
    /// This process's rank.
    pub rank: usize,
    /// Number of ranks.
    pub world_size: usize,
    /// Worker threads.
    pub threads: usize,
    /// True for `sluice validate`: check everything, but do not create files.
    pub validate_only: bool,
}

impl BuildCtx {
    /// A context for tests and tools: rank 0 of 1, scratch under the given dir.
    pub fn for_tests(node: &str, out_dir: impl Into<PathBuf>) -> Self {
        let out_dir = out_dir.into();
        BuildCtx {
            node: node.to_string(),
            inputs: vec![],
            run: RunSettings::default(),
            scratch_dir: out_dir.join("tmp").join(node),
            out_dir,
            rank: 0,
            world_size: 1,
            threads: 1,
            validate_only: false,
        }
    }
}

/// A stage's typed config. `validate` returns every semantic problem (bad values,
/// missing files); the node name is prefixed by the caller.
pub trait StageConfig: DeserializeOwned + schemars::JsonSchema {
    /// Semantic checks beyond types. Return all problems, not just the first.
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        Vec::new()
    }
}

/// Builder signature: typed parameters in, a node (or every problem) out.
pub type BuildFn = fn(&serde_json::Value, &BuildCtx) -> std::result::Result<Node, Vec<String>>;

/// A registry entry: maps a config `kind:` to a builder.
#[derive(Clone)]
pub struct Kind {
    /// The `kind:` string, equal to the module name.
    pub name: &'static str,
    /// One-line description for `sluice stages`.
    pub doc: &'static str,
    /// Role, for graph checks.
    pub role: Role,
    /// Output ports.
    pub ports: &'static [&'static str],
    /// JSON schema of the config (field names, types, defaults, docs).
    pub schema: fn() -> schemars::Schema,
    /// Builder.
    pub build: BuildFn,
}

/// Parse and validate a typed config from node parameters.
///
/// Unknown fields are all reported, each with the nearest valid name; type errors come
/// from serde; then [`StageConfig::validate`] adds semantic problems.
pub fn parse_config<C: StageConfig>(
    params: &serde_json::Value,
    ctx: &BuildCtx,
) -> std::result::Result<C, Vec<String>> {
    let mut problems = Vec::new();
    let schema = schemars::schema_for!(C);
    let allowed: Vec<String> = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    if let Some(obj) = params.as_object() {
        for key in obj.keys() {
            if !allowed.iter().any(|a| a == key) {
                problems.push(unknown_field_message(key, &allowed));
            }
        }
    } else if !params.is_null() {
        problems.push("parameters must be a mapping".to_string());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let params = if params.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        params.clone()
    };
    let cfg: C = match serde_json::from_value(params) {
        Ok(c) => c,
        Err(e) => return Err(vec![format!("bad value: {e}")]),
    };
    let sem = cfg.validate(ctx);
    if sem.is_empty() {
        Ok(cfg)
    } else {
        Err(sem)
    }
}

/// `unknown field `x`` with a "did you mean" suggestion from the allowed names.
pub fn unknown_field_message(key: &str, allowed: &[String]) -> String {
    let best = allowed
        .iter()
        .map(|a| (strsim::jaro_winkler(key, a), a))
        .filter(|(s, _)| *s > 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, a)) => format!("unknown field `{key}` (did you mean `{a}`?)"),
        None if allowed.is_empty() => {
            format!("unknown field `{key}` (this kind takes no parameters)")
        }
        None => format!(
            "unknown field `{key}`; valid fields: {}",
            allowed.join(", ")
        ),
    }
}

/// Check that a path exists (for `validate`), returning a problem message if not.
pub fn check_file(field: &str, path: &std::path::Path) -> Option<String> {
    if path.is_file() {
        None
    } else {
        Some(format!("{field}: file not found: {}", path.display()))
    }
}

/// Convert any error into a one-element problem list (for builders).
pub fn problem(e: impl std::fmt::Display) -> Vec<String> {
    vec![e.to_string()]
}

/// Convenience: turn an `Error` from building into problems.
impl From<Error> for Vec<String> {
    fn from(e: Error) -> Self {
        vec![e.to_string()]
    }
}
