//! Distributed `minhash_dedup` (`mode: distributed`): the same kept set as one process,
//! computed by many.
//!
//! # The rule it reproduces
//! The single-process stage numbers documents in input order and, for each document `d`,
//! looks up its band keys: the first document ever seen with key `k` is the bucket's
//! representative `rep(k)`. `d` is a duplicate iff some `rep(k)` with `k ∈ keys(d)` and
//! `rep(k) ≠ d` passes verification against `d` (`signature`: estimated Jaccard ≥
//! `threshold` or estimated containment ≥ `containment_threshold`; `none`: always).
//! Duplicates are still indexed, so this depends only on the
//! pairs `(d, rep(k))`, never on earlier decisions. The input order of a run is the
//! documents' [`Origin`] (split index, record index), which is the same whatever the number
//! of ranks, so every phase below uses it as the global order.
//!
//! # Phases (each a set of independent units with completion markers)
//! State lives under `<run dir>/_minhash/<node>/`.
//! 1. **`minhash-sig`**, one unit per rank: the DAG up to the dedup node (pruned, the node
//!    replaced by the internal sink `minhash_signatures`) writes, per rank, every indexed
//!    document's sketch record (`sketches.u32`: the signature, 4 B × `num_perm`, then the
//!    shingle-set size, 4 B) and id (`ids.bin` + `ids.idx`),
//!    and its band entries `(key, origin, local index)` (20 B each) to **sorted run files
//!    per bucket** `r<R>/b<B>-<run>.bin` (bucket = key range `key × buckets >> 64`; a run
//!    is written whenever `run_entries` entries are buffered, so memory is bounded). Marker:
//!    the engine's rank marker `sig/ranks/r<R>-of-<N>.done`, written after the files.
//! 2. **`minhash-pairs`**, one unit per bucket: a k-way merge of every rank's runs for the
//!    bucket; in each key group the smallest origin is the representative and every other
//!    member `d` is verified against it (signatures read by offset from the ranks'
//!    `sketches.u32`; the same verification as the online stage: estimated Jaccard ≥
//!    `threshold`, or estimated containment ≥ `containment_threshold`). Accepted pairs `(d, rep, est)` (32 B) are sorted and written to
//!    `pairs/b<B>.bin`; marker `pairs/b<B>-of-<NB>.done` (JSON counters).
//! 3. **`minhash-clusters`**, one unit: a k-way merge of all pair files by `(d, rep)` (the
//!    same pair found in several bands is counted once), processed in `d` order exactly as
//!    the online stage does: union-find with the smallest origin as root, the best match
//!    (highest estimate, earliest on ties), one duplicate charged to the root. Each
//!    duplicate goes to its rank's remove list `remove/r<R>.bin` with its root's and
//!    match's ids; then each root's duplicate count. Marker `remove/done` (JSON counters).
//!    **Memory is bounded by pairs, not documents**: only documents that appear in a pair
//!    have union-find state: a hash-map slot (origin → node: 16 B + 1 control byte per
//!    bucket, 8/7–16/7 buckets per entry) plus 20 B (parent 4, origin 8, local index 4,
//!    count 4): 40–60 B per document in a pair, at most two per pair. Measured by
//!    `benches/minhash_dist.rs` at 10 M signatures: 1.09 M distinct pairs over 1.73 M
//!    documents, **≈ 71 B per pair** (78 MB), 0.13 GiB peak RSS for the whole phase.
//! 4. **`run`**, one unit per rank: the whole DAG again from the inputs; the dedup node is
//!    built as [`RemoveFilter`], which rejects the documents of its rank's remove list
//!    (reason `near_duplicate`, the same detail and `duplicate_of` as the online stage) and
//!    gives kept documents `dedup.cluster_id` and `dedup.cluster_size`.
//!
//! Every file carries a magic, a record count and an xxh3-64 checksum trailer, verified
//! when read. A unit writes its files atomically (temp + rename), then its marker; a re-run
//! skips units whose marker exists (`sluice run --local-tasks N`, `sluice slurm resume`).
//!
//! # Requirements and differences
//! * The dedup node's upstream must be one chain from one source (the order of a fan-in
//!   depends on batch timing per rank). Stages in that chain run per rank, so an upstream
//!   stage that decides across documents (`exact_dedup`, `line_dedup`) sees only its rank's
//!   documents; put those after the dedup node, or accept that they depend on world size.
//! * `verify: exact` is not supported (it would need every shingle set in phase 2).
//! * `dedup.cluster_size` is exact (the single-process stage counts duplicates within
//!   `cluster_size_window_docs` only; the kept set and reject rows are the same).
//! * The run directory must be a local or shared filesystem path (not `s3://`).

use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::json;
use xxhash_rust::xxh3::Xxh3;

use super::bands::LshParams;
use super::signature::MinHasher;
use super::{accept, estimate_records, sketch_doc, sketch_record, Config, MinhashDedup, Mode};
use crate::config::PipelineSpec;
use crate::document::{DocBatch, Origin};
use crate::error::{Error, Result};
use crate::io::AtomicFile;
use crate::stage::{parse_config, BuildCtx, Emitter, Kind, Node, Role, ShardInfo, Sink, Stage};

/// Phase 1: per-rank signatures and bucket runs.
pub const PHASE_SIG: &str = "minhash-sig";
/// Phase 2: per-bucket candidate pairs.
pub const PHASE_PAIRS: &str = "minhash-pairs";
/// Phase 3: one clustering task, per-rank remove lists.
pub const PHASE_CLUSTERS: &str = "minhash-clusters";
/// Test hook: when this variable names a phase, its unit fails midway (after writing part
/// of its outputs, before committing them and its marker). Used by `tests/scale.rs`.
pub const FAULT_ENV: &str = "SLUICE_FAULT_PHASE";

