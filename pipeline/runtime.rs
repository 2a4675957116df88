//! The streaming runtime.
//!
//! One OS thread per node; bounded crossbeam channels on every edge (backpressure);
//! stateless transforms fan their batches out to a rayon pool of `--threads` workers and
//! restore order by batch sequence number, so output is byte-identical at any thread count.
//!
//! **Ordering rules that make runs deterministic and deadlock-free:**
//! * a source cuts batches by document count, independent of timing;
//! * every node emits exactly one batch per port for every batch it receives (possibly
//!   empty), so streams that share an upstream stay aligned;
//! * a node with several inputs reads them round-robin (input 0, 1, …, skipping finished
//!   ones), which is a fixed function of the upstream streams;
//! * stateful stages and sinks see batches strictly in order.
//!
//! **Errors.** The first error is recorded with its node name and raises an abort flag.
//! The failing thread drops its channel ends, so upstream sends and downstream receives
//! unwind; every thread that sees the flag returns without finishing its outputs. Files
//! in progress are temp files that vanish on drop; nothing partial appears under a final
//! name, and no marker is written, so a rerun redoes the rank cleanly.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Select, Sender};
use serde_json::{json, Value};

use crate::config::PipelineSpec;
use crate::document::{DocBatch, Document, Origin};
use crate::error::{Error, Result};
use crate::graph::{self, Graph};
use crate::rundir::{self, Prepared};
use crate::shard_writer::{RotatingWriter, ShardLimits};
use crate::stage::{Accounting, BuildCtx, Emitter, Node, Role, ShardInfo, SourceSink, REJECTED};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run directory.
    pub out_dir: PathBuf,
    /// Worker threads for parallel transforms.
    pub threads: usize,
    /// This process's rank.
    pub rank: usize,
    /// Number of ranks.
    pub world_size: usize,
    /// Show a progress bar (terminal) or periodic log lines.
    pub progress: bool,
    /// Remove a previous run in `out_dir` first.
    pub overwrite: bool,
    /// Before skipping a finished rank, check the sha256 of its outputs (and of inputs whose
    /// mtime changed), not only sizes.
    pub verify: bool,
}

impl RunOptions {
    /// Defaults for tests: one rank, no progress.
    pub fn new(out_dir: impl Into<PathBuf>, threads: usize) -> Self {
        RunOptions {
            out_dir: out_dir.into(),
            threads,
            rank: 0,
            world_size: 1,
            progress: false,
            overwrite: false,
            verify: false,
        }
    }
}

/// What a run did.
#[derive(Debug)]
pub struct RunSummary {
    /// True when the rank was already finished and nothing ran.
    pub skipped: bool,
    /// This rank's stats.
    pub stats: Value,
    /// This rank's manifest.
    pub manifest: Value,
    /// Whether the merged top-level files were written (all ranks done).
    pub merged: bool,
}

#[derive(Default)]
struct PortStat {
    docs: u64,
    bytes: u64,
}

#[derive(Default)]
struct NodeStats {
    docs_in: u64,
    bytes_in: u64,
    ports: Vec<PortStat>,
    rejects: BTreeMap<String, u64>,
    busy: Duration,
    bad_count: u64,
    bad_by_reason: BTreeMap<String, u64>,
    bad_examples: Vec<String>,
    splits: u64,
    /// The stage's accounting contract, known after `finish` (transforms conserve).
    accounting: Option<Accounting>,
}

/// Shared abort state: the first real error wins.
#[derive(Default)]
struct Abort {
    flag: AtomicBool,
    first: Mutex<Option<Error>>,
}

impl Abort {
    fn fail(&self, node: &str, e: Error) {
        if matches!(e, Error::Cancelled) {
            self.flag.store(true, Ordering::SeqCst);
            return;
        }
        let mut g = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(e.in_node(node));
        }
        self.flag.store(true, Ordering::SeqCst);
    }
    fn aborted(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

type RejectMsg = (usize, DocBatch);
/// Per port of one node: the consumers' senders and their input index.
type PortTargets = Vec<Vec<(Sender<DocBatch>, usize)>>;
/// Per node: (`stats()` extra, `manifest()` extra).
type Extras = BTreeMap<String, (Option<Value>, Option<Value>)>;

/// The output side of one node: per port, the consumers' senders.
struct Outputs {
    node: String,
    node_idx: usize,
    names: &'static [&'static str],
    targets: Vec<Vec<(Sender<DocBatch>, usize)>>,
    to_rejects: Vec<bool>,
    rejects_tx: Sender<RejectMsg>,
    seq: u64,
    stats: Arc<Mutex<NodeStats>>,
}

impl Outputs {
    /// Send one batch per port (possibly empty) with the next sequence number.
    fn send(&mut self, em: &mut Emitter) -> Result<()> {
        let seq = self.seq;
        self.seq += 1;
        for (p, port_name) in self.names.iter().enumerate() {
            let mut docs = em.take(p);
            let is_rej = *port_name == REJECTED;
            {
                let mut st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                st.ports[p].docs += docs.len() as u64;
                st.ports[p].bytes += docs.iter().map(|d| d.byte_len()).sum::<u64>();
                if is_rej {
                    for d in &docs {
                        let reason = d
                            .reject
                            .as_ref()
                            .map(|r| r.reason.clone())
                            .unwrap_or_else(|| "unspecified".into());
                        *st.rejects.entry(reason).or_default() += 1;
                    }
                }
            }
            if is_rej {
                for d in docs.iter_mut() {
                    let r = d.reject.get_or_insert_with(Default::default);
                    if r.stage.is_empty() {
                        r.stage = self.node.clone();
                    }
                    if r.reason.is_empty() {
                        r.reason = "unspecified".into();
                    }
                }
            }
            if self.to_rejects[p] {
                if !docs.is_empty() {
                    self.rejects_tx
                        .send((self.node_idx, DocBatch::new(seq, docs)))
                        .map_err(|_| Error::Cancelled)?;
                }
                continue;
            }
            let n = self.targets[p].len();
            for (k, (tx, input)) in self.targets[p].iter().enumerate() {
                let d = if k + 1 == n {
                    std::mem::take(&mut docs)
                } else {
                    docs.clone()
                };
                tx.send(DocBatch {
                    seq,
                    input: *input,
                    docs: d,
                })
                .map_err(|_| Error::Cancelled)?;
            }
        }
        Ok(())
    }

