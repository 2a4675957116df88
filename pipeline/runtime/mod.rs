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
//!
//! **Layout.** This module orchestrates a run ([`run`]); each node role runs in its own
//! module: `source` (splits → batches, bad records, input progress), `transform`
//! (stateless, parallel on the pool, order restored), `stateful` (stateful stages, in
//! order, then `finish`), `sink` (sinks and the rejects writer). `ports` holds the edges
//! (outputs, merged inputs, channel wiring), `accounting` the counters, the "nothing
//! vanishes" check and the rank's stats and manifest, `progress` the progress display
//! and the done line.

mod accounting;
mod ports;
mod progress;
mod sink;
mod source;
mod stateful;
mod transform;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender};
use serde_json::{json, Value};

use crate::config::PipelineSpec;
use crate::document::DocBatch;
use crate::error::{Error, Result};
use crate::graph::{self, Graph};
use crate::rundir::{self, Prepared};
use crate::stage::{BuildCtx, Node, ShardInfo, REJECTED};

use accounting::{Extras, NodeStats};
use ports::{Outputs, RejectMsg, Wiring};
use progress::Progress;
pub use progress::{
    clock, compact, done_line, eta, input_line, percent, stage_line, thousands, StageCount,
};

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
        let mut g = lock(&self.first);
        if g.is_none() {
            *g = Some(e.in_node(node));
        }
        self.flag.store(true, Ordering::SeqCst);
    }
    fn aborted(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Lock a mutex, recovering the data if a thread panicked while holding it: a panic is
/// already turned into the run's error (see [`guarded`]), and the counters it guards are
/// only read for reports after that.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Validate a config completely: structure, then every node's builder. Returns every problem.
pub fn validate(spec: PipelineSpec, base: &BuildCtx) -> std::result::Result<Graph, Vec<String>> {
    let mut ctx = base.clone();
    ctx.validate_only = true;
    graph::validate(spec, &ctx)
}

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
/// Run a pipeline for one rank.
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
    let base = build_ctx(&graph, opts);
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
    // The run's typed `attrs` schema, from what each node declares (shards and rejects).
    let names: Vec<String> = graph.spec.nodes.iter().map(|s| s.name.clone()).collect();
    let attrs = crate::attrs::for_graph(&names, &mut nodes)
        .map_err(|e| Error::Config(vec![e.to_string()]))?;
    let started = Instant::now();
    let sh = Shared {
        attrs,
        abort: Abort::default(),
        stats: NodeStats::for_graph(&graph),
        shards: Mutex::default(),
        extras: Mutex::default(),
        pool: Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(opts.threads.max(1))
                .thread_name(|i| format!("sluice-worker-{i}"))
                .build()
                .map_err(|e| Error::msg(format!("thread pool: {e}")))?,
        ),
        progress: Progress::new(inputs.iter().map(|i| i.size).sum(), graph.spec.nodes.len()),
    };
    execute(&graph, nodes, &sh, opts, &inputs)?;
    if let Some(e) = lock(&sh.abort.first).take() {
        return Err(e);
    }
    if sh.abort.aborted() {
        return Err(Error::msg("run cancelled"));
    }
    let wall = started.elapsed().as_secs_f64();
    let (stats_json, mut manifest) = reports(&graph, &sh, wall, opts)?;
    rundir::check_inputs_stable(&inputs)?;
    manifest["inputs"] = rundir::inputs_json(&inputs, &input_sha.finish()?);
    record_counts_per_input(&mut manifest, &stats_json);
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
        &mut manifest,
    )?;
    Ok(RunSummary {
        skipped: false,
        stats: stats_json,
        manifest,
        merged,
    })
}

/// The build context every node of this rank gets (its `node` and `inputs` filled in
/// by the graph builder).
fn build_ctx(graph: &Graph, opts: &RunOptions) -> BuildCtx {
    BuildCtx {
        node: String::new(),
        inputs: vec![],
        run: graph.spec.run.clone(),
        out_dir: opts.out_dir.clone(),
        scratch_dir: opts.out_dir.join("tmp"),
        rank: opts.rank,
        world_size: opts.world_size,
        threads: opts.threads.max(1),
        validate_only: false,
    }
}

/// What the node threads share.
struct Shared {
    /// The run's `attrs` column type (see [`crate::attrs`]).
    attrs: Arc<crate::attrs::AttrSchema>,
    abort: Abort,
    stats: Vec<Arc<Mutex<NodeStats>>>,
    /// Files the sinks and the rejects writer finished.
    shards: Mutex<Vec<ShardInfo>>,
    extras: Mutex<Extras>,
    pool: Arc<rayon::ThreadPool>,
    progress: Progress,
}

/// One node's thread: its place in the graph, its edges and what the run shares.
struct NodeEnv<'a> {
    idx: usize,
    name: String,
    /// Its port names.
    names: &'static [&'static str],
    outputs: Outputs,
    rx: Vec<Receiver<DocBatch>>,
    st: Arc<Mutex<NodeStats>>,
    sh: &'a Shared,
    graph: &'a Graph,
    opts: &'a RunOptions,
}