const MAGIC_BUCKET: &[u8; 8] = b"SLMHBK01";
const MAGIC_PAIRS: &[u8; 8] = b"SLMHPR01";
const MAGIC_REMOVE: &[u8; 8] = b"SLMHRM01";

/// A distributed dedup node found in a config.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Node name.
    pub node: String,
    /// Its config.
    pub cfg: Config,
    /// Number of band-hash buckets (units of the pairs phase).
    pub buckets: usize,
}

/// Find the `minhash_dedup` node with `mode: distributed`, if any, and check the shape of
/// its upstream (one chain from one source).
pub fn plan(spec: &PipelineSpec, world: usize) -> Result<Option<Plan>> {
    let dist: Vec<usize> = spec
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            n.kind == "minhash_dedup"
                && n.params.get("mode").and_then(|m| m.as_str()) == Some("distributed")
        })
        .map(|(i, _)| i)
        .collect();
    let Some(&i) = dist.first() else {
        return Ok(None);
    };
    if dist.len() > 1 {
        return Err(Error::msg(
            "only one `minhash_dedup` node per config may use `mode: distributed`",
        ));
    }
    let node = &spec.nodes[i];
    let cfg: Config = serde_json::from_value(node.params.clone())
        .map_err(|e| Error::msg(format!("node `{}`: {e}", node.name)))?;
    // Walk the chain up to the source.
    let mut cur = node;
    loop {
        match cur.inputs.len() {
            0 => break,
            1 => {
                let up = &cur.inputs[0].node;
                cur = spec
                    .nodes
                    .iter()
                    .find(|n| &n.name == up)
                    .ok_or_else(|| Error::msg(format!("unknown node `{up}`")))?;
            }
            _ => {
                return Err(Error::msg(format!(
                    "node `{}` (`mode: distributed`): its upstream must be one chain from one source, but `{}` has {} inputs",
                    node.name,
                    cur.name,
                    cur.inputs.len()
                )))
            }
        }
    }
    let buckets = cfg.buckets.unwrap_or(world).max(1);
    Ok(Some(Plan {
        node: node.name.clone(),
        cfg,
        buckets,
    }))
}

/// `<out>/_minhash/<node>`: the node's phase state.
pub fn state_dir(out: &Path, node: &str) -> PathBuf {
    out.join("_minhash").join(node)
}

/// Marker of a unit of a dedup phase (`None` for other phases).
pub fn unit_marker(
    out: &Path,
    plan: &Plan,
    phase: &str,
    unit: usize,
    world: usize,
) -> Option<PathBuf> {
    let s = state_dir(out, &plan.node);
    match phase {
        PHASE_SIG => Some(
            s.join("sig")
                .join("ranks")
                .join(format!("r{unit:04}-of-{world:04}.done")),
        ),
        PHASE_PAIRS => Some(
            s.join("pairs")
                .join(format!("b{unit:04}-of-{:04}.done", plan.buckets)),
        ),
        PHASE_CLUSTERS => Some(s.join("remove").join("done")),
        _ => None,
    }
}

/// The config of phase 1: the dedup node's upstream chain, the node replaced by the
/// `minhash_signatures` sink (with the resolved bucket count).
pub fn signature_spec(spec: &PipelineSpec, plan: &Plan) -> PipelineSpec {
    let mut keep = vec![plan.node.clone()];
    let mut cur = plan.node.clone();
    while let Some(n) = spec.nodes.iter().find(|n| n.name == cur) {
        match n.inputs.first() {
            Some(inp) => {
                keep.push(inp.node.clone());
                cur = inp.node.clone();
            }
            None => break,
        }
    }
    let mut out = spec.clone();
    out.nodes.retain(|n| keep.contains(&n.name));
    for n in &mut out.nodes {
        if n.name == plan.node {
            n.kind = "minhash_signatures".into();
            if let Some(m) = n.params.as_object_mut() {
                m.insert("buckets".into(), json!(plan.buckets));
            }
        }
    }
    out
}

fn bucket_of(key: u64, buckets: usize) -> usize {
    ((key as u128 * buckets as u128) >> 64) as usize
}

