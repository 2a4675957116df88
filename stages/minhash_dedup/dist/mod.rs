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
//! [`Plan`] declares them to the engine as a [`GlobalStage`] (see [`crate::phases`]); the
//! registry lists [`global_kind`], so the CLI and the launchers run them without naming
//! this stage. State lives under `<run dir>/_minhash/<node>/`.
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
use crate::phases::{GlobalKind, GlobalStage, PhaseDecl, Units, Work};
use crate::stage::{parse_config, BuildCtx, Emitter, Kind, Node, Role, ShardInfo, Sink, Stage};

mod clusters;
mod files;
mod filter;
mod pairs;
mod sig;
#[cfg(test)]
mod tests;

pub use clusters::{cluster, merge_pairs, run_clusters, ClusterStats, PairUnionFind, Removal};
use files::{records, require_markers, write_marker, CheckedReader, CheckedWriter, RankFiles};
pub use filter::RemoveFilter;
pub use pairs::{bucket_pairs, read_pairs, run_pairs, write_pairs, Pair, PairStats, SigFetch};
use sig::Entry;
pub use sig::{signatures_kind, SignatureSink};

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

/// Registry entry of the multi-phase form: a config with a `minhash_dedup` node in
/// `mode: distributed` runs the phases of [`Plan`].
pub fn global_kind() -> GlobalKind {
    GlobalKind {
        kind: "minhash_dedup",
        plan: |spec, world| Ok(plan(spec, world)?.map(|p| Box::new(p) as Box<dyn GlobalStage>)),
    }
}

impl GlobalStage for Plan {
    fn node(&self) -> &str {
        &self.node
    }

    fn kind(&self) -> &'static str {
        "minhash_dedup"
    }

    fn state_dir(&self, out: &Path) -> PathBuf {
        state_dir(out, &self.node)
    }

    fn phases(&self) -> Vec<PhaseDecl> {
        vec![
            PhaseDecl {
                name: PHASE_SIG,
                units: Units::PerRank,
                work: Work::Pipeline { dir: "sig" },
                reads: &[],
                writes: &[
                    "sig/r<U>/sketches.u32",
                    "sig/r<U>/ids.bin",
                    "sig/r<U>/ids.idx",
                    "sig/r<U>/b<B>-<run>.bin",
                    "sig/ranks/r<U>-of-<N>.done",
                ],
            },
            PhaseDecl {
                name: PHASE_PAIRS,
                units: Units::Fixed(self.buckets),
                work: Work::Custom,
                reads: &["sig/r<R>/b<U>-<run>.bin", "sig/r<R>/sketches.u32"],
                writes: &["pairs/b<U>.bin", "pairs/b<U>-of-<NB>.done"],
            },
            PhaseDecl {
                name: PHASE_CLUSTERS,
                units: Units::One,
                work: Work::Custom,
                reads: &[
                    "pairs/b<B>.bin",
                    "sig/r<R>/sketches.u32",
                    "sig/r<R>/ids.bin",
                    "sig/r<R>/ids.idx",
                ],
                writes: &["remove/r<R>.bin", "remove/done"],
            },
        ]
    }

    fn run_reads(&self) -> &'static [&'static str] {
        &["remove/done", "remove/r<U>.bin"]
    }

    fn phase_spec(&self, _phase: &str, spec: &PipelineSpec) -> PipelineSpec {
        signature_spec(spec, self)
    }

    fn unit_marker(&self, out: &Path, phase: &str, unit: usize, world: usize) -> PathBuf {
        unit_marker(out, self, phase, unit, world).unwrap_or_default()
    }

    fn run_unit(&self, out: &Path, phase: &str, unit: usize, world: usize) -> Result<bool> {
        match phase {
            PHASE_PAIRS => run_pairs(out, self, unit, world),
            PHASE_CLUSTERS => run_clusters(out, self, world),
            _ => Err(Error::msg(format!(
                "phase `{phase}` is not run by the stage itself"
            ))),
        }
    }
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