    /// Send one port's documents (from `finish`, possibly many) as batches of `batch_size`.
    fn send_port(&mut self, port: usize, docs: Vec<Document>, batch_size: usize) -> Result<()> {
        let mut docs = docs.into_iter().peekable();
        while docs.peek().is_some() {
            let mut chunk = Emitter::new(self.names);
            for d in docs.by_ref().take(batch_size.max(1)) {
                chunk.emit_to(self.names[port], d);
            }
            self.send(&mut chunk)?;
        }
        Ok(())
    }
}

/// Round-robin reader over a node's inputs.
struct MergedInput {
    rx: Vec<Receiver<DocBatch>>,
    alive: Vec<bool>,
    cur: usize,
}

impl MergedInput {
    fn new(rx: Vec<Receiver<DocBatch>>) -> Self {
        let n = rx.len();
        MergedInput {
            rx,
            alive: vec![true; n],
            cur: 0,
        }
    }
    fn done(&self) -> bool {
        !self.alive.iter().any(|a| *a)
    }
    fn current(&mut self) -> Option<&Receiver<DocBatch>> {
        if self.done() {
            return None;
        }
        while !self.alive[self.cur] {
            self.cur = (self.cur + 1) % self.rx.len();
        }
        Some(&self.rx[self.cur])
    }
    /// Record the outcome of a receive on the current input.
    fn advance(&mut self, got: bool) {
        if !got {
            self.alive[self.cur] = false;
        }
        if !self.rx.is_empty() {
            self.cur = (self.cur + 1) % self.rx.len();
        }
    }
    fn recv(&mut self) -> Option<DocBatch> {
        loop {
            let r = self.current()?.recv();
            match r {
                Ok(b) => {
                    self.advance(true);
                    return Some(b);
                }
                Err(_) => self.advance(false),
            }
        }
    }
}

/// The source side of the runtime: batches documents and counts bad records.
struct SourceCtx<'a> {
    em: Emitter<'static>,
    out: &'a mut Outputs,
    batch_size: usize,
    budget: u64,
    abort: &'a Abort,
    stats: Arc<Mutex<NodeStats>>,
    bytes: &'a AtomicU64,
    /// Bytes read by this source alone (`bytes` is the run-wide progress counter).
    node_bytes: u64,
    docs: &'a AtomicU64,
    /// Global index of the split being read and the next record number in it.
    split: usize,
    record: u64,
    /// `run.max_doc_bytes`: a bigger document is rejected as `too_large` here.
    max_doc_bytes: u64,
    /// `run.reject_prefix_chars`: what of a `too_large` document's text is kept.
    reject_prefix_chars: usize,
    /// The split being read (`meta.input`) and the source's declared licence and terms
    /// (`meta.license`, `meta.terms_url`), written on every document it emits.
    input: String,
    license: Option<String>,
    terms_url: Option<String>,
}

impl SourceCtx<'_> {
    /// Provenance every source document carries (see `stage::source_license`).
    fn stamp(&self, doc: &mut Document) {
        doc.meta.insert("input".into(), self.input.clone());
        if let Some(l) = &self.license {
            doc.meta.insert("license".into(), l.clone());
        }
        if let Some(t) = &self.terms_url {
            doc.meta.insert("terms_url".into(), t.clone());
        }
    }
    fn maybe_flush(&mut self) -> Result<()> {
        if self.abort.aborted() {
            return Err(Error::Cancelled);
        }
        if self.em.len() >= self.batch_size {
            self.flush()?;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        if !self.em.is_empty() {
            self.out.send(&mut self.em)?;
        }
        Ok(())
    }
}

impl SourceSink for SourceCtx<'_> {
    fn emit(&mut self, mut doc: Document) -> Result<()> {
        self.stamp(&mut doc);
        if doc.byte_len() > self.max_doc_bytes {
            // Every source kind gets the run's document bound here. Only the text's prefix
            // (what `rejects/` keeps anyway) is held on, so the big string is freed now.
            let size = doc.byte_len();
            let cut = doc
                .text
                .char_indices()
                .nth(self.reject_prefix_chars)
                .map_or(doc.text.len(), |(i, _)| i);
            doc.text.truncate(cut);
            doc.text.shrink_to_fit();
            doc.words = None;
            doc.tokens = None;
            if size as usize >= crate::stages::normalize::HUGE_DOC_BYTES {
                crate::stages::normalize::release_freed_memory();
            }
            let detail = format!("{size} bytes > run.max_doc_bytes ({})", self.max_doc_bytes);
            return self.reject(doc, "too_large", Some(size as f64), detail);
        }
        self.docs.fetch_add(1, Ordering::Relaxed);
        doc.origin = Origin::new(self.split, self.record);
        self.record += 1;
        self.em.emit(doc);
        self.maybe_flush()
    }
    fn reject(
        &mut self,
        doc: Document,
        reason: &str,
        score: Option<f64>,
        detail: String,
    ) -> Result<()> {
        self.docs.fetch_add(1, Ordering::Relaxed);
        let mut doc = doc;
        self.stamp(&mut doc);
        doc.origin = Origin::new(self.split, self.record);
        self.record += 1;
        self.em.reject(doc, reason, score, detail);
        self.maybe_flush()
    }
    fn bad_record(&mut self, location: &str, reason: &str) -> Result<()> {
        let mut st = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        st.bad_count += 1;
        let key = reason
            .split(':')
            .next()
            .unwrap_or(reason)
            .trim()
            .to_string();
        *st.bad_by_reason.entry(key).or_default() += 1;
        let line = format!("{location}: {reason}");
        if st.bad_examples.len() < 20 {
            tracing::warn!(target: "sluice::bad_record", "{line}");
            st.bad_examples.push(line.clone());
        } else {
            tracing::debug!(target: "sluice::bad_record", "{line}");
        }
        if st.bad_count > self.budget {
            return Err(Error::BadRecordBudget {
                count: st.bad_count,
                budget: self.budget,
                last: line,
            });
        }
        Ok(())
    }
    fn bytes_read(&mut self, n: u64) {
        self.node_bytes += n;
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
}