fn fault(phase: &str) -> Result<()> {
    if std::env::var(FAULT_ENV).is_ok_and(|v| v == phase) {
        return Err(Error::msg(format!(
            "injected fault in phase {phase} ({FAULT_ENV})"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Checksummed record files: magic (8) · records · count (u64) · xxh3-64 of all before (u64).

struct CheckedWriter {
    w: BufWriter<AtomicFile>,
    h: Xxh3,
    count: u64,
    path: PathBuf,
}

impl CheckedWriter {
    fn create(path: PathBuf, magic: &[u8; 8]) -> Result<Self> {
        let mut w = CheckedWriter {
            w: BufWriter::with_capacity(1 << 20, AtomicFile::create(&path)?),
            h: Xxh3::new(),
            count: 0,
            path,
        };
        w.raw(magic)?;
        Ok(w)
    }
    fn raw(&mut self, b: &[u8]) -> Result<()> {
        self.h.update(b);
        self.w.write_all(b).map_err(|e| Error::io(&self.path, e))
    }
    fn record(&mut self, parts: &[&[u8]]) -> Result<()> {
        for p in parts {
            self.raw(p)?;
        }
        self.count += 1;
        Ok(())
    }
    fn commit(mut self) -> Result<()> {
        let c = self.count.to_le_bytes();
        self.raw(&c)?;
        let d = self.h.digest().to_le_bytes();
        self.w.write_all(&d).map_err(|e| Error::io(&self.path, e))?;
        let f = self
            .w
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        f.commit()?;
        Ok(())
    }
}

struct CheckedReader {
    r: BufReader<File>,
    h: Xxh3,
    path: PathBuf,
    left: u64,
    count: u64,
}

impl CheckedReader {
    fn open(path: &Path, magic: &[u8; 8]) -> Result<Self> {
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < 24 {
            return Err(Error::msg(format!("{}: truncated file", path.display())));
        }
        let mut r = CheckedReader {
            r: BufReader::with_capacity(1 << 18, f),
            h: Xxh3::new(),
            path: path.to_path_buf(),
            left: len - 8,
            count: 0,
        };
        let m = r.bytes::<8>()?;
        if &m != magic {
            return Err(Error::msg(format!(
                "{}: not a {magic:?} file",
                path.display()
            )));
        }
        r.left -= 8; // the count word
        Ok(r)
    }
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|e| Error::io(&self.path, e))?;
        self.h.update(&b);
        self.left = self.left.saturating_sub(N as u64);
        Ok(b)
    }
    fn vec(&mut self, n: usize) -> Result<Vec<u8>> {
        if n as u64 > self.left {
            return Err(Error::msg(format!(
                "{}: corrupt record",
                self.path.display()
            )));
        }
        let mut b = vec![0u8; n];
        self.r
            .read_exact(&mut b)
            .map_err(|e| Error::io(&self.path, e))?;
        self.h.update(&b);
        self.left -= n as u64;
        Ok(b)
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes::<8>()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes::<4>()?))
    }
    /// Whether records remain; at the end, verify the count and the checksum.
    fn more(&mut self) -> Result<bool> {
        if self.left > 0 {
            self.count += 1;
            return Ok(true);
        }
        let mut t = [0u8; 16];
        self.r
            .read_exact(&mut t)
            .map_err(|e| Error::io(&self.path, e))?;
        self.h.update(&t[..8]);
        let count = u64::from_le_bytes(t[..8].try_into().unwrap_or([0; 8]));
        let sum = u64::from_le_bytes(t[8..].try_into().unwrap_or([0; 8]));
        if count != self.count || sum != self.h.digest() {
            return Err(Error::msg(format!(
                "{}: checksum mismatch (corrupt or truncated)",
                self.path.display()
            )));
        }
        Ok(false)
    }
}

// ---------------------------------------------------------------------------------------
// Phase 1: the `minhash_signatures` sink.

/// Buffered band entries: (key, origin, local index).
type Entry = (u64, u64, u32);

/// Phase 1 sink: signatures, ids and sorted bucket runs of one rank.
pub struct SignatureSink {
    cfg: Config,
    params: LshParams,
    hasher: MinHasher,
    buckets: usize,
    dir: PathBuf,
    runs: Vec<Vec<Entry>>,
    buffered: usize,
    run_no: u32,
    files: Option<(
        BufWriter<AtomicFile>,
        BufWriter<AtomicFile>,
        BufWriter<AtomicFile>,
    )>,
    id_end: u64,
    local: u32,
    last: Option<u64>,
    docs: u64,
    no_shingles: u64,
    entries: u64,
    rec: Vec<u32>,
}

impl SignatureSink {
    /// Build for one rank; removes what an earlier attempt of this rank left.
    pub fn new(cfg: Config, ctx: &BuildCtx) -> Result<Self> {
        let params = cfg.lsh_params();
        let hasher = MinHasher::new(cfg.num_perm, cfg.seed);
        let buckets = cfg.buckets.unwrap_or(ctx.world_size).max(1);
        let dir = ctx.out_dir.join(format!("r{:04}", ctx.rank));
        let files = if ctx.validate_only {
            None
        } else {
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            }
            let open = |n: &str| -> Result<BufWriter<AtomicFile>> {
                Ok(BufWriter::with_capacity(
                    1 << 20,
                    AtomicFile::create(dir.join(n))?,
                ))
            };
            Some((open("sketches.u32")?, open("ids.bin")?, open("ids.idx")?))
        };
        Ok(SignatureSink {
            cfg,
            params,
            hasher,
            buckets,
            dir,
            runs: vec![Vec::new(); buckets],
            buffered: 0,
            run_no: 0,
            files,
            id_end: 0,
            local: 0,
            last: None,
            docs: 0,
            no_shingles: 0,
            entries: 0,
            rec: Vec::new(),
        })
    }

    /// Record one indexed document: its signature, id and band entries. Origins must
    /// ascend (checked by [`Sink::write`]); public for `benches/minhash_dist.rs`.
    pub fn push_signature(
        &mut self,
        origin: u64,
        id: &str,
        sig: &[u32],
        n_shingles: usize,
        keys: &[u64],
    ) -> Result<()> {
        let Some((sigs, ids, idx)) = self.files.as_mut() else {
            return Ok(());
        };
        let dir = &self.dir;
        let io = |e| Error::io(dir, e);
        let mut buf = [0u8; 4 * 64];
        sketch_record(sig, n_shingles, &mut self.rec);
        for chunk in self.rec.chunks(64) {
            for (i, v) in chunk.iter().enumerate() {
                buf[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
            }
            sigs.write_all(&buf[..chunk.len() * 4]).map_err(io)?;
        }
        ids.write_all(id.as_bytes()).map_err(io)?;
        self.id_end += id.len() as u64;
        idx.write_all(&self.id_end.to_le_bytes()).map_err(io)?;
        for &k in keys {
            self.runs[bucket_of(k, self.buckets)].push((k, origin, self.local));
        }
        self.buffered += keys.len();
        self.entries += keys.len() as u64;
        self.local += 1;
        if self.buffered >= self.cfg.run_entries.max(1) {
            self.flush_runs()?;
        }
        Ok(())
    }

    fn flush_runs(&mut self) -> Result<()> {
        for (b, run) in self.runs.iter_mut().enumerate() {
            if run.is_empty() {
                continue;
            }
            run.par_sort_unstable();
            let path = self.dir.join(format!("b{b:04}-{:04}.bin", self.run_no));
            let mut w = CheckedWriter::create(path, MAGIC_BUCKET)?;
            for &(k, o, l) in run.iter() {
                w.record(&[&k.to_le_bytes(), &o.to_le_bytes(), &l.to_le_bytes()])?;
            }
            w.commit()?;
            run.clear();
        }
        self.run_no += 1;
        self.buffered = 0;
        Ok(())
    }
}

impl Sink for SignatureSink {
    fn write(&mut self, batch: DocBatch) -> Result<()> {
        let (cfg, params, hasher) = (&self.cfg, self.params, &self.hasher);
        let sketches: Vec<_> = batch
            .docs
            .par_iter()
            .map(|d| sketch_doc(cfg, params, hasher, d))
            .collect();
        for (doc, sk) in batch.docs.iter().zip(sketches) {
            self.docs += 1;
            let o = doc.origin.0;
            if self.last.is_some_and(|l| o <= l) {
                return Err(Error::msg(format!(
                    "document {} arrived out of input order: distributed minhash_dedup needs its upstream to keep source order",
                    doc.id
                )));
            }
            self.last = Some(o);
            if sk.sig.is_empty() {
                self.no_shingles += 1;
                continue;
            }
            self.push_signature(o, &doc.id, &sk.sig, sk.n_shingles, &sk.keys)?;
        }
        Ok(())
    }

    fn accounting(&self) -> crate::stage::Accounting {
        // Every document is folded into the signature index that phase 2 reads.
        crate::stage::Accounting::Merging {
            consumed: self.docs,
        }
    }

    fn finish(&mut self) -> Result<Vec<ShardInfo>> {
        let Some((sigs, ids, idx)) = self.files.take() else {
            return Ok(Vec::new());
        };
        if self.buffered > 0 {
            self.flush_runs()?;
        }
        for w in [sigs, ids, idx] {
            w.into_inner()
                .map_err(|e| Error::io(&self.dir, e.into_error()))?
                .commit()?;
        }
        Ok(Vec::new())
    }

    fn manifest(&self) -> Option<serde_json::Value> {
        Some(json!({
            "docs": self.docs,
            "indexed": self.local,
            "no_shingles": self.no_shingles,
            "band_entries": self.entries,
            "runs": self.run_no,
            "buckets": self.buckets,
        }))
    }
}

/// Registry entry of the internal phase-1 sink (inserted by the phase planner).
pub fn signatures_kind() -> Kind {
    Kind {
        name: "minhash_signatures",
        doc: "Internal: phase 1 of distributed minhash_dedup (signatures and sorted band-hash bucket runs); inserted by the phase planner.",
        role: Role::Sink,
        ports: &[],
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            let s = SignatureSink::new(cfg, ctx).map_err(|e| vec![e.to_string()])?;
            Ok(Node::Sink(Box::new(s)))
        },
    }
}

