//! The run directory: layout, per-rank locks and completion markers, checking a finished
//! rank before trusting it, cleanup of an unfinished rank, and merging per-rank stats and
//! manifests into the top-level `stats.json` and `manifest.json`.
//!
//! ```text
//! out/
//!   shards/<sink>-r<rank>-<idx>.parquet     training data
//!   rejects/<node>-r<rank>-<idx>.parquet    every rejected document with stage, reason, score
//!   docs_index/<node>-r<rank>-<idx>.parquet one row per document a `pack` node packed
//!   ranks/r<rank>-of-<world>.{stats,manifest}.json, .done
//!   ranks/r<rank>.lock                      held (flock) by the attempt running the rank
//!   stats.json, manifest.json               merged once every rank is done
//!   tmp/r<rank>/<node>/                     scratch space of stateful stages
//! ```
//!
//! **A run directory never lies.** What `sluice run` does with a rank:
//!
//! 1. **Lock.** The attempt takes an exclusive `flock` on `ranks/r<rank>.lock` and holds it
//!    until its marker is written. A second attempt of the same rank (a Slurm requeue
//!    while the old task still runs, a double submit) cannot get it and exits at once with
//!    [`EXIT_RANK_BUSY`] (75) and "rank R is being run by another attempt (pid P on host
//!    H, …)"; it touches nothing, so it can never delete a running or finished attempt's
//!    files. The kernel releases a `flock` when its holder dies, however it dies, so a
//!    dead attempt leaves no stale lock: the requeued attempt gets the lock and redoes the
//!    rank. The lock file keeps the holder's pid, host and start time for that message; it
//!    is never deleted (deleting a lock file someone holds would let a third attempt lock a
//!    fresh inode). On a shared filesystem `flock` must reach across nodes: NFSv4, GPFS,
//!    CephFS and BeeGFS do; Lustre needs the `flock` mount option (without it the lock
//!    fails with a clear error rather than silently not locking).
//! 2. **Check a finished rank.** A rank whose marker `ranks/<tag>.done` exists is skipped
//!    only if
//!    * its config hash is this config's (else: refused, "use another --out or
//!      --overwrite");
//!    * its inputs are unchanged: the marker records, per source node, every input file of
//!      the rank with path, size and modification time, and they are compared with the
//!      files the sources expand to now. A new, missing, resized or modified input is
//!      refused, naming each changed input and asking for `--overwrite`; stale output is
//!      never reported as done. With `--verify`, contents decide: an input whose mtime
//!      changed but whose sha256 equals the manifest's is accepted;
//!    * every output its manifest lists (shards, rejects and document-index files) exists
//!      with the listed size, and with `--verify` the listed sha256. Anything missing or damaged is reported per
//!      file (`missing`, `size X bytes, expected Y`, `sha256 mismatch`) and the rank is
//!      redone from scratch.
//!
//!    Files in `shards/`, `rejects/` or `docs_index/` that no manifest lists are noticed:
//!    this rank's strays (left by an older attempt) are removed, files of no rank of this
//!    run are warned about, since `sluice audit` reads every shard and reject file there.
//! 3. **Redo an unfinished rank cleanly.** Its marker goes first (a crash during the redo
//!    never leaves a marker over half-written files), then the merged top-level files,
//!    then its shards, rejects, document-index files, scratch, temp files and rank files,
//!    so nothing is duplicated. `--overwrite` empties `shards/`, `rejects/`, `docs_index/`
//!    and `tmp/` under every rank's lock. Every file goes through `io::AtomicFile`.
//! 4. **Finish.** Rank stats, rank manifest, then the marker, then the merge. The rank
//!    manifest lists the `pack` nodes' document-index files under `docs_index` (path, node,
//!    rows, bytes, sha256, like `shards`), so they are checked, cleaned, merged and taken
//!    down like the shards; a manifest without that list (older sluice) has its index
//!    files checked for presence from `nodes.<pack>.docs_index.files`.
//!
//! **Provenance.** Each manifest lists every input file (`inputs`: node, path or URI, size,
//! sha256) and embeds the config it ran (`config`: the parsed config as JSON;
//! `config_yaml`: the YAML text, when the config was read from a file). Hashing inputs
//! costs one extra read of each: [`InputHasher`] streams this rank's local input files on
//! a thread of its own while the pipeline runs, in the order the source reads them, so the
//! reads mostly hit the page cache the source has just filled and the cost is one core's
//! sha256 off the pipeline's threads (the `sha2` crate hashes 1.1 GB/s on one core of the
//! 2-core shared VM, which has SHA-NI; a 1 GiB buffer through `Sha256::update`, release).
//! Object-store inputs are not downloaded twice: their size is recorded and their sha256
//! left null. After the run the inputs are checked again: a file that changed while the
//! run read it fails the rank instead of being recorded with a wrong fingerprint.
//!
//! Not checked: files a stage reads besides its source splits (tokenizers, models,
//! benchmark sets); they are named in the config, whose hash is checked.
//!
//! **Layout.** `lock` (step 1), `check` (step 2 and [`prepare`]), `cleanup` (step 3),
//! `merge` (step 4 and the merge), `inputs` (fingerprints, hashing and comparison of
//! input files, the embedded config). Everything public is re-exported here.

