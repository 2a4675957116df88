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
    /// Licences the run may use: every source's `license` (an undeclared one counts as
    /// `unknown`) must be in this list, or the run fails before reading anything, naming
    /// each offending source. Default: none (every licence allowed). See docs/compliance.md.
    #[serde(default)]
    pub allowed_licenses: Option<Vec<String>>,
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

impl RunSettings {
    /// Values that parse but make no sense (a batch of zero documents, ...).
    pub fn check(&self) -> Vec<String> {
        let mut c = Checks::new();
        c.at_least("batch_size", self.batch_size, 1);
        c.at_least("queue_batches", self.queue_batches, 1);
        c.at_least("reject_shard_rows", self.reject_shard_rows, 1);
        c.into_vec()
    }
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
            allowed_licenses: None,
        }
    }
}

/// The licence a source node declares (`license:` in its parameters), or `unknown`.
pub const UNKNOWN_LICENSE: &str = "unknown";

/// The `license` and `terms_url` a source node's parameters declare. Every source kind
/// takes both fields; the runtime writes them into each document's `meta` (`license`,
/// `terms_url`), with `input`, the file or URI the document was read from.
pub fn source_license(params: &serde_json::Value) -> (Option<String>, Option<String>) {
    let get = |k: &str| {
        params
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    (get("license"), get("terms_url"))
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

impl BuildCtx {
    /// The context `sluice validate` builds nodes with: rank 0 of 1, nothing created.
    pub fn for_validation(run: &RunSettings) -> Self {
        let mut ctx = BuildCtx::for_tests("", "out");
        ctx.run = run.clone();
        ctx.validate_only = true;
        ctx
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
/// Every problem is reported, not only the first: each unknown field (with the nearest
/// valid name), each field whose value has the wrong type (see [`deserialize_fields`]),
/// then [`StageConfig::validate`]'s semantic problems. The semantic checks run on the
/// fields that did deserialize (a bad field takes its default meanwhile), and a semantic
/// problem that names a bad field is dropped, since its value was never the user's.
pub fn parse_config<C: StageConfig>(
    params: &serde_json::Value,
    ctx: &BuildCtx,
) -> std::result::Result<C, Vec<String>> {
    let mut fields = deserialize_fields::<C>(params);
    let Some(cfg) = fields.value.take() else {
        return Err(fields.problems);
    };
    let problems = fields.with_checks(cfg.validate(ctx), params);
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(problems)
    }
}

/// The top-level field a problem names (`field "a.b": ...` or `unknown field "a" ...`).
fn problem_field(p: &str) -> Option<&str> {
    let rest = p
        .strip_prefix("field \"")
        .or_else(|| p.strip_prefix("unknown field \""))?;
    let end = rest.find(['"', '.', '['])?;
    Some(&rest[..end])
}

/// What [`deserialize_fields`] found.
#[derive(Debug)]
pub struct Fields<C> {
    /// The config built from the good fields (bad ones left at their defaults), or `None`
    /// when that is impossible (a required field is missing or bad, or the value is not a
    /// mapping).
    pub value: Option<C>,
    /// Every problem, as `field "name": ...` or `unknown field "name" ...`.
    pub problems: Vec<String>,
    /// Top-level keys that were unknown or had a bad value.
    pub bad: Vec<String>,
}

/// Deserialize a typed config from a mapping, reporting every unknown field and every
/// field with a bad value, each by name (`field "languages.zh.min_chars": ...`).
///
/// serde stops at the first error, so this deserializes, takes the failing path from
/// `serde_path_to_error`, drops that value and tries again, until the rest deserializes.
/// A dropped optional field falls back to its default. A required field that is missing
/// or bad leaves `value: None` (so no semantic checks), but every other field is still
/// checked: serde reports a bad value as it reads the key, and a missing field only
/// after the last key.
pub fn deserialize_fields<C: DeserializeOwned + schemars::JsonSchema>(
    params: &serde_json::Value,
) -> Fields<C> {
    use serde_json::Value;
    let allowed = crate::config::schema_fields(&schemars::schema_for!(C));
    let mut out = Fields {
        value: None,
        problems: Vec::new(),
        bad: Vec::new(),
    };
    let mut obj = match params {
        Value::Null => serde_json::Map::new(),
        Value::Object(o) => o.clone(),
        other => {
            out.problems.push(format!(
                "expected a mapping of parameters, got {}",
                describe_value(other)
            ));
            return out;
        }
    };
    for key in obj.keys() {
        if !allowed.contains(key) {
            out.problems.push(unknown_field_message(key, &allowed));
            out.bad.push(key.clone());
        }
    }
    obj.retain(|k, _| allowed.contains(k));
    let mut work = Value::Object(obj);
    // Paths already reported, so a required field dropped for a bad value is not also
    // reported as missing.
    let mut reported: Vec<String> = Vec::new();
    // Each round removes one value, so this ends; the bound is a guard against a config
    // type whose errors carry no usable path.
    for _ in 0..1000 {
        let err = match serde_path_to_error::deserialize::<_, C>(&work) {
            Ok(c) => {
                out.value = Some(c);
                return out;
            }
            Err(e) => e,
        };
        let segs: Vec<serde_path_to_error::Segment> = err.path().iter().cloned().collect();
        let inner = err.inner().to_string();
        let (at, problem) = match missing_field(&inner) {
            Some(field) => {
                let mut full = segs.clone();
                full.push(serde_path_to_error::Segment::Map { key: field.clone() });
                let p = path_string(&full);
                let problem = (!reported.contains(&p)).then(|| {
                    reported.push(p.clone());
                    field_problem(&p, "missing (this field is required)")
                });
                (segs, problem)
            }
            None => {
                let p = path_string(&segs);
                reported.push(p.clone());
                let msg = humanize_serde(&inner);
                let problem = if segs.is_empty() {
                    msg
                } else {
                    field_problem(&p, msg)
                };
                (segs, Some(problem))
            }
        };
        out.problems.extend(problem);
        if let Some(serde_path_to_error::Segment::Map { key }) = at.first() {
            if !out.bad.contains(key) {
                out.bad.push(key.clone());
            }
        }
        if !remove_at(&mut work, &at, &mut reported) {
            return out;
        }
    }
    out
}

impl<C> Fields<C> {
    /// These problems plus the semantic ones in `checks`, less those that name a bad
    /// field (its value was never the user's), in the order the fields are written in
    /// `params`, so the report reads like the file.
    pub fn with_checks(self, checks: Vec<String>, params: &serde_json::Value) -> Vec<String> {
        let bad = self.bad;
        let mut problems = self.problems;
        problems.extend(
            checks
                .into_iter()
                .filter(|p| !bad.iter().any(|b| p.contains(&format!("\"{b}\"")))),
        );
        if let Some(obj) = params.as_object() {
            let pos = |p: &String| {
                problem_field(p)
                    .and_then(|f| obj.keys().position(|k| k == f))
                    .unwrap_or(usize::MAX)
            };
            problems.sort_by_key(pos);
        }
        problems
    }
}

/// The field name in serde's `missing field `x``.
fn missing_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// `a.b[2].c` for a serde path.
fn path_string(segs: &[serde_path_to_error::Segment]) -> String {
    use serde_path_to_error::Segment;
    let mut s = String::new();
    for seg in segs {
        match seg {
            Segment::Seq { index } => s.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(key);
            }
            Segment::Unknown => s.push_str(".?"),
        }
    }
    s
}

/// Remove the value at `segs` from `v` so the next round gets past it. A list element
/// takes its whole list with it (removing one element would shift the indices of the
/// next errors). Returns false when nothing could be removed.
fn remove_at(
    v: &mut serde_json::Value,
    segs: &[serde_path_to_error::Segment],
    reported: &mut Vec<String>,
) -> bool {
    use serde_path_to_error::Segment;
    let key_of = |s: &Segment| match s {
        Segment::Map { key } | Segment::Enum { variant: key } => Some(key.clone()),
        _ => None,
    };
    // The longest prefix that ends in a mapping key.
    let Some(last) = segs.iter().rposition(|s| key_of(s).is_some()) else {
        return false;
    };
    let mut cur = &mut *v;
    for seg in &segs[..last] {
        let next = match (seg, cur) {
            (Segment::Seq { index }, serde_json::Value::Array(a)) => a.get_mut(*index),
            (s, serde_json::Value::Object(o)) => key_of(s).and_then(|k| o.get_mut(&k)),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    let key = key_of(&segs[last]).unwrap_or_default();
    // Rebuilt rather than `remove`d: that may swap the last key into the hole, and the
    // keys' order is the order in which the next errors are found.
    let removed = match cur.as_object_mut() {
        Some(o) if o.contains_key(&key) => {
            *o = std::mem::take(o)
                .into_iter()
                .filter(|(k, _)| *k != key)
                .collect();
            true
        }
        _ => false,
    };
    if removed {
        reported.push(path_string(&segs[..=last]));
    }
    removed
}

/// A short description of a JSON value for messages: `a list`, `the string "x"`, ...
pub fn describe_value(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

/// serde's message in the words of a YAML file: `expected usize` becomes `expected an
/// integer`, `unknown variant` lists the choices with a "did you mean".
pub fn humanize_serde(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        let (got, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let choices: Vec<String> = tail
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        let hint = crate::graph::nearest(got, &choices)
            .map(|c| format!(" (did you mean \"{c}\"?)"))
            .unwrap_or_default();
        return format!(
            "unknown value \"{got}\"{hint}; expected one of: {}",
            choices.join(", ")
        );
    }
    let Some((head, expected)) = msg.rsplit_once(", expected ") else {
        return msg.to_string();
    };
    let negative = head.starts_with("invalid value: integer `-");
    let expected = match expected {
        "usize" | "u8" | "u16" | "u32" | "u64" | "u128" if negative => {
            "a non-negative integer".to_string()
        }
        "u8" | "u16" | "u32" if head.starts_with("invalid value: integer") => {
            let max: u64 = match expected {
                "u8" => u8::MAX.into(),
                "u16" => u16::MAX.into(),
                _ => u32::MAX.into(),
            };
            format!("an integer at most {max}")
        }
        "usize" | "u8" | "u16" | "u32" | "u64" | "u128" | "isize" | "i8" | "i16" | "i32"
        | "i64" | "i128" => "an integer".to_string(),
        "f32" | "f64" => "a number".to_string(),
        "a map" => "a mapping".to_string(),
        "a sequence" => "a list".to_string(),
        "path string" => "a path (a string)".to_string(),
        e if e.starts_with("struct ") || e.starts_with("map") => "a mapping".to_string(),
        e => e.to_string(),
    };
    format!("{head}, expected {expected}")
}

/// `field "name": message`, the form of every per-field problem.
pub fn field_problem(field: &str, msg: impl std::fmt::Display) -> String {
    format!("field \"{field}\": {msg}")
}

/// Collects a config's semantic problems, each naming its field, in the one wording the
/// whole project uses (`field "threshold": expected a number in [0, 1], got 1.5`).
#[derive(Debug, Default)]
pub struct Checks {
    problems: Vec<String>,
}

impl Checks {
    /// No problems yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// A free-form problem with a field.
    pub fn problem(&mut self, field: &str, msg: impl std::fmt::Display) {
        self.problems.push(field_problem(field, msg));
    }
    /// An integer that must be at least `min` (sizes and counts: `min` is 1).
    pub fn at_least<T: PartialOrd + std::fmt::Display>(&mut self, field: &str, v: T, min: T) {
        if v < min {
            self.problem(field, format!("expected an integer >= {min}, got {v}"));
        }
    }
    /// An optional integer that, when set, must be at least `min`.
    pub fn at_least_opt<T: PartialOrd + std::fmt::Display>(
        &mut self,
        field: &str,
        v: Option<T>,
        min: T,
    ) {
        if let Some(v) = v {
            self.at_least(field, v, min);
        }
    }
    /// An integer within `[lo, hi]`.
    pub fn int_range<T: PartialOrd + std::fmt::Display>(
        &mut self,
        field: &str,
        v: T,
        lo: T,
        hi: T,
    ) {
        if v < lo || v > hi {
            self.problem(
                field,
                format!("expected an integer in [{lo}, {hi}], got {v}"),
            );
        }
    }
    /// A number in `[0, 1]` (shares, ratios, thresholds).
    pub fn fraction(&mut self, field: &str, v: f64) {
        self.number(field, v, (0.0, false), (1.0, false));
    }
    /// An optional number that, when set, is in `[0, 1]`.
    pub fn fraction_opt(&mut self, field: &str, v: Option<f64>) {
        if let Some(v) = v {
            self.fraction(field, v);
        }
    }
    /// A number between `lo` and `hi`; each bound is `(value, open)`.
    pub fn number(&mut self, field: &str, v: f64, lo: (f64, bool), hi: (f64, bool)) {
        let above = if lo.1 { v > lo.0 } else { v >= lo.0 };
        let below = if hi.1 { v < hi.0 } else { v <= hi.0 };
        if !(above && below) {
            self.problem(
                field,
                format!(
                    "expected a number in {}{}, {}{}, got {v}",
                    if lo.1 { "(" } else { "[" },
                    lo.0,
                    hi.0,
                    if hi.1 { ")" } else { "]" }
                ),
            );
        }
    }
    /// A number that must be `>= min`.
    pub fn number_at_least(&mut self, field: &str, v: f64, min: f64) {
        if v.is_nan() || v < min {
            self.problem(field, format!("expected a number >= {min}, got {v}"));
        }
    }
    /// A lower bound that must not exceed its upper bound.
    pub fn min_max<T: PartialOrd + std::fmt::Display>(
        &mut self,
        min_field: &str,
        min: T,
        max_field: &str,
        max: T,
    ) {
        if min > max {
            self.problem(
                min_field,
                format!("expected at most \"{max_field}\" ({max}), got {min}"),
            );
        }
    }
    /// A string or list that must not be empty.
    pub fn non_empty(&mut self, field: &str, empty: bool) {
        if empty {
            self.problem(field, "must not be empty");
        }
    }
    /// A file that must exist.
    pub fn file(&mut self, field: &str, path: &std::path::Path) {
        self.problems.extend(check_file(field, path));
    }
    /// Problems found elsewhere, already worded.
    pub fn extend(&mut self, problems: impl IntoIterator<Item = String>) {
        self.problems.extend(problems);
    }
    /// The problems found.
    pub fn into_vec(self) -> Vec<String> {
        self.problems
    }
}

/// `unknown field "x" (did you mean "y"?)`, or the valid names when none is close.
pub fn unknown_field_message(key: &str, allowed: &[String]) -> String {
    let nearest = allowed
        .iter()
        .map(|a| (strsim::jaro_winkler(key, a), a))
        .filter(|(s, _)| *s > 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match nearest {
        Some((_, a)) => format!("unknown field \"{key}\" (did you mean \"{a}\"?)"),
        None if allowed.is_empty() => {
            format!("unknown field \"{key}\" (this kind takes no parameters)")
        }
        None => format!(
            "unknown field \"{key}\"; valid fields: {}",
            allowed.join(", ")
        ),
    }
}

/// Check that a path exists (for `validate`), returning a problem message if not.
pub fn check_file(field: &str, path: &std::path::Path) -> Option<String> {
    if path.is_file() {
        None
    } else {
        Some(field_problem(
            field,
            format!("file not found: {}", path.display()),
        ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[allow(dead_code)]
    #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        /// Required inside.
        n: u32,
        /// Optional inside.
        #[serde(default)]
        share: f64,
    }

    #[allow(dead_code)]
    #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        /// Required.
        paths: Vec<String>,
        /// Optional.
        #[serde(default)]
        size: usize,
        /// Optional.
        #[serde(default)]
        ratio: f64,
        /// Optional, nested.
        #[serde(default)]
        by_lang: std::collections::BTreeMap<String, Inner>,
        /// Optional enum.
        #[serde(default)]
        mode: Option<Mode>,
    }

    #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        /// One.
        Local,
        /// Many.
        Distributed,
    }

    #[test]
    fn every_bad_field_is_named_not_only_the_first() {
        let f = deserialize_fields::<Cfg>(&json!({
            "paths": ["a"],
            "size": "big",
            "sise": 1,
            "ratio": [1],
            "by_lang": {"zh": {"n": -1, "share": "x"}, "en": {"n": 5000000000u64}},
            "mode": "distrib",
        }));
        assert_eq!(
            f.problems,
            [
                r#"unknown field "sise" (did you mean "size"?)"#,
                r#"field "size": invalid type: string "big", expected an integer"#,
                r#"field "ratio": invalid type: sequence, expected a number"#,
                r#"field "by_lang.zh.n": invalid value: integer `-1`, expected a non-negative integer"#,
                r#"field "by_lang.zh.share": invalid type: string "x", expected a number"#,
                r#"field "by_lang.en.n": invalid value: integer `5000000000`, expected an integer at most 4294967295"#,
                r#"field "mode": unknown value "distrib" (did you mean "distributed"?); expected one of: local, distributed"#,
            ]
        );
        // The good field survives; the bad ones fall back to their defaults.
        let v = f.value.expect("only optional fields were bad");
        assert_eq!(v.paths, ["a"]);
        assert_eq!(v.size, 0);
        assert_eq!(f.bad, ["sise", "size", "ratio", "by_lang", "mode"]);
    }

    #[test]
    fn a_bad_required_field_is_not_also_missing() {
        let f = deserialize_fields::<Cfg>(&json!({"paths": "a", "size": -1}));
        assert_eq!(
            f.problems,
            [
                r#"field "paths": invalid type: string "a", expected a list"#,
                r#"field "size": invalid value: integer `-1`, expected a non-negative integer"#,
            ]
        );
        assert!(f.value.is_none());
        let f = deserialize_fields::<Cfg>(&json!({"size": 1}));
        assert_eq!(
            f.problems,
            [r#"field "paths": missing (this field is required)"#]
        );
        let f = deserialize_fields::<Cfg>(&json!([1]));
        assert_eq!(f.problems, ["expected a mapping of parameters, got a list"]);
    }

    #[test]
    fn checks_word_every_problem_with_its_field() {
        let mut c = Checks::new();
        c.at_least("batch_size", 0usize, 1);
        c.at_least("seq_len", 4usize, 2);
        c.fraction("threshold", 1.5);
        c.fraction("threshold", f64::NAN);
        c.fraction_opt("share", Some(0.5));
        c.number("tokens_per_byte", 0.0, (0.0, true), (10.0, true));
        c.int_range("zstd_level", 23, 1, 22);
        c.min_max("min_chars", 50, "max_chars", 10);
        c.non_empty("label", true);
        assert_eq!(
            c.into_vec(),
            [
                r#"field "batch_size": expected an integer >= 1, got 0"#,
                r#"field "threshold": expected a number in [0, 1], got 1.5"#,
                r#"field "threshold": expected a number in [0, 1], got NaN"#,
                r#"field "tokens_per_byte": expected a number in (0, 10), got 0"#,
                r#"field "zstd_level": expected an integer in [1, 22], got 23"#,
                r#"field "min_chars": expected at most "max_chars" (10), got 50"#,
                r#"field "label": must not be empty"#,
            ]
        );
    }

    #[test]
    fn semantic_problems_of_bad_fields_are_dropped_and_the_rest_sorted() {
        #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        struct Lf {
            /// Min.
            #[serde(default)]
            min_chars: usize,
            /// Max.
            #[serde(default = "big")]
            max_chars: usize,
            /// Size.
            #[serde(default = "one")]
            size: usize,
        }
        fn big() -> usize {
            usize::MAX
        }
        fn one() -> usize {
            1
        }
        impl StageConfig for Lf {
            fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
                let mut c = Checks::new();
                c.min_max("min_chars", self.min_chars, "max_chars", self.max_chars);
                c.at_least("size", self.size, 1);
                c.into_vec()
            }
        }
        let ctx = BuildCtx::for_tests("t", "/tmp");
        // max_chars is bad, so "min_chars > max_chars (its default)" would be noise.
        let e = parse_config::<Lf>(&json!({"size": 0, "min_chars": 5, "max_chars": "x"}), &ctx)
            .unwrap_err();
        assert_eq!(
            e,
            [
                r#"field "size": expected an integer >= 1, got 0"#,
                r#"field "max_chars": invalid type: string "x", expected an integer"#,
            ]
        );
    }
}