/// Validate a config completely: structure, then every node's builder. Returns every problem.
pub fn validate(spec: PipelineSpec, base: &BuildCtx) -> std::result::Result<Graph, Vec<String>> {
    let mut ctx = base.clone();
    ctx.validate_only = true;
    graph::validate(spec, &ctx)
}

/// Run a pipeline for one rank.
/// Keep freed memory in the process heap instead of returning it to the OS (glibc only; a
/// no-op elsewhere). Called once at startup by the binary, by `train`, and by the benches.
///
/// Both hot paths allocate many-MB blocks over and over, often freeing them on another
/// thread: the pipeline's batches, Arrow buffers and encoded Parquet pages, and a training
/// step's tensors (the `[V, d]` embedding gradients and AdamW temporaries are 39 MB at
/// Qwen2's vocabulary, the LM head's logit chunks 78 MB). glibc serves large blocks with a
/// fresh `mmap`, unmaps them on free and trims its heaps, so each batch or step
/// page-faulted hundreds of MB back in: perf showed page faults and page clearing at ~45 % of
/// a training step (1.30 → 0.66 CPU-s per step with this) and the Parquet sink's throughput
/// rose by a third. With no mmap'd blocks (`M_MMAP_MAX = 0`) and no heap trimming, freed
/// blocks are reused (what PyTorch's caching allocator does for the same reason). Resident
/// memory stays at the run's peak instead of shrinking after it; the peak itself is
/// unchanged and bounded as each stage documents.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; it is thread-safe in glibc.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