// ---------------------------------------------------------------------------------------
// Random access into the ranks' signature and id files.

struct RankFiles {
    sig_dir: PathBuf,
    num_perm: usize,
    open: HashMap<usize, (File, File, File)>,
    buf: Vec<u8>,
}

impl RankFiles {
    fn new(sig_dir: PathBuf, num_perm: usize) -> Self {
        RankFiles {
            sig_dir,
            num_perm,
            open: HashMap::new(),
            buf: Vec::new(),
        }
    }
    fn files(&mut self, rank: usize) -> Result<&(File, File, File)> {
        if !self.open.contains_key(&rank) {
            let d = self.sig_dir.join(format!("r{rank:04}"));
            let o = |n: &str| File::open(d.join(n)).map_err(|e| Error::io(d.join(n), e));
            self.open
                .insert(rank, (o("sketches.u32")?, o("ids.bin")?, o("ids.idx")?));
        }
        Ok(&self.open[&rank])
    }
    fn sig(&mut self, rank: usize, local: u32, out: &mut Vec<u32>) -> Result<()> {
        let n = (self.num_perm + 1) * 4;
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(n, 0);
        let dir = self.sig_dir.clone();
        let f = &self.files(rank)?.0;
        f.read_exact_at(&mut buf, local as u64 * n as u64)
            .map_err(|e| Error::io(dir.join(format!("r{rank:04}/sketches.u32")), e))?;
        out.clear();
        out.extend(
            buf.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        self.buf = buf;
        Ok(())
    }
    fn id(&mut self, rank: usize, local: u32) -> Result<String> {
        let dir = self.sig_dir.clone();
        let (_, ids, idx) = self.files(rank)?;
        let err = |e| Error::io(dir.join(format!("r{rank:04}/ids")), e);
        let mut b = [0u8; 16];
        let (start, end) = if local == 0 {
            idx.read_exact_at(&mut b[8..], 0).map_err(err)?;
            (0, u64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8])))
        } else {
            idx.read_exact_at(&mut b, (local as u64 - 1) * 8)
                .map_err(err)?;
            (
                u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])),
                u64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8])),
            )
        };
        let mut s = vec![0u8; end.saturating_sub(start) as usize];
        ids.read_exact_at(&mut s, start).map_err(err)?;
        String::from_utf8(s).map_err(|_| Error::msg("corrupt id file"))
    }
}

fn write_marker(path: &Path, v: &serde_json::Value) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(
        serde_json::to_string_pretty(v)
            .unwrap_or_default()
            .as_bytes(),
    )
    .map_err(|e| Error::io(path, e))?;
    f.commit()?;
    Ok(())
}