mod check;
mod cleanup;
mod inputs;
mod lock;
mod merge;

pub use check::*;
pub use cleanup::*;
pub use inputs::*;
pub use lock::*;
pub use merge::*;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::config::PipelineSpec;
use crate::error::{Error, Result};
use crate::io::{sha256_file, write_atomic};

/// Exit status of `sluice run` when another attempt holds the rank's lock (`EX_TEMPFAIL`
/// of sysexits.h: nothing was done, trying again later is fine).
pub const EXIT_RANK_BUSY: u8 = 75;

/// `r0003-of-0004`.
pub fn rank_tag(rank: usize, world: usize) -> String {
    format!("r{rank:04}-of-{world:04}")
}

/// The marker path for a rank.
pub fn marker_path(out: &Path, rank: usize, world: usize) -> PathBuf {
    out.join("ranks")
        .join(format!("{}.done", rank_tag(rank, world)))
}

/// The lock file of a rank: `ranks/r<rank>.lock`, one per rank index whatever the world
/// size, so two attempts of rank R never overlap even with different `--world-size`.
pub fn lock_path(out: &Path, rank: usize) -> PathBuf {
    out.join("ranks").join(format!("r{rank:04}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(dir: &Path, name: &str, text: &str) -> (String, InputFile) {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        let p = p.to_string_lossy().into_owned();
        let f = fingerprint("docs", std::slice::from_ref(&p))
            .unwrap()
            .remove(0);
        (p, f)
    }

    #[test]
    fn input_changes_are_named_and_verify_decides_on_content() {
        let d = tempfile::tempdir().unwrap();
        let (pa, a) = input(d.path(), "a.jsonl", "{\"text\":\"上海\"}\n");
        let (pb, b) = input(d.path(), "b.jsonl", "{\"text\":\"北京\"}\n");
        let sha: BTreeMap<String, String> = [&pa, &pb]
            .iter()
            .map(|p| (p.to_string(), sha256_file(p).unwrap()))
            .collect();
        let old = vec![a.clone(), b.clone()];
        assert!(compare_inputs(&old, &old, &sha, false).is_empty());
        assert!(compare_inputs(&old, &old, &sha, true).is_empty());

        // Same bytes, new mtime: a change by default, none when contents are compared.
        let mut touched = b.clone();
        touched.mtime_ns = b.mtime_ns.map(|t| t + 1);
        let now = vec![a.clone(), touched.clone()];
        let c = compare_inputs(&old, &now, &sha, false);
        assert_eq!(c.len(), 1);
        assert!(
            c[0].contains("b.jsonl: modified since the rank ran"),
            "{c:?}"
        );
        assert!(compare_inputs(&old, &now, &sha, true).is_empty());

        // Same size and mtime, other bytes: only --verify can see it.
        std::fs::write(&pb, "{\"text\":\"南京\"}\n").unwrap();
        let c = compare_inputs(&old, &old, &sha, true);
        assert_eq!(c.len(), 1);
        assert!(c[0].contains("b.jsonl: content changed (sha256"), "{c:?}");

        // Resized, removed, added.
        let mut grown = a.clone();
        grown.size += 7;
        let (_, extra) = input(d.path(), "c.jsonl", "{}\n");
        let c = compare_inputs(&old, &[grown, extra], &sha, false);
        assert_eq!(c.len(), 3, "{c:?}");
        assert!(c[0].contains(&format!("{pa}: size {} bytes, was {}", a.size + 7, a.size)));
        assert!(c[1].contains("b.jsonl: no longer an input"));
        assert!(c[2].contains("c.jsonl: new input of this rank"));
    }

    #[test]
    fn outputs_are_checked_by_size_and_optionally_sha256() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("shards")).unwrap();
        let rel = "shards/s-r0000-00000.parquet";
        std::fs::write(d.path().join(rel), b"PAR1 data PAR1").unwrap();
        let sha = sha256_file(d.path().join(rel)).unwrap();
        let m = json!({"shards": [{"path": rel, "bytes": 14, "sha256": sha}],
                       "rejects": [{"path": "rejects/x-r0000-00000.parquet", "bytes": 3, "sha256": ""}]});
        let out = d.path().to_string_lossy().into_owned();
        let p = check_outputs(&out, &m, true);
        assert_eq!(
            p,
            vec!["rejects/x-r0000-00000.parquet: missing".to_string()]
        );
        std::fs::write(d.path().join(rel), b"PAR1 dat4 PAR1").unwrap();
        assert_eq!(check_outputs(&out, &m, false).len(), 1);
        let p = check_outputs(&out, &m, true);
        assert!(
            p[0].starts_with(&format!("{rel}: sha256 mismatch")),
            "{p:?}"
        );
        std::fs::write(d.path().join(rel), b"PAR1").unwrap();
        let p = check_outputs(&out, &m, false);
        assert_eq!(p[0], format!("{rel}: size 4 bytes, expected 14"));
    }

    #[test]
    fn document_index_files_are_checked_listed_or_from_the_pack_node() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().to_string_lossy().into_owned();
        std::fs::create_dir_all(d.path().join("docs_index")).unwrap();
        let rel = "docs_index/pack-r0000-00000.parquet";
        std::fs::write(d.path().join(rel), b"PAR1 index PAR1").unwrap();
        // Listed with its size (this sluice).
        let m = json!({"docs_index": [{"path": rel, "node": "pack", "rows": 3, "bytes": 15, "sha256": ""}]});
        assert!(check_outputs(&out, &m, false).is_empty());
        std::fs::write(d.path().join(rel), b"PAR1").unwrap();
        assert_eq!(
            check_outputs(&out, &m, false),
            [format!("{rel}: size 4 bytes, expected 15")]
        );
        // An older manifest: only the pack node's entry, per rank once merged.
        let old = json!({"nodes": {"pack": {"per_rank": [
            {"docs_index": {"rows": 3, "files": [rel]}},
            {"docs_index": {"rows": 2, "files": ["docs_index/pack-r0001-00000.parquet"]}}]}}});
        assert_eq!(
            check_outputs(&out, &old, true),
            ["docs_index/pack-r0001-00000.parquet: missing".to_string()]
        );
        let mut files = Vec::new();
        node_index_files(&old["nodes"], &mut files);
        assert_eq!(files[0], ("pack".to_string(), rel.to_string()));
        // Ranks' lists concatenate by path.
        let r = |p: &str| json!({"shards": [], "rejects": [], "docs_index": [{"path": p}], "nodes": {}});
        let merged = merge_manifests(&[
            r("docs_index/b-r0001-00000.parquet"),
            r("docs_index/a-r0000-00000.parquet"),
        ]);
        assert_eq!(
            merged["docs_index"][0]["path"],
            "docs_index/a-r0000-00000.parquet"
        );
        assert_eq!(merged["docs_index"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_rank_lock_is_exclusive_until_dropped() {
        let d = tempfile::tempdir().unwrap();
        let first = RankLock::acquire(d.path(), 3).unwrap();
        match RankLock::acquire(d.path(), 3) {
            Err(Error::RankBusy { rank, holder, .. }) => {
                assert_eq!(rank, 3);
                assert!(
                    holder.starts_with(&format!("pid {} on host ", std::process::id())),
                    "{holder}"
                );
            }
            other => panic!("expected RankBusy, got {other:?}"),
        }
        // Other ranks are independent.
        let _other = RankLock::acquire(d.path(), 4).unwrap();
        drop(first);
        RankLock::acquire(d.path(), 3).unwrap();
    }

    #[test]
    fn merged_manifest_lists_every_rank_input() {
        let r = |rank: u64, path: &str| {
            json!({"rank": rank, "shards": [], "rejects": [], "totals": {"rows": 1},
                   "inputs": [{"node": "docs", "path": path, "size": 1, "sha256": "ab"}],
                   "config": {"run": {}}, "nodes": {}})
        };
        let m = merge_manifests(&[r(0, "/in/b.jsonl"), r(1, "/in/a.jsonl")]);
        let paths: Vec<&str> = m["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["path"].as_str().unwrap())
            .collect();
        assert_eq!(paths, ["/in/a.jsonl", "/in/b.jsonl"]);
        assert_eq!(m["config"], json!({"run": {}}));
        assert_eq!(m["totals"]["rows"], 2);
    }
}