pub fn run(spec: PipelineSpec, opts: &RunOptions) -> Result<RunSummary> {
    if opts.world_size == 0 || opts.rank >= opts.world_size {
        return Err(Error::msg(format!(
            "bad rank {} for world size {}",
            opts.rank, opts.world_size
        )));
    }
    let graph = graph::check(spec).map_err(Error::Config)?;
    let out = opts.out_dir.clone();
    let hash = graph.spec.config_hash.clone();
    std::fs::create_dir_all(&out)
        .map_err(|e| Error::io_doing("cannot create run directory", &out, e))?;
    // Held until this function returns: after the marker and the merge.
    let _lock = rundir::RankLock::acquire(&out, opts.rank)?;
    let base = BuildCtx {
        node: String::new(),
        inputs: vec![],
        run: graph.spec.run.clone(),
        out_dir: out.clone(),
        scratch_dir: out.join("tmp"),
        rank: opts.rank,
        world_size: opts.world_size,
        threads: opts.threads.max(1),
        validate_only: false,
    };
    let inputs = rank_inputs(&graph, &base)?;
    let check = rundir::Check {
        config_hash: &hash,
        inputs: &inputs,
        verify: opts.verify,
        overwrite: opts.overwrite,
    };
    if rundir::prepare(&out, opts.rank, opts.world_size, &check)? == Prepared::AlreadyDone {
        tracing::info!(
            "rank {} of {} is already done in {}; nothing to do",
            opts.rank,
            opts.world_size,
            out.display()
        );
        let merged = rundir::try_merge(&out, opts.world_size)?;
        return Ok(RunSummary {
            skipped: true,
            stats: Value::Null,
            manifest: Value::Null,
            merged,
        });
    }
    let input_sha = rundir::InputHasher::spawn(&inputs)?;
    let mut nodes = graph::build(&graph, &base).map_err(Error::Config)?;
    let names: Vec<String> = graph.spec.nodes.iter().map(|s| s.name.clone()).collect();
    let attrs = crate::attrs::for_graph(&names, &mut nodes)
        .map_err(|e| Error::Config(vec![e.to_string()]))?;
    let started = Instant::now();
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads.max(1))
            .thread_name(|i| format!("sluice-worker-{i}"))
            .build()
            .map_err(|e| Error::msg(format!("thread pool: {e}")))?,
    );
    let run = &graph.spec.run;
    let n = graph.spec.nodes.len();
    let abort = Arc::new(Abort::default());
    let stats: Vec<Arc<Mutex<NodeStats>>> = (0..n)
        .map(|i| {
            Arc::new(Mutex::new(NodeStats {
                ports: graph.kinds[i]
                    .ports
                    .iter()
                    .map(|_| PortStat::default())
                    .collect(),
                ..Default::default()
            }))
        })
        .collect();

    // Channels: one per edge.
    let mut inputs_rx: Vec<Vec<Option<Receiver<DocBatch>>>> = graph
        .spec
        .nodes
        .iter()
        .map(|s| s.inputs.iter().map(|_| None).collect())
        .collect();
    let mut targets: Vec<PortTargets> = graph
        .kinds
        .iter()
        .map(|k| k.ports.iter().map(|_| Vec::new()).collect())
        .collect();
    for (up, node_consumers) in graph.consumers.iter().enumerate() {
        for (p, cons) in node_consumers.iter().enumerate() {
            for &(c, j) in cons {
                let (tx, rx) = bounded(run.queue_batches);
                targets[up][p].push((tx, j));
                inputs_rx[c][j] = Some(rx);
            }
        }
    }
    let (rej_tx, rej_rx) = bounded::<RejectMsg>(run.queue_batches * n.max(1));

    let src_bytes = Arc::new(AtomicU64::new(0));
    let src_docs = Arc::new(AtomicU64::new(0));
    let shards: Arc<Mutex<Vec<ShardInfo>>> = Arc::default();
    let extras: Arc<Mutex<Extras>> = Arc::default();
    let progress_done = Arc::new(AtomicBool::new(false));

    std::thread::scope(|scope| -> Result<()> {
        let mut handles = Vec::new();
        // Rejects writer.
        {
            let abort = abort.clone();
            let names: Vec<String> = graph.spec.nodes.iter().map(|s| s.name.clone()).collect();
            let out = out.clone();
            let rank = opts.rank;
            let prefix = run.reject_prefix_chars;
            let rows = run.reject_shard_rows as u64;
            let shards = shards.clone();
            let attrs = attrs.clone();
            let h = std::thread::Builder::new()
                .name("sluice-rejects".into())
                .spawn_scoped(scope, move || {
                    let res = (|| -> Result<()> {
                        let mut writers: BTreeMap<usize, RotatingWriter> = BTreeMap::new();
                        while let Ok((node, batch)) = rej_rx.recv() {
                            let w = writers.entry(node).or_insert_with(|| {
                                RotatingWriter::new(
                                    out.clone(),
                                    "rejects",
                                    format!("{}-r{rank:04}", names[node]),
                                    names[node].clone(),
                                    crate::arrow_io::reject_schema(&attrs),
                                    ShardLimits {
                                        shard_size_bytes: 256 << 20,
                                        shard_rows: rows,
                                        row_group_rows: 65536,
                                        row_group_bytes: 64 << 20,
                                        compression: parquet::basic::Compression::ZSTD(
                                            parquet::basic::ZstdLevel::try_new(3)
                                                .expect("valid level"),
                                        ),
                                    },
                                )
                            });
                            let rb =
                                crate::arrow_io::rejects_to_batch(&batch.docs, prefix, &attrs)?;
                            w.write(&rb, &vec![0; batch.docs.len()])?;
                        }
                        if abort.aborted() {
                            return Err(Error::Cancelled);
                        }
                        let mut all = Vec::new();
                        for w in writers.values_mut() {
                            all.extend(w.finish()?);
                        }
                        shards.lock().unwrap_or_else(|e| e.into_inner()).extend(all);
                        Ok(())
                    })();
                    if let Err(e) = res {
                        abort.fail("rejects", e);
                    }
                })
                .map_err(|e| Error::msg(format!("spawn: {e}")))?;
            handles.push(h);
        }

        // Progress reporter.
        if opts.progress {
            let done = progress_done.clone();
            let bytes = src_bytes.clone();
            let docs = src_docs.clone();
            scope.spawn(move || progress_loop(&done, &bytes, &docs));
        }

        for (i, node) in nodes.into_iter().enumerate() {
            let spec = &graph.spec.nodes[i];
            let name = spec.name.clone();
            let names = graph.kinds[i].ports;
            let to_rejects: Vec<bool> = names
                .iter()
                .enumerate()
                .map(|(p, pn)| *pn == REJECTED && graph.consumers[i][p].is_empty())
                .collect();
            let mut outputs = Outputs {
                node: name.clone(),
                node_idx: i,
                names,
                targets: std::mem::take(&mut targets[i]),
                to_rejects,
                rejects_tx: rej_tx.clone(),
                seq: 0,
                stats: stats[i].clone(),
            };
            let rx: Vec<Receiver<DocBatch>> =
                inputs_rx[i].iter_mut().filter_map(|r| r.take()).collect();
            let abort = abort.clone();
            let st = stats[i].clone();
            let pool = pool.clone();
            let shards = shards.clone();
            let extras = extras.clone();
            let src_bytes = src_bytes.clone();
            let src_docs = src_docs.clone();
            let batch_size = run.batch_size;
            let budget = run.max_bad_records;
            let (max_doc_bytes, reject_prefix_chars) = (run.max_doc_bytes, run.reject_prefix_chars);
            let (license, terms_url) = crate::stage::source_license(&graph.spec.nodes[i].params);
            let (rank, world) = (opts.rank, opts.world_size);
            let inflight = opts.threads.max(1) * 2 + 1;
            let h = std::thread::Builder::new()
                .name(format!("node-{name}"))
                .spawn_scoped(scope, move || {
                    let res: Result<()> = match node {
                        Node::Source(mut src) => (|| {
                            let splits = src.splits()?;
                            let mine: Vec<(usize, String)> = splits
                                .into_iter()
                                .enumerate()
                                .filter(|(k, _)| k % world == rank)
                                .collect();
                            st.lock().unwrap_or_else(|e| e.into_inner()).splits = mine.len() as u64;
                            let mut ctx = SourceCtx {
                                em: Emitter::new(names),
                                out: &mut outputs,
                                batch_size,
                                budget,
                                abort: &abort,
                                stats: st.clone(),
                                bytes: &src_bytes,
                                node_bytes: 0,
                                docs: &src_docs,
                                split: 0,
                                record: 0,
                                max_doc_bytes,
                                reject_prefix_chars,
                                input: String::new(),
                                license: license.clone(),
                                terms_url: terms_url.clone(),
                            };
                            let t0 = Instant::now();
                            for (k, s) in &mine {
                                ctx.input = s.clone();
                                ctx.split = *k;
                                ctx.record = 0;
                                guarded(&name, *k as u64, || src.read(s, &mut ctx))?;
                            }
                            ctx.flush()?;
                            let node_bytes = ctx.node_bytes;
                            let mut g = st.lock().unwrap_or_else(|e| e.into_inner());
                            g.busy += t0.elapsed();
                            g.docs_in = g.ports.iter().map(|p| p.docs).sum();
                            g.bytes_in = node_bytes;
                            drop(g);
                            extras
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(name.clone(), (src.stats(), None));
                            Ok(())
                        })(),
                        Node::Transform(t) => {
                            run_transform(t.clone(), rx, &mut outputs, &pool, inflight, &st, &abort)
                                .map(|_| {
                                    extras
                                        .lock()
                                        .unwrap_or_else(|e| e.into_inner())
                                        .insert(name.clone(), (t_stats(&*t), t_manifest(&*t)));
                                })
                        }
                        Node::Stage(mut s) => (|| {
                            let mut input = MergedInput::new(rx);
                            let mut seq = 0u64;
                            while let Some(b) = input.recv() {
                                count_in(&st, &b);
                                let mut em = Emitter::new(names);
                                let t0 = Instant::now();
                                pool.install(|| guarded(&name, seq, || s.process(b, &mut em)))?;
                                seq += 1;
                                st.lock().unwrap_or_else(|e| e.into_inner()).busy += t0.elapsed();
                                outputs.send(&mut em)?;
                            }
                            if abort.aborted() {
                                return Err(Error::Cancelled);
                            }
                            // `finish` may release a large state (mix, pack): the flush hook
                            // streams it downstream in batches instead of holding it all.
                            let t0 = Instant::now();
                            {
                                let out = &mut outputs;
                                let mut em = Emitter::with_flush(
                                    names,
                                    Box::new(move |p, docs| out.send_port(p, docs, batch_size)),
                                );
                                // Not on the pool: the hook blocks on downstream channels, and a
                                // pool worker blocked here could starve the consumers' work.
                                guarded(&name, seq, || s.finish(&mut em))?;
                                em.flush()?;
                            }
                            {
                                let mut g = st.lock().unwrap_or_else(|e| e.into_inner());
                                g.busy += t0.elapsed();
                                g.accounting = Some(s.accounting());
                            }
                            extras
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(name.clone(), (s.stats(), s.manifest()));
                            Ok(())
                        })(),
                        Node::Sink(mut sink) => (|| {
                            // The sink runs on this thread and may spawn work on the pool
                            // and wait for it (a pool worker must never block like that).
                            sink.use_pool(pool.clone());
                            let mut input = MergedInput::new(rx);
                            let mut seq = 0u64;
                            while let Some(b) = input.recv() {
                                count_in(&st, &b);
                                let t0 = Instant::now();
                                guarded(&name, seq, || sink.write(b))?;
                                seq += 1;
                                st.lock().unwrap_or_else(|e| e.into_inner()).busy += t0.elapsed();
                            }
                            if abort.aborted() {
                                return Err(Error::Cancelled);
                            }
                            let files = guarded(&name, seq, || sink.finish())?;
                            st.lock().unwrap_or_else(|e| e.into_inner()).accounting =
                                Some(sink.accounting());
                            shards
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .extend(files);
                            extras
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(name.clone(), (None, sink.manifest()));
                            Ok(())
                        })(),
                    };
                    drop(outputs);
                    if let Err(e) = res {
                        abort.fail(&name, e);
                    }
                })
                .map_err(|e| Error::msg(format!("spawn: {e}")))?;
            handles.push(h);
        }
        drop(rej_tx);
        for h in handles {
            if h.join().is_err() {
                abort.fail("runtime", Error::msg("a node thread panicked"));
            }
        }
        progress_done.store(true, Ordering::SeqCst);
        Ok(())
    })?;

    if let Some(e) = abort.first.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    if abort.aborted() {
        return Err(Error::msg("run cancelled"));
    }
    let wall = started.elapsed().as_secs_f64();
    let shards = std::mem::take(&mut *shards.lock().unwrap_or_else(|e| e.into_inner()));
    let extras = std::mem::take(&mut *extras.lock().unwrap_or_else(|e| e.into_inner()));
    let accounting = check_accounting(&graph, &stats, &shards);
    let broken: Vec<String> = accounting
        .iter()
        .filter(|(_, v)| v["ok"] == json!(false))
        .map(|(k, v)| format!("node `{k}`: {}", v["detail"].as_str().unwrap_or("")))
        .collect();
    if !broken.is_empty() {
        // No marker: the run directory must not claim a run whose documents do not add up.
        return Err(Error::Accounting(broken));
    }
    let mut stats_json = stats_to_json(&graph, &stats, &extras, wall, opts);
    stats_json["accounting"] = Value::Object(accounting);
    let mut manifest = manifest_json(&graph, shards, &extras, opts);
    rundir::check_inputs_stable(&inputs)?;
    manifest["inputs"] = rundir::inputs_json(&inputs, &input_sha.finish()?);
    // Record counts per input, from sources that report them (`ingest_warc`).
    if let Some(list) = manifest["inputs"].as_array_mut() {
        for i in list {
            let (Some(node), Some(path)) = (i["node"].as_str(), i["path"].as_str()) else {
                continue;
            };
            let n = &stats_json["nodes"][node]["extra"]["records_per_file"][path];
            if n.is_u64() {
                i["warc_records"] = n.clone();
            }
        }
    }
    let (config, config_yaml) = rundir::config_json(&graph.spec);
    manifest["config"] = config;
    manifest["config_yaml"] = config_yaml;
    // A run that keeps nothing still has a (possibly empty) `shards/`, so readers that
    // glob it find no files rather than no folder.
    let shards_dir = out.join("shards");
    std::fs::create_dir_all(&shards_dir)
        .map_err(|e| Error::io_doing("cannot create", &shards_dir, e))?;
    let merged = rundir::finish_rank(
        &out,
        opts.rank,
        opts.world_size,
        &hash,
        &inputs,
        &stats_json,
        &manifest,
    )?;
    Ok(RunSummary {
        skipped: false,
        stats: stats_json,
        manifest,
        merged,
    })
}