fn require_markers(out: &Path, plan: &Plan, phase: &str, units: usize, world: usize) -> Result<()> {
    for u in 0..units {
        if let Some(m) = unit_marker(out, plan, phase, u, world) {
            if !m.exists() {
                return Err(Error::msg(format!(
                    "phase {phase} unit {u} is not done ({} missing); run the earlier phases first",
                    m.display()
                )));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Phase 2: pairs of one bucket.

/// One accepted candidate pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// Origin of the later document.
    pub d: u64,
    /// Origin of the representative (earlier).
    pub rep: u64,
    /// Local index of `d` in its rank's files.
    pub d_local: u32,
    /// Local index of `rep` in its rank's files.
    pub rep_local: u32,
    /// Estimated Jaccard.
    pub est: f64,
}

/// Counters of one bucket.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PairStats {
    /// Band entries merged.
    pub entries: u64,
    /// Distinct band keys.
    pub keys: u64,
    /// (d, rep) candidates examined.
    pub candidates: u64,
    /// Candidates that failed verification.
    pub rejected_by_verify: u64,
    /// Candidates accepted by the containment test alone.
    pub accepted_by_containment: u64,
    /// Distinct accepted pairs written.
    pub pairs: u64,
}

/// Fetches a sketch record (signature, then shingle-set size) by (rank, local index) into
/// a buffer.
pub type SigFetch<'a> = dyn FnMut(usize, u32, &mut Vec<u32>) -> Result<()> + 'a;

/// The accepted pairs of one bucket's merged entries, from sorted runs. `sig` fetches a
/// signature by (rank, local). Returns pairs sorted by (d, rep), deduplicated.
pub fn bucket_pairs(
    runs: Vec<Box<dyn Iterator<Item = Result<Entry>> + '_>>,
    cfg: &Config,
    world: usize,
    sig: &mut SigFetch<'_>,
    st: &mut PairStats,
) -> Result<Vec<Pair>> {
    let mut runs = runs;
    let mut heap: BinaryHeap<std::cmp::Reverse<(Entry, usize)>> = BinaryHeap::new();
    for (i, r) in runs.iter_mut().enumerate() {
        if let Some(e) = r.next() {
            heap.push(std::cmp::Reverse((e?, i)));
        }
    }
    let mut pairs = Vec::new();
    let mut group: Vec<Entry> = Vec::new();
    let (mut rep_sig, mut d_sig) = (Vec::new(), Vec::new());
    let mut flush = |group: &mut Vec<Entry>, pairs: &mut Vec<Pair>, st: &mut PairStats| {
        if group.len() >= 2 {
            let (_, rep, rep_local) = group[0];
            sig(Origin(rep).rank(world), rep_local, &mut rep_sig)?;
            for &(_, d, d_local) in &group[1..] {
                if d == rep {
                    continue;
                }
                st.candidates += 1;
                sig(Origin(d).rank(world), d_local, &mut d_sig)?;
                let (est, est_c) = estimate_records(&d_sig, &rep_sig);
                let verdict = accept(cfg, est, est_c);
                st.accepted_by_containment += verdict.by_containment as u64;
                if verdict.accepted {
                    pairs.push(Pair {
                        d,
                        rep,
                        d_local,
                        rep_local,
                        est,
                    });
                } else {
                    st.rejected_by_verify += 1;
                }
            }
        }
        group.clear();
        Ok::<(), Error>(())
    };
    while let Some(std::cmp::Reverse((e, i))) = heap.pop() {
        st.entries += 1;
        if group.first().is_some_and(|g| g.0 != e.0) {
            flush(&mut group, &mut pairs, st)?;
        }
        if group.is_empty() {
            st.keys += 1;
        }
        group.push(e);
        if let Some(n) = runs[i].next() {
            heap.push(std::cmp::Reverse((n?, i)));
        }
    }
    flush(&mut group, &mut pairs, st)?;
    pairs.sort_unstable_by_key(|p| (p.d, p.rep));
    pairs.dedup_by(|a, b| a.d == b.d && a.rep == b.rep);
    st.pairs = pairs.len() as u64;
    Ok(pairs)
}

/// Stream the records of a checksummed file (checksum verified at the end); the first error
/// ends the stream.
fn records<T>(
    path: &Path,
    magic: &[u8; 8],
    mut read: impl FnMut(&mut CheckedReader) -> Result<T>,
) -> Result<impl Iterator<Item = Result<T>>> {
    let mut r = CheckedReader::open(path, magic)?;
    let mut done = false;
    Ok(std::iter::from_fn(move || {
        if done {
            return None;
        }
        let rec = match r.more() {
            Ok(true) => read(&mut r).map(Some),
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        };
        match rec {
            Ok(Some(x)) => Some(Ok(x)),
            Ok(None) => {
                done = true;
                None
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    }))
}

fn bucket_run_iter(path: &Path) -> Result<impl Iterator<Item = Result<Entry>>> {
    records(path, MAGIC_BUCKET, |r| Ok((r.u64()?, r.u64()?, r.u32()?)))
}

/// Phase 2, one unit: the pairs of bucket `bucket`. Skips when its marker exists.
pub fn run_pairs(out: &Path, plan: &Plan, bucket: usize, world: usize) -> Result<bool> {
    let marker = unit_marker(out, plan, PHASE_PAIRS, bucket, world).unwrap_or_default();
    if marker.exists() {
        return Ok(false);
    }
    if bucket >= plan.buckets {
        return Err(Error::msg(format!(
            "bucket {bucket} out of range (buckets: {})",
            plan.buckets
        )));
    }
    require_markers(out, plan, PHASE_SIG, world, world)?;
    let t0 = std::time::Instant::now();
    let sig_dir = state_dir(out, &plan.node).join("sig");
    let prefix = format!("b{bucket:04}-");
    let mut paths = Vec::new();
    for r in 0..world {
        let d = sig_dir.join(format!("r{r:04}"));
        let mut v: Vec<PathBuf> = std::fs::read_dir(&d)
            .map_err(|e| Error::io(&d, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".bin"))
            })
            .collect();
        v.sort();
        paths.extend(v);
    }
    let mut runs: Vec<Box<dyn Iterator<Item = Result<Entry>>>> = Vec::new();
    for p in &paths {
        runs.push(Box::new(bucket_run_iter(p)?));
    }
    let mut files = RankFiles::new(sig_dir, plan.cfg.num_perm);
    let mut st = PairStats::default();
    let pairs = bucket_pairs(
        runs,
        &plan.cfg,
        world,
        &mut |r, l, out| files.sig(r, l, out),
        &mut st,
    )?;
    fault(PHASE_PAIRS)?;
    let path = state_dir(out, &plan.node)
        .join("pairs")
        .join(format!("b{bucket:04}.bin"));
    write_pairs(&path, &pairs)?;
    write_marker(
        &marker,
        &json!({"bucket": bucket, "buckets": plan.buckets, "world_size": world, "run_files": paths.len(), "stats": st, "wall_secs": t0.elapsed().as_secs_f64()}),
    )?;
    Ok(true)
}

/// Write a pairs file (sorted by (d, rep)).
pub fn write_pairs(path: &Path, pairs: &[Pair]) -> Result<()> {
    let mut w = CheckedWriter::create(path.to_path_buf(), MAGIC_PAIRS)?;
    for p in pairs {
        w.record(&[
            &p.d.to_le_bytes(),
            &p.rep.to_le_bytes(),
            &p.d_local.to_le_bytes(),
            &p.rep_local.to_le_bytes(),
            &p.est.to_le_bytes(),
        ])?;
    }
    w.commit()
}

/// Stream a pairs file, verifying its checksum at the end.
pub fn read_pairs(path: &Path) -> Result<impl Iterator<Item = Result<Pair>>> {
    records(path, MAGIC_PAIRS, |r| {
        Ok(Pair {
            d: r.u64()?,
            rep: r.u64()?,
            d_local: r.u32()?,
            rep_local: r.u32()?,
            est: f64::from_le_bytes(r.bytes::<8>()?),
        })
    })
}

// ---------------------------------------------------------------------------------------
// Phase 3: clusters.

/// Union-find over the documents that appear in pairs, keyed by origin; the root of a set
/// is its smallest origin (the online stage's rule).
#[derive(Default)]
pub struct PairUnionFind {
    index: HashMap<u64, u32>,
    parent: Vec<u32>,
    origin: Vec<u64>,
    local: Vec<u32>,
    dups: Vec<u32>,
}

impl PairUnionFind {
    /// The node of an origin, created on first sight.
    pub fn node(&mut self, origin: u64, local: u32) -> u32 {
        let n = self.parent.len() as u32;
        let e = *self.index.entry(origin).or_insert(n);
        if e == n {
            self.parent.push(n);
            self.origin.push(origin);
            self.local.push(local);
            self.dups.push(0);
        }
        e
    }
    fn find(&mut self, x: u32) -> u32 {
        super::unionfind::find_root(&mut self.parent, x)
    }
    /// Merge; the root is the smaller origin.
    pub fn union(&mut self, a: u32, b: u32) -> u32 {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return ra;
        }
        let (root, child) = if self.origin[ra as usize] < self.origin[rb as usize] {
            (ra, rb)
        } else {
            (rb, ra)
        };
        self.parent[child as usize] = root;
        root
    }
    /// Number of documents held.
    pub fn len(&self) -> usize {
        self.parent.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }
    /// Heap bytes of the state (hash map estimated from its capacity).
    pub fn heap_bytes(&self) -> usize {
        // hashbrown: buckets = next power of two ≥ capacity × 8/7, each (key 8 + value 4,
        // padded to 16) + 1 control byte.
        let buckets = if self.index.capacity() == 0 {
            0
        } else {
            (self.index.capacity() * 8 / 7).next_power_of_two()
        };
        buckets * 17
            + self.parent.capacity() * 4
            + self.origin.capacity() * 8
            + self.local.capacity() * 4
            + self.dups.capacity() * 4
    }
}

/// One decision of phase 3: `d` is a duplicate charged to `root`, best match `matched`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Removal {
    /// The duplicate.
    pub d: u64,
    /// Its cluster root at decision time (origin, local).
    pub root: (u64, u32),
    /// Its best match (origin, local).
    pub matched: (u64, u32),
    /// Estimated Jaccard with the match.
    pub est: f64,
}