/// Run every node on a thread of its own, the rejects writer and the progress reporter
/// too, until all have ended (finished, or stopped by the abort flag).
fn execute(
    graph: &Graph,
    nodes: Vec<Node>,
    sh: &Shared,
    opts: &RunOptions,
    inputs: &[rundir::InputFile],
) -> Result<()> {
    let run = &graph.spec.run;
    let n = graph.spec.nodes.len();
    let mut wiring = Wiring::new(graph, run.queue_batches);
    let (rej_tx, rej_rx) = bounded::<RejectMsg>(run.queue_batches * n.max(1));
    std::thread::scope(|scope| -> Result<()> {
        let mut handles = Vec::new();
        let rejects = sink::RejectsWriter {
            names: graph.spec.nodes.iter().map(|s| s.name.clone()).collect(),
            out: opts.out_dir.clone(),
            rank: opts.rank,
            prefix_chars: run.reject_prefix_chars,
            shard_rows: run.reject_shard_rows as u64,
            sh,
        };
        handles.push(
            std::thread::Builder::new()
                .name("sluice-rejects".into())
                .spawn_scoped(scope, move || rejects.run(rej_rx))
                .map_err(|e| Error::msg(format!("spawn: {e}")))?,
        );
        if opts.progress {
            scope.spawn(|| progress::progress_loop(&sh.progress, graph, &sh.stats));
        }
        for (i, node) in nodes.into_iter().enumerate() {
            let mut env = NodeEnv {
                idx: i,
                name: graph.spec.nodes[i].name.clone(),
                names: graph.kinds[i].ports,
                outputs: outputs(graph, i, &mut wiring, &rej_tx, &sh.stats[i]),
                rx: wiring.take_inputs(i),
                st: sh.stats[i].clone(),
                sh,
                graph,
                opts,
            };
            let sizes: HashMap<String, u64> = inputs
                .iter()
                .filter(|f| f.node == env.name)
                .map(|f| (f.path.clone(), f.size))
                .collect();
            let h = std::thread::Builder::new()
                .name(format!("node-{}", env.name))
                .spawn_scoped(scope, move || {
                    let res = match node {
                        Node::Source(src) => source::run_source(src, &mut env, &sizes),
                        Node::Transform(t) => transform::run_transform(t, &mut env),
                        Node::Stage(s) => stateful::run_stage(s, &mut env),
                        Node::Sink(s) => sink::run_sink(s, &mut env),
                    };
                    let NodeEnv { name, outputs, .. } = env;
                    drop(outputs);
                    if let Err(e) = res {
                        sh.abort.fail(&name, e);
                    }
                })
                .map_err(|e| Error::msg(format!("spawn: {e}")))?;
            handles.push(h);
        }
        drop(rej_tx);
        for h in handles {
            if h.join().is_err() {
                sh.abort
                    .fail("runtime", Error::msg("a node thread panicked"));
            }
        }
        sh.progress.done.store(true, Ordering::SeqCst);
        Ok(())
    })
}

/// Node `i`'s output side: its consumers' senders, and which ports go to `rejects/`
/// (a `rejected` port no node consumes).
fn outputs(
    graph: &Graph,
    i: usize,
    wiring: &mut Wiring,
    rejects_tx: &Sender<RejectMsg>,
    stats: &Arc<Mutex<NodeStats>>,
) -> Outputs {
    let names = graph.kinds[i].ports;
    Outputs {
        node: graph.spec.nodes[i].name.clone(),
        node_idx: i,
        names,
        targets: std::mem::take(&mut wiring.targets[i]),
        to_rejects: names
            .iter()
            .enumerate()
            .map(|(p, pn)| *pn == REJECTED && graph.consumers[i][p].is_empty())
            .collect(),
        rejects_tx: rejects_tx.clone(),
        seq: 0,
        stats: stats.clone(),
    }
}

/// The rank's stats and manifest (without inputs and config), after the accounting
/// check: a run whose documents do not add up fails here, before any marker.
fn reports(graph: &Graph, sh: &Shared, wall: f64, opts: &RunOptions) -> Result<(Value, Value)> {
    let shards = std::mem::take(&mut *lock(&sh.shards));
    let extras = std::mem::take(&mut *lock(&sh.extras));
    let accounting = accounting::check_accounting(graph, &sh.stats, &shards);
    let broken: Vec<String> = accounting
        .iter()
        .filter(|(_, v)| v["ok"] == json!(false))
        .map(|(k, v)| format!("node `{k}`: {}", v["detail"].as_str().unwrap_or("")))
        .collect();
    if !broken.is_empty() {
        // No marker: the run directory must not claim a run whose documents do not add up.
        return Err(Error::Accounting(broken));
    }
    let mut stats_json = accounting::stats_to_json(graph, &sh.stats, &extras, wall, opts);
    stats_json["accounting"] = Value::Object(accounting);
    let manifest = accounting::manifest_json(graph, shards, &extras, opts);
    Ok((stats_json, manifest))
}

/// Record counts per input, from sources that report them (`ingest_warc`).
fn record_counts_per_input(manifest: &mut Value, stats_json: &Value) {
    let Some(list) = manifest["inputs"].as_array_mut() else {
        return;
    };
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

/// Count a batch a node takes in.
fn count_in(st: &Mutex<NodeStats>, b: &DocBatch) {
    let mut g = lock(st);
    g.docs_in += b.docs.len() as u64;
    g.bytes_in += b.docs.iter().map(|d| d.byte_len()).sum::<u64>();
}