/// This rank's input files: the splits of every source that fall to it (split `k` goes to
/// rank `k % world_size`), fingerprinted. Builds the source nodes only; they are built
/// again, with the rest, for the run.
fn rank_inputs(graph: &Graph, base: &BuildCtx) -> Result<Vec<rundir::InputFile>> {
    let mut inputs = Vec::new();
    for (i, n) in graph.spec.nodes.iter().enumerate() {
        if graph.kinds[i].role != crate::stage::Role::Source {
            continue;
        }
        let mut ctx = base.clone();
        ctx.node = n.name.clone();
        let built = (graph.kinds[i].build)(&n.params, &ctx).map_err(|ps| {
            Error::Config(
                ps.into_iter()
                    .map(|p| format!("node `{}`: {p}", n.name))
                    .collect(),
            )
        })?;
        if let Node::Source(src) = built {
            let mine: Vec<String> = src
                .splits()
                .map_err(|e| e.in_node(&n.name))?
                .into_iter()
                .enumerate()
                .filter(|(k, _)| k % base.world_size == base.rank)
                .map(|(_, s)| s)
                .collect();
            inputs.extend(rundir::fingerprint(&n.name, &mine)?);
        }
    }
    Ok(inputs)
}

/// Run one unit of a node's work (a batch, a source split, a `finish`) and turn a panic
/// into an error naming the node and the batch, so the run ends like any failed run:
/// outputs in progress are temp files that vanish, no marker is written.
///
/// `SLUICE_FAILPOINT=panic@<node>#<batch>` makes that unit panic: fault injection for the
/// tests (like the `fail` crate's failpoints), read once per process.
fn guarded<T>(node: &str, batch: u64, f: impl FnOnce() -> Result<T>) -> Result<T> {
    static FAILPOINT: std::sync::OnceLock<Option<(String, u64)>> = std::sync::OnceLock::new();
    let fp = FAILPOINT.get_or_init(|| {
        let v = std::env::var("SLUICE_FAILPOINT").ok()?;
        let (n, b) = v.strip_prefix("panic@")?.rsplit_once('#')?;
        Some((n.to_string(), b.parse().ok()?))
    });
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if fp.as_ref().is_some_and(|(n, b)| n == node && *b == batch) {
            panic!("failpoint SLUICE_FAILPOINT=panic@{node}#{batch}");
        }
        f()
    }));
    r.unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        Err(Error::Panic {
            node: node.to_string(),
            batch,
            message: msg.to_string(),
        })
    })
}