/// Counters of phase 3.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ClusterStats {
    /// Distinct pairs read.
    pub pairs: u64,
    /// Documents removed.
    pub duplicates: u64,
    /// Documents with union-find state.
    pub nodes: u64,
    /// Bytes of union-find state at the end.
    pub state_bytes: u64,
}

/// Process pairs in (d, rep) order (duplicates allowed) with the online rule; call `emit`
/// for every removal, in `d` order. Returns the union-find (for root duplicate counts).
pub fn cluster(
    pairs: impl Iterator<Item = Result<Pair>>,
    st: &mut ClusterStats,
    mut emit: impl FnMut(&Removal) -> Result<()>,
) -> Result<PairUnionFind> {
    let mut uf = PairUnionFind::default();
    let mut cur: Vec<Pair> = Vec::new();
    let mut decide =
        |cur: &mut Vec<Pair>, uf: &mut PairUnionFind, st: &mut ClusterStats| -> Result<()> {
            let Some(first) = cur.first().copied() else {
                return Ok(());
            };
            let dn = uf.node(first.d, first.d_local);
            let mut best = first;
            for p in cur.iter() {
                if p.est > best.est {
                    best = *p;
                }
                let rn = uf.node(p.rep, p.rep_local);
                uf.union(dn, rn);
            }
            let root = uf.find(dn);
            uf.dups[root as usize] += 1;
            st.duplicates += 1;
            emit(&Removal {
                d: first.d,
                root: (uf.origin[root as usize], uf.local[root as usize]),
                matched: (best.rep, best.rep_local),
                est: best.est,
            })?;
            cur.clear();
            Ok(())
        };
    let mut last: Option<(u64, u64)> = None;
    for p in pairs {
        let p = p?;
        if let Some(l) = last {
            if (p.d, p.rep) < l {
                return Err(Error::msg("pairs out of order"));
            }
            if (p.d, p.rep) == l {
                continue;
            }
        }
        last = Some((p.d, p.rep));
        st.pairs += 1;
        if cur.first().is_some_and(|c| c.d != p.d) {
            decide(&mut cur, &mut uf, st)?;
        }
        cur.push(p);
    }
    decide(&mut cur, &mut uf, st)?;
    st.nodes = uf.len() as u64;
    st.state_bytes = uf.heap_bytes() as u64;
    Ok(uf)
}

/// k-way merge of sorted pair streams by (d, rep).
pub fn merge_pairs<'a>(
    mut streams: Vec<Box<dyn Iterator<Item = Result<Pair>> + 'a>>,
) -> impl Iterator<Item = Result<Pair>> + 'a {
    let mut heap: BinaryHeap<std::cmp::Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let mut head: Vec<Option<Pair>> = vec![None; streams.len()];
    let mut pending_err: Option<Error> = None;
    for (i, s) in streams.iter_mut().enumerate() {
        match s.next() {
            Some(Ok(p)) => {
                heap.push(std::cmp::Reverse((p.d, p.rep, i)));
                head[i] = Some(p);
            }
            Some(Err(e)) => pending_err = Some(e),
            None => {}
        }
    }
    std::iter::from_fn(move || {
        if let Some(e) = pending_err.take() {
            return Some(Err(e));
        }
        let std::cmp::Reverse((_, _, i)) = heap.pop()?;
        let p = head[i].take()?;
        match streams[i].next() {
            Some(Ok(n)) => {
                heap.push(std::cmp::Reverse((n.d, n.rep, i)));
                head[i] = Some(n);
            }
            Some(Err(e)) => pending_err = Some(e),
            None => {}
        }
        Some(Ok(p))
    })
}

/// Phase 3: read every bucket's pairs, decide, write per-rank remove lists. Skips when
/// its marker exists.
pub fn run_clusters(out: &Path, plan: &Plan, world: usize) -> Result<bool> {
    let marker = unit_marker(out, plan, PHASE_CLUSTERS, 0, world).unwrap_or_default();
    if marker.exists() {
        return Ok(false);
    }
    require_markers(out, plan, PHASE_PAIRS, plan.buckets, world)?;
    let t0 = std::time::Instant::now();
    let s = state_dir(out, &plan.node);
    let mut streams: Vec<Box<dyn Iterator<Item = Result<Pair>>>> = Vec::new();
    for b in 0..plan.buckets {
        streams.push(Box::new(read_pairs(
            &s.join("pairs").join(format!("b{b:04}.bin")),
        )?));
    }
    let mut files = RankFiles::new(s.join("sig"), plan.cfg.num_perm);
    let mut writers: Vec<CheckedWriter> = (0..world)
        .map(|r| CheckedWriter::create(s.join("remove").join(format!("r{r:04}.bin")), MAGIC_REMOVE))
        .collect::<Result<_>>()?;
    let mut st = ClusterStats::default();
    // The fault hook fires after the first remove record was written (uncommitted).
    let inject = std::env::var(FAULT_ENV).is_ok_and(|v| v == PHASE_CLUSTERS);
    let mut written = 0u64;
    let uf = cluster(merge_pairs(streams), &mut st, |r| {
        if inject && written > 0 {
            fault(PHASE_CLUSTERS)?;
        }
        written += 1;
        let root = files.id(Origin(r.root.0).rank(world), r.root.1)?;
        let matched = files.id(Origin(r.matched.0).rank(world), r.matched.1)?;
        let w = &mut writers[Origin(r.d).rank(world)];
        w.record(&[
            &[0u8],
            &r.d.to_le_bytes(),
            &r.est.to_le_bytes(),
            &(root.len() as u32).to_le_bytes(),
            root.as_bytes(),
            &(matched.len() as u32).to_le_bytes(),
            matched.as_bytes(),
        ])
    })?;
    // Duplicate counts of roots, per rank in origin order.
    let mut sizes: Vec<(u64, u32)> = (0..uf.len())
        .filter(|&i| uf.dups[i] > 0)
        .map(|i| (uf.origin[i], uf.dups[i]))
        .collect();
    sizes.sort_unstable();
    for (o, n) in sizes {
        writers[Origin(o).rank(world)].record(&[&[1u8], &o.to_le_bytes(), &n.to_le_bytes()])?;
    }
    for w in writers {
        w.commit()?;
    }
    write_marker(
        &marker,
        &json!({"world_size": world, "buckets": plan.buckets, "stats": st,
                "state_bytes_per_pair": st.state_bytes as f64 / st.pairs.max(1) as f64,
                "wall_secs": t0.elapsed().as_secs_f64()}),
    )?;
    Ok(true)
}

// ---------------------------------------------------------------------------------------
// Phase 4: the filter.

/// What phase 3 decided about one duplicate.
struct RemoveInfo {
    est: f64,
    root: String,
    matched: String,
}

/// Phase 4: the `minhash_dedup` node of a `mode: distributed` config. Rejects the
/// documents on this rank's remove list; kept documents get the cluster attributes.
pub struct RemoveFilter {
    remove: HashMap<u64, RemoveInfo>,
    sizes: HashMap<u64, u32>,
    docs: u64,
    kept: u64,
    duplicates: u64,
}

impl RemoveFilter {
    /// Load this rank's remove list (nothing under `validate_only`).
    pub fn new(cfg: Config, ctx: &BuildCtx) -> std::result::Result<Self, Vec<String>> {
        debug_assert_eq!(cfg.mode, Mode::Distributed);
        let mut f = RemoveFilter {
            remove: HashMap::new(),
            sizes: HashMap::new(),
            docs: 0,
            kept: 0,
            duplicates: 0,
        };
        if ctx.validate_only {
            return Ok(f);
        }
        let s = state_dir(&ctx.out_dir, &ctx.node).join("remove");
        let done = s.join("done");
        let e = |m: String| vec![format!("node `{}`: {m}", ctx.node)];
        let v: serde_json::Value = match std::fs::read(&done) {
            Ok(b) => serde_json::from_slice(&b).map_err(|x| e(format!("{}: {x}", done.display())))?,
            Err(_) => {
                return Err(e(format!(
                    "`mode: distributed` needs the dedup phases first ({} is missing): run with `sluice run CONFIG --local-tasks N` or `sluice slurm submit`",
                    done.display()
                )))
            }
        };
        let w = v["world_size"].as_u64().unwrap_or(0) as usize;
        if w != ctx.world_size {
            return Err(e(format!(
                "the dedup phases ran with world size {w}, this run has {}",
                ctx.world_size
            )));
        }
        let path = s.join(format!("r{:04}.bin", ctx.rank));
        f.load(&path).map_err(|x| e(x.to_string()))?;
        Ok(f)
    }