fn t_stats(t: &dyn crate::stage::Transform) -> Option<Value> {
    t.stats()
}
fn t_manifest(t: &dyn crate::stage::Transform) -> Option<Value> {
    t.manifest()
}

fn count_in(st: &Mutex<NodeStats>, b: &DocBatch) {
    let mut g = st.lock().unwrap_or_else(|e| e.into_inner());
    g.docs_in += b.docs.len() as u64;
    g.bytes_in += b.docs.iter().map(|d| d.byte_len()).sum::<u64>();
}

type TransformResult = (u64, Result<Emitter<'static>>, Duration);

fn run_transform(
    t: Arc<dyn crate::stage::Transform>,
    rx: Vec<Receiver<DocBatch>>,
    outputs: &mut Outputs,
    pool: &rayon::ThreadPool,
    max_inflight: usize,
    st: &Mutex<NodeStats>,
    abort: &Abort,
) -> Result<()> {
    let names = outputs.names;
    let (res_tx, res_rx) = bounded::<TransformResult>(max_inflight);
    let mut input = MergedInput::new(rx);
    let mut next_in = 0u64;
    let mut next_out = 0u64;
    let mut inflight = 0usize;
    let mut ready: BTreeMap<u64, Emitter> = BTreeMap::new();
    loop {
        if input.done() && inflight == 0 {
            break;
        }
        let can_take = inflight < max_inflight && !input.done();
        let cur_rx = if can_take {
            input.current().cloned()
        } else {
            None
        };
        let mut sel = Select::new();
        let in_idx = cur_rx.as_ref().map(|r| sel.recv(r));
        let res_idx = sel.recv(&res_rx);
        let op = sel.select();
        if Some(op.index()) == in_idx {
            let r = cur_rx.as_ref().expect("selected input");
            match op.recv(r) {
                Ok(mut b) => {
                    input.advance(true);
                    count_in(st, &b);
                    b.seq = next_in;
                    next_in += 1;
                    inflight += 1;
                    let t = t.clone();
                    let tx = res_tx.clone();
                    let node = outputs.node.clone();
                    pool.spawn(move || {
                        let seq = b.seq;
                        let t0 = Instant::now();
                        let mut em = Emitter::new(names);
                        let r = guarded(&node, seq, || t.process(b, &mut em)).map(|_| em);
                        let _ = tx.send((seq, r, t0.elapsed()));
                    });
                }
                Err(_) => input.advance(false),
            }
        } else {
            debug_assert_eq!(op.index(), res_idx);
            let (seq, r, dt) = op
                .recv(&res_rx)
                .map_err(|_| Error::msg("worker channel closed"))?;
            inflight -= 1;
            st.lock().unwrap_or_else(|e| e.into_inner()).busy += dt;
            ready.insert(seq, r?);
            while let Some(mut em) = ready.remove(&next_out) {
                outputs.send(&mut em)?;
                next_out += 1;
            }
        }
    }
    if abort.aborted() {
        return Err(Error::Cancelled);
    }
    Ok(())
}

fn progress_loop(done: &AtomicBool, bytes: &AtomicU64, docs: &AtomicU64) {
    use std::io::IsTerminal;
    let t0 = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        Some(b)
    } else {
        None
    };
    let mut last_log = Instant::now();
    let mut last_tick = Instant::now();
    while !done.load(Ordering::SeqCst) {
        // Short sleeps, so the run does not wait on this thread when it ends.
        std::thread::sleep(Duration::from_millis(10));
        if last_tick.elapsed() < Duration::from_millis(200) {
            continue;
        }
        last_tick = Instant::now();
        let secs = t0.elapsed().as_secs_f64().max(1e-6);
        let d = docs.load(Ordering::Relaxed);
        let b = bytes.load(Ordering::Relaxed);
        let msg = format!(
            "{d} docs read, {:.1} MB — {:.0} docs/s, {:.1} MB/s",
            b as f64 / 1e6,
            d as f64 / secs,
            b as f64 / 1e6 / secs
        );
        match &bar {
            Some(bar) => {
                bar.set_message(msg);
                bar.tick();
            }
            None if last_log.elapsed() >= Duration::from_secs(10) => {
                tracing::info!("progress: {msg}");
                last_log = Instant::now();
            }
            None => {}
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

/// The engine invariant: every document a node takes in leaves through a port.
///
/// * sources: documents emitted = `out` + `rejected` (counted at the source context);
/// * transforms and conserving stages: `in = Σ ports`;
/// * copying stages (`mix` upsampling): `in + extra = Σ ports`;
/// * merging stages (`pack`): `in = consumed + rejected`;
/// * sinks: `in` = rows in the files they wrote;
/// * the rejects writer: rows written = documents routed to it.
///
/// Returns one entry per node (and `_rejects`), each with `ok` and the figures.
fn check_accounting(
    graph: &Graph,
    stats: &[Arc<Mutex<NodeStats>>],
    files: &[ShardInfo],
) -> serde_json::Map<String, Value> {
    let mut res = serde_json::Map::new();
    let mut routed_to_rejects = 0u64;
    for (i, s) in graph.spec.nodes.iter().enumerate() {
        let st = stats[i].lock().unwrap_or_else(|e| e.into_inner());
        let ports: u64 = st.ports.iter().map(|p| p.docs).sum();
        let rejected: u64 = graph.kinds[i]
            .ports
            .iter()
            .enumerate()
            .filter(|(_, n)| **n == REJECTED)
            .map(|(p, _)| st.ports[p].docs)
            .sum();
        for (p, n) in graph.kinds[i].ports.iter().enumerate() {
            if *n == REJECTED && graph.consumers[i][p].is_empty() {
                routed_to_rejects += st.ports[p].docs;
            }
        }
        let role = graph.kinds[i].role;
        let (expected_out, rule, extra) = match (role, st.accounting) {
            (Role::Sink, None | Some(Accounting::Conserving)) => {
                let rows: u64 = files
                    .iter()
                    .filter(|f| f.node == s.name)
                    .map(|f| f.rows)
                    .sum();
                let ok = rows == st.docs_in;
                res.insert(
                    s.name.clone(),
                    json!({
                        "rule": "in = rows written",
                        "in": st.docs_in,
                        "rows_written": rows,
                        "ok": ok,
                        "detail": format!("{} documents in, {} rows written", st.docs_in, rows),
                    }),
                );
                continue;
            }
            (_, Some(Accounting::Copies { extra })) => {
                (st.docs_in + extra, "in + copies = out + rejected", extra)
            }
            (_, Some(Accounting::Merging { consumed })) => {
                let ok = st.docs_in == consumed + rejected;
                res.insert(
                    s.name.clone(),
                    json!({
                        "rule": "in = merged + rejected",
                        "in": st.docs_in,
                        "merged": consumed,
                        "rejected": rejected,
                        "rows_out": ports - rejected,
                        "ok": ok,
                        "detail": format!(
                            "{} documents in, {} merged into rows, {} rejected: {} unaccounted",
                            st.docs_in, consumed, rejected,
                            st.docs_in as i64 - (consumed + rejected) as i64
                        ),
                    }),
                );
                continue;
            }
            _ => (st.docs_in, "in = out + rejected", 0),
        };
        let ok = expected_out == ports;
        res.insert(
            s.name.clone(),
            json!({
                "rule": rule,
                "in": st.docs_in,
                "copies": extra,
                "out": ports - rejected,
                "rejected": rejected,
                "ok": ok,
                "detail": format!(
                    "{} documents in{}, {} out and {} rejected: {} unaccounted",
                    st.docs_in,
                    if extra > 0 { format!(" (+{extra} copies)") } else { String::new() },
                    ports - rejected,
                    rejected,
                    expected_out as i64 - ports as i64
                ),
            }),
        );
    }
    let written: u64 = files
        .iter()
        .filter(|f| f.path.starts_with("rejects/"))
        .map(|f| f.rows)
        .sum();
    res.insert(
        "_rejects".into(),
        json!({
            "rule": "rows written = rejected documents routed to rejects/",
            "in": routed_to_rejects,
            "rows_written": written,
            "ok": written == routed_to_rejects,
            "detail": format!("{routed_to_rejects} rejected documents, {written} reject rows written"),
        }),
    );
    res
}

fn stats_to_json(
    graph: &Graph,
    stats: &[Arc<Mutex<NodeStats>>],
    extras: &Extras,
    wall: f64,
    opts: &RunOptions,
) -> Value {
    let mut nodes = serde_json::Map::new();
    for (i, s) in graph.spec.nodes.iter().enumerate() {
        let st = stats[i].lock().unwrap_or_else(|e| e.into_inner());
        let mut ports = serde_json::Map::new();
        for (p, name) in graph.kinds[i].ports.iter().enumerate() {
            ports.insert(
                name.to_string(),
                json!({"docs": st.ports[p].docs, "bytes": st.ports[p].bytes}),
            );
        }
        let mut node = json!({
            "kind": s.kind,
            "role": format!("{:?}", graph.kinds[i].role).to_lowercase(),
            "docs_in": st.docs_in,
            "bytes_in": st.bytes_in,
            "ports": ports,
            "rejects": st.rejects,
            "busy_secs": st.busy.as_secs_f64(),
            "extra": extras.get(&s.name).and_then(|e| e.0.clone()).unwrap_or(Value::Null),
        });
        if graph.kinds[i].role == crate::stage::Role::Source {
            node["splits"] = json!(st.splits);
            node["bad_records"] = json!({
                "count": st.bad_count,
                "by_reason": st.bad_by_reason,
                "examples": st.bad_examples,
            });
        }
        nodes.insert(s.name.clone(), node);
    }
    json!({
        "sluice_version": env!("CARGO_PKG_VERSION"),
        "config_hash": graph.spec.config_hash,
        "rank": opts.rank,
        "world_size": opts.world_size,
        "threads": opts.threads,
        "wall_secs": wall,
        "nodes": nodes,
    })
}

fn manifest_json(
    graph: &Graph,
    mut files: Vec<ShardInfo>,
    extras: &Extras,
    opts: &RunOptions,
) -> Value {
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let (rejects, shards): (Vec<ShardInfo>, Vec<ShardInfo>) = files
        .into_iter()
        .partition(|f| f.path.starts_with("rejects/"));
    let mut nodes = serde_json::Map::new();
    for s in &graph.spec.nodes {
        if let Some(v) = extras.get(&s.name).and_then(|e| e.1.clone()) {
            nodes.insert(s.name.clone(), v);
        }
    }
    json!({
        "sluice_version": env!("CARGO_PKG_VERSION"),
        "config_hash": graph.spec.config_hash,
        "config_path": graph.spec.path,
        "rank": opts.rank,
        "world_size": opts.world_size,
        "totals": {
            "rows": shards.iter().map(|s| s.rows).sum::<u64>(),
            "tokens": shards.iter().map(|s| s.tokens).sum::<u64>(),
            "bytes": shards.iter().map(|s| s.bytes).sum::<u64>(),
            "reject_rows": rejects.iter().map(|s| s.rows).sum::<u64>(),
        },
        "shards": shards,
        "rejects": rejects,
        "nodes": nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> Graph {
        let yaml = "nodes:
  docs:
    kind: ingest_jsonl
    paths: [samples/text/cmrc2018_zh.jsonl]
  long:
    kind: length_filter
    inputs: [docs]
    min_chars: 300
  shards:
    kind: parquet_shards
    inputs: [long]
";
        graph::check(crate::config::parse(yaml, "t.yaml").unwrap()).unwrap()
    }

    fn stats(g: &Graph, f: impl Fn(usize, &mut NodeStats)) -> Vec<Arc<Mutex<NodeStats>>> {
        (0..g.spec.nodes.len())
            .map(|i| {
                let mut s = NodeStats {
                    ports: g.kinds[i]
                        .ports
                        .iter()
                        .map(|_| PortStat::default())
                        .collect(),
                    ..Default::default()
                };
                f(i, &mut s);
                Arc::new(Mutex::new(s))
            })
            .collect()
    }

    fn shard(path: &str, node: &str, rows: u64) -> ShardInfo {
        ShardInfo {
            path: path.into(),
            node: node.into(),
            rows,
            tokens: 0,
            bytes: 0,
            sha256: String::new(),
        }
    }

    /// Source 10 out; filter 10 in, 7 out, 3 rejected; sink 7 rows; rejects 3 rows.
    fn consistent(i: usize, s: &mut NodeStats) {
        match i {
            0 => {
                s.docs_in = 10;
                s.ports[0].docs = 10;
            }
            1 => {
                s.docs_in = 10;
                s.ports[0].docs = 7;
                s.ports[1].docs = 3;
            }
            _ => s.docs_in = 7,
        }
    }

    #[test]
    fn consistent_counts_pass() {
        let g = graph();
        let files = [
            shard("shards/a.parquet", "shards", 7),
            shard("rejects/long.parquet", "long", 3),
        ];
        let acc = check_accounting(&g, &stats(&g, consistent), &files);
        for (k, v) in &acc {
            assert_eq!(v["ok"], true, "{k}: {v}");
        }
    }

    #[test]
    fn a_lost_document_is_caught_and_named() {
        let g = graph();
        let files = [
            shard("shards/a.parquet", "shards", 7),
            shard("rejects/long.parquet", "long", 3),
        ];
        // The filter takes 10 in but only 9 leave: one vanished.
        let st = stats(&g, |i, s| {
            consistent(i, s);
            if i == 1 {
                s.ports[1].docs = 2;
            }
        });
        let acc = check_accounting(&g, &st, &files);
        assert_eq!(acc["long"]["ok"], false);
        assert!(acc["long"]["detail"]
            .as_str()
            .unwrap()
            .contains("1 unaccounted"));
        // A sink that wrote fewer rows than it took in, and a rejects writer that lost one.
        let files = [
            shard("shards/a.parquet", "shards", 6),
            shard("rejects/long.parquet", "long", 2),
        ];
        let acc = check_accounting(&g, &stats(&g, consistent), &files);
        assert_eq!(acc["shards"]["ok"], false);
        assert_eq!(acc["_rejects"]["ok"], false);
        // Copies and merges are judged by their own rule.
        let st = stats(&g, |i, s| {
            consistent(i, s);
            if i == 1 {
                s.ports[0].docs = 9;
                s.accounting = Some(Accounting::Copies { extra: 2 });
            }
        });
        let files = [
            shard("shards/a.parquet", "shards", 7),
            shard("rejects/long.parquet", "long", 3),
        ];
        assert_eq!(check_accounting(&g, &st, &files)["long"]["ok"], true);
        let st = stats(&g, |i, s| {
            consistent(i, s);
            if i == 1 {
                s.ports[0].docs = 1;
                s.accounting = Some(Accounting::Merging { consumed: 7 });
            }
        });
        assert_eq!(check_accounting(&g, &st, &files)["long"]["ok"], true);
    }
}