    fn load(&mut self, path: &Path) -> Result<()> {
        let mut r = CheckedReader::open(path, MAGIC_REMOVE)?;
        while r.more()? {
            let tag = r.bytes::<1>()?[0];
            let o = r.u64()?;
            if tag == 0 {
                let est = f64::from_le_bytes(r.bytes::<8>()?);
                let n = r.u32()? as usize;
                let root = String::from_utf8_lossy(&r.vec(n)?).into_owned();
                let n = r.u32()? as usize;
                let matched = String::from_utf8_lossy(&r.vec(n)?).into_owned();
                self.remove.insert(o, RemoveInfo { est, root, matched });
            } else {
                let n = r.u32()?;
                self.sizes.insert(o, n);
            }
        }
        Ok(())
    }
}

impl Stage for RemoveFilter {
    fn attrs(&self) -> Vec<crate::attrs::AttrDecl> {
        MinhashDedup::attr_decls()
    }

    fn process(&mut self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        for mut doc in batch.docs {
            self.docs += 1;
            let o = doc.origin.0;
            if let Some(r) = self.remove.remove(&o) {
                self.duplicates += 1;
                let detail = format!(
                    "duplicate_of={} matched={} jaccard_est={:.4}",
                    r.root, r.matched, r.est
                );
                doc.meta.insert("duplicate_of".into(), r.root);
                out.reject(doc, "near_duplicate", Some(r.est), detail);
            } else {
                self.kept += 1;
                let size = 1 + self.sizes.get(&o).copied().unwrap_or(0);
                doc.attrs
                    .insert("dedup.cluster_id".into(), MinhashDedup::cluster_id(&doc.id));
                doc.attrs.insert("dedup.cluster_size".into(), size as f64);
                out.emit(doc);
            }
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Emitter) -> Result<()> {
        if !self.remove.is_empty() {
            return Err(Error::msg(format!(
                "{} documents on the remove list never arrived: the inputs changed since the dedup phases ran",
                self.remove.len()
            )));
        }
        Ok(())
    }

    fn stats(&self) -> Option<serde_json::Value> {
        Some(json!({
            "mode": "distributed",
            "counters": {"docs": self.docs, "kept": self.kept, "duplicates": self.duplicates},
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(d: u64, rep: u64, est: f64) -> Pair {
        Pair {
            d,
            rep,
            d_local: d as u32,
            rep_local: rep as u32,
            est,
        }
    }

    #[test]
    fn pairs_file_round_trips_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b0000.bin");
        let pairs = vec![pair(5, 1, 0.8), pair(7, 1, 0.75), pair(7, 5, 0.9)];
        write_pairs(&p, &pairs).unwrap();
        let back: Vec<Pair> = read_pairs(&p).unwrap().collect::<Result<_>>().unwrap();
        assert_eq!(back, pairs);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        let r: Result<Vec<Pair>> = read_pairs(&p).unwrap().collect();
        assert!(r.unwrap_err().to_string().contains("checksum"));
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&p, &bytes).unwrap();
        let r: Result<Vec<Pair>> = read_pairs(&p).unwrap().collect();
        assert!(r.is_err(), "a truncated file was accepted");
    }

    #[test]
    fn cluster_applies_the_online_rule() {
        // 1 ← 3 (0.8), 2 ← 3 (0.9): best match 2, root 1 (smallest). 4 ← 2 (0.7): root 1.
        // The same pair from two bands counts once.
        let pairs = vec![
            pair(3, 1, 0.8),
            pair(3, 2, 0.9),
            pair(3, 2, 0.9),
            pair(4, 2, 0.7),
            pair(9, 8, 0.75),
        ];
        let mut st = ClusterStats::default();
        let mut got = Vec::new();
        let uf = cluster(pairs.into_iter().map(Ok), &mut st, |r| {
            got.push(*r);
            Ok(())
        })
        .unwrap();
        assert_eq!(st.pairs, 4);
        assert_eq!(st.duplicates, 3);
        assert_eq!(got[0].d, 3);
        assert_eq!(got[0].matched.0, 2);
        assert_eq!(got[0].root.0, 1);
        assert_eq!((got[1].d, got[1].root.0, got[1].matched.0), (4, 1, 2));
        assert_eq!((got[2].d, got[2].root.0), (9, 8));
        let dups: Vec<(u64, u32)> = (0..uf.len())
            .filter(|&i| uf.dups[i] > 0)
            .map(|i| (uf.origin[i], uf.dups[i]))
            .collect();
        assert_eq!(dups.len(), 2);
        assert!(dups.contains(&(1, 2)) && dups.contains(&(8, 1)));
    }

    #[test]
    fn merge_pairs_orders_streams() {
        let a = vec![pair(1, 0, 1.0), pair(5, 2, 1.0)];
        let b = vec![pair(3, 1, 1.0), pair(5, 1, 1.0)];
        let m: Vec<(u64, u64)> = merge_pairs(vec![
            Box::new(a.into_iter().map(Ok)),
            Box::new(b.into_iter().map(Ok)),
        ])
        .map(|p| p.map(|p| (p.d, p.rep)))
        .collect::<Result<_>>()
        .unwrap();
        assert_eq!(m, vec![(1, 0), (3, 1), (5, 1), (5, 2)]);
    }
}
