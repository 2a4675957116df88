//! The run directory: layout, per-rank locks and completion markers, checking a finished
//! rank before trusting it, cleanup of an unfinished rank, and merging per-rank stats and
//! manifests into the top-level `stats.json` and `manifest.json`.
//!
//! ```text
//! out/
//!   shards/<sink>-r<rank>-<idx>.parquet     training data
//!   rejects/<node>-r<rank>-<idx>.parquet    every rejected document with stage, reason, score
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
//!    * every output its manifest lists (shards and rejects) exists with the listed size,
//!      and with `--verify` the listed sha256. Anything missing or damaged is reported per
//!      file (`missing`, `size X bytes, expected Y`, `sha256 mismatch`) and the rank is
//!      redone from scratch.
//!
//!    Files in `shards/` or `rejects/` that no manifest lists are noticed: this rank's
//!    strays (left by an older attempt) are removed, files of no rank of this run are
//!    warned about, since `sluice audit` reads every file there.
//! 3. **Redo an unfinished rank cleanly.** Its marker goes first (a crash during the redo
//!    never leaves a marker over half-written files), then the merged top-level files,
//!    then its shards, rejects, scratch, temp files and rank files, so nothing is
//!    duplicated. Every file goes through `io::AtomicFile`.
//! 4. **Finish.** Rank stats, rank manifest, then the marker, then the merge.
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

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "?".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Try an exclusive, non-blocking `flock` on `path` (created if missing). `Ok(None)`: another
/// open file description holds it.
fn try_flock(path: &Path) -> Result<Option<File>> {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(f));
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        return Ok(None);
    }
    Err(Error::msg(format!(
        "{}: cannot lock: {e}; the run directory's filesystem must support flock (on Lustre, mount with -o flock)",
        path.display()
    )))
}

/// Who holds a lock, from what the holder wrote into the lock file.
fn holder(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match (v["pid"].as_u64(), v["host"].as_str(), v["started"].as_u64()) {
        (Some(pid), Some(host), Some(t)) => format!(
            "pid {pid} on host {host}, started {}s ago",
            unix_secs().saturating_sub(t)
        ),
        _ => "pid unknown: it is just starting".into(),
    }
}

/// The exclusive lock of one rank, held for an attempt's lifetime (see the module doc).
/// Released when dropped or when the process dies.
#[derive(Debug)]
pub struct RankLock {
    _file: File,
}

impl RankLock {
    /// Lock rank `rank` of the run directory `out`, or fail with [`Error::RankBusy`].
    pub fn acquire(out: &Path, rank: usize) -> Result<RankLock> {
        Self::acquire_at(&lock_path(out, rank), rank)
    }

    /// Lock rank `rank` with the lock file `path`.
    pub fn acquire_at(path: &Path, rank: usize) -> Result<RankLock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let Some(mut f) = try_flock(path)? else {
            return Err(Error::RankBusy {
                rank,
                holder: holder(path),
                path: path.to_path_buf(),
            });
        };
        let info = json!({"pid": std::process::id(), "host": host_name(), "started": unix_secs()});
        // Only the holder writes, and only right after locking.
        f.set_len(0)
            .and_then(|_| f.write_all(format!("{info}\n").as_bytes()))
            .map_err(|e| Error::io(path, e))?;
        Ok(RankLock { _file: f })
    }
}

/// One input file of a rank: its fingerprint in the marker, its provenance in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// Source node that reads it.
    pub node: String,
    /// Path or URI, as the source expanded it.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time in ns since the Unix epoch; `None` for object-store URIs.
    #[serde(default)]
    pub mtime_ns: Option<u64>,
}

/// Fingerprint the input files `paths` of source node `node` (one `stat` each; a `HEAD`
/// for an object-store URI).
pub fn fingerprint(node: &str, paths: &[String]) -> Result<Vec<InputFile>> {
    paths
        .iter()
        .map(|p| {
            let (size, mtime_ns) = if crate::storage::is_remote(p) {
                (crate::storage::size(p)?, None)
            } else {
                let md = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
                let mtime = md
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos() as u64);
                (md.len(), mtime)
            };
            Ok(InputFile {
                node: node.to_string(),
                path: p.clone(),
                size,
                mtime_ns,
            })
        })
        .collect()
}

/// sha256 of a rank's local input files, computed on a thread of its own while the run
/// reads them (see the module doc for the cost).
pub struct InputHasher {
    cancel: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<BTreeMap<String, String>>>>,
}

impl InputHasher {
    /// Start hashing the local files among `inputs`, in order.
    pub fn spawn(inputs: &[InputFile]) -> Result<InputHasher> {
        let paths: Vec<String> = inputs
            .iter()
            .filter(|i| !crate::storage::is_remote(&i.path))
            .map(|i| i.path.clone())
            .collect();
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-input-sha".into())
            .spawn(move || {
                let mut out = BTreeMap::new();
                let mut buf = vec![0u8; 1 << 20];
                for p in paths {
                    if out.contains_key(&p) {
                        continue;
                    }
                    let mut f = File::open(&p).map_err(|e| Error::io(&p, e))?;
                    let mut h = Sha256::new();
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            return Err(Error::Cancelled);
                        }
                        let n = f.read(&mut buf).map_err(|e| Error::io(&p, e))?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                    }
                    out.insert(p, hex::encode(h.finalize()));
                }
                Ok(out)
            })
            .map_err(|e| Error::msg(format!("spawn: {e}")))?;
        Ok(InputHasher {
            cancel,
            thread: Some(thread),
        })
    }

    /// Wait for the hashes: path → sha256 hex.
    pub fn finish(mut self) -> Result<BTreeMap<String, String>> {
        self.thread
            .take()
            .ok_or_else(|| Error::msg("input hasher already finished"))?
            .join()
            .map_err(|_| Error::msg("the input sha256 thread panicked"))?
    }
}

impl Drop for InputHasher {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The manifest's `inputs`: every input file with node, path, size and sha256 (null for an
/// object-store URI, see the module doc).
pub fn inputs_json(inputs: &[InputFile], sha: &BTreeMap<String, String>) -> Value {
    Value::Array(
        inputs
            .iter()
            .map(|i| json!({"node": i.node, "path": i.path, "size": i.size, "sha256": sha.get(&i.path)}))
            .collect(),
    )
}

/// Fail if an input changed while the run read it (its fingerprint now differs).
pub fn check_inputs_stable(inputs: &[InputFile]) -> Result<()> {
    let mut by_node: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for i in inputs {
        by_node.entry(&i.node).or_default().push(i.path.clone());
    }
    let mut now = Vec::new();
    for (node, paths) in by_node {
        now.extend(fingerprint(node, &paths)?);
    }
    let changed = compare_inputs(inputs, &now, &BTreeMap::new(), false);
    if changed.is_empty() {
        return Ok(());
    }
    Err(Error::msg(format!(
        "inputs changed while the run read them, so its outputs match no single version of them:\n{}\nnothing was marked done; rerun once they are stable",
        bullets(&changed)
    )))
}

/// The config a run ran, for its manifest: the parsed config as JSON (`run` settings with
/// defaults filled in, `nodes` in file order) and the YAML text when `spec.path` is the
/// file the config was read from (its sha256 is the config hash).
pub fn config_json(spec: &PipelineSpec) -> (Value, Value) {
    let nodes: Vec<Value> = spec
        .nodes
        .iter()
        .map(|n| {
            json!({
                "name": n.name,
                "kind": n.kind,
                "inputs": n.inputs.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                "params": n.params,
            })
        })
        .collect();
    let parsed = json!({
        "run": serde_json::to_value(&spec.run).unwrap_or(Value::Null),
        "nodes": nodes,
    });
    let yaml = std::fs::read(&spec.path)
        .ok()
        .filter(|b| hex::encode(Sha256::digest(b)) == spec.config_hash)
        .and_then(|b| String::from_utf8(b).ok())
        .map(Value::String)
        .unwrap_or(Value::Null);
    (parsed, yaml)
}

fn bullets(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("  - {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The differences between the inputs a rank ran on (`old`) and the inputs now (`new`),
/// one line per changed input. `old_sha` (path → sha256 from the rank's manifest) lets
/// `verify` accept a file whose mtime changed but whose content did not, and catch a
/// content change that kept size and mtime.
pub fn compare_inputs(
    old: &[InputFile],
    new: &[InputFile],
    old_sha: &BTreeMap<String, String>,
    verify: bool,
) -> Vec<String> {
    let key = |i: &InputFile| (i.node.clone(), i.path.clone());
    let old_m: BTreeMap<_, _> = old.iter().map(|i| (key(i), i)).collect();
    let new_m: BTreeMap<_, _> = new.iter().map(|i| (key(i), i)).collect();
    let mut changed = Vec::new();
    for ((node, path), o) in &old_m {
        let Some(n) = new_m.get(&(node.clone(), path.clone())) else {
            changed.push(format!(
                "{node}: {path}: no longer an input of this rank (deleted, renamed, or the input list changed)"
            ));
            continue;
        };
        if n.size != o.size {
            changed.push(format!(
                "{node}: {path}: size {} bytes, was {}",
                n.size, o.size
            ));
            continue;
        }
        let content = if verify {
            old_sha.get(path).map(|want| match sha256_file(path) {
                Ok(got) if &got == want => None,
                Ok(got) => Some(format!(
                    "{node}: {path}: content changed (sha256 {got}, was {want})"
                )),
                Err(e) => Some(format!("{node}: {path}: unreadable: {e}")),
            })
        } else {
            None
        };
        match content {
            Some(Some(msg)) => changed.push(msg),
            // Verified equal: an mtime change alone (a `touch`, a copy) does not matter.
            Some(None) => {}
            None if n.mtime_ns != o.mtime_ns => changed.push(format!(
                "{node}: {path}: modified since the rank ran (same size, new mtime; `--verify` compares contents)"
            )),
            None => {}
        }
    }
    for (node, path) in new_m.keys() {
        if !old_m.contains_key(&(node.clone(), path.clone())) {
            changed.push(format!("{node}: {path}: new input of this rank"));
        }
    }
    changed
}

/// The files a rank's manifest lists (`shards` and `rejects`): (path, bytes, sha256).
fn listed_outputs(manifest: &Value) -> Vec<(String, u64, String)> {
    ["shards", "rejects"]
        .iter()
        .flat_map(|k| {
            manifest[*k]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
        })
        .map(|e| {
            (
                e["path"].as_str().unwrap_or("").to_string(),
                e["bytes"].as_u64().unwrap_or(u64::MAX),
                e["sha256"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Check every output a rank's manifest lists: size always, sha256 when `verify`. One
/// line per missing or damaged file. `out` is a local run directory or an object-store URL.
pub fn check_outputs(out: &str, manifest: &Value, verify: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for (rel, bytes, sha) in listed_outputs(manifest) {
        let p = crate::storage::join(out, &rel);
        match crate::storage::size(&p) {
            Err(_) => problems.push(format!("{rel}: missing")),
            Ok(len) if len != bytes => {
                problems.push(format!("{rel}: size {len} bytes, expected {bytes}"))
            }
            Ok(_) if verify => match sha256_any(&p) {
                Ok(got) if got == sha => {}
                Ok(got) => problems.push(format!(
                    "{rel}: sha256 mismatch (found {got}, manifest lists {sha})"
                )),
                Err(e) => problems.push(format!("{rel}: unreadable: {e}")),
            },
            Ok(_) => {}
        }
    }
    problems
}

/// sha256 of a local file or, streaming, of an object.
fn sha256_any(path: &str) -> Result<String> {
    if !crate::storage::is_remote(path) {
        return sha256_file(path);
    }
    let mut r = crate::storage::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The refusal when a finished rank's inputs changed.
fn inputs_changed(out: &str, rank: usize, world: usize, changed: &[String]) -> Error {
    Error::msg(format!(
        "the inputs of rank {rank} of {world} changed since it finished in {out}:\n{}\nits outputs would be stale: rerun with --overwrite to redo the run, or use another --out",
        bullets(changed)
    ))
}

/// path → sha256 of the inputs a rank manifest lists.
fn manifest_input_sha(manifest: Option<&Value>) -> BTreeMap<String, String> {
    manifest
        .and_then(|m| m["inputs"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|i| Some((i["path"].as_str()?.into(), i["sha256"].as_str()?.into())))
        .collect()
}

/// Check a finished rank from what it recorded alone, without building the pipeline: the
/// inputs its marker lists are fingerprinted again (a new input file matching a glob is
/// not seen here, only by the engine), and the outputs its manifest lists are checked.
/// `out` is a local run directory or an object-store URL. `Err`: the inputs changed.
/// `Ok(problems)`: empty when the rank can be trusted; a missing marker is a problem.
pub fn check_recorded(out: &str, rank: usize, world: usize, verify: bool) -> Result<Vec<String>> {
    let tag = rank_tag(rank, world);
    let read = |rel: String| -> Result<Value> {
        Ok(serde_json::from_slice(&crate::storage::read_all(
            &crate::storage::join(out, &rel),
        )?)?)
    };
    let marker = match read(format!("ranks/{tag}.done")) {
        Ok(v) => v,
        Err(e) => {
            return Ok(vec![format!(
                "ranks/{tag}.done: missing or unreadable: {e}"
            )])
        }
    };
    let manifest = read(format!("ranks/{tag}.manifest.json")).ok();
    if let Some(old) = marker
        .get("inputs")
        .and_then(|v| serde_json::from_value::<Vec<InputFile>>(v.clone()).ok())
    {
        let mut now = Vec::new();
        let mut changed = Vec::new();
        for i in &old {
            match fingerprint(&i.node, std::slice::from_ref(&i.path)) {
                Ok(f) => now.extend(f),
                Err(_) => changed.push(format!("{}: {}: missing or unreadable", i.node, i.path)),
            }
        }
        let known: Vec<InputFile> = old
            .iter()
            .filter(|o| now.iter().any(|n| n.path == o.path))
            .cloned()
            .collect();
        changed.extend(compare_inputs(
            &known,
            &now,
            &manifest_input_sha(manifest.as_ref()),
            verify,
        ));
        if !changed.is_empty() {
            return Err(inputs_changed(out, rank, world, &changed));
        }
    }
    let Some(manifest) = manifest else {
        return Ok(vec![format!(
            "ranks/{tag}.manifest.json: missing or unreadable"
        )]);
    };
    Ok(check_outputs(out, &manifest, verify))
}

fn read_json(p: &Path) -> Result<Value> {
    let b = std::fs::read(p).map_err(|e| Error::io(p, e))?;
    Ok(serde_json::from_slice(&b)?)
}

/// What to do with a rank.
#[derive(Debug, PartialEq, Eq)]
pub enum Prepared {
    /// Already finished with the same config and inputs, outputs checked: nothing to do.
    AlreadyDone,
    /// Cleaned and ready to run.
    Ready,
}

/// What [`prepare`] checks a rank against.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// The config hash of this run.
    pub config_hash: &'a str,
    /// This rank's inputs now.
    pub inputs: &'a [InputFile],
    /// Compare sha256 of outputs (and of inputs whose mtime changed), not only sizes.
    pub verify: bool,
    /// Discard the whole previous run first.
    pub overwrite: bool,
}

/// Decide whether a rank must run, and if so clean its leftovers (see the module doc).
/// The caller holds the rank's [`RankLock`].
pub fn prepare(out: &Path, rank: usize, world: usize, check: &Check) -> Result<Prepared> {
    if check.overwrite && out.exists() {
        wipe_run(out, rank, world)?;
    }
    check_other_markers(out, world, check.config_hash)?;
    if marker_path(out, rank, world).exists() {
        let problems = check_finished(out, rank, world, check)?;
        if problems.is_empty() {
            return Ok(Prepared::AlreadyDone);
        }
        for p in &problems {
            tracing::warn!("rank {rank} of {world} was marked done, but {p}");
        }
        tracing::warn!(
            "redoing rank {rank} of {world}: {} problem(s) with its outputs",
            problems.len()
        );
    }
    unfinish(out, rank, world)?;
    clean_rank(out, rank, world)?;
    notice_strays(out, rank, world, &BTreeSet::new())?;
    Ok(Prepared::Ready)
}

/// Every rank's marker must be of this world size and config.
fn check_other_markers(out: &Path, world: usize, config_hash: &str) -> Result<()> {
    let ranks = out.join("ranks");
    if !ranks.is_dir() {
        return Ok(());
    }
    for e in std::fs::read_dir(&ranks)
        .map_err(|e| Error::io(&ranks, e))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_suffix(".done") else {
            continue;
        };
        let other_world = rest
            .rsplit("-of-")
            .next()
            .and_then(|w| w.parse::<usize>().ok());
        if other_world.is_some() && other_world != Some(world) {
            return Err(Error::msg(format!(
                "{} holds a run with world size {} but this run has world size {world}; use another --out or --overwrite",
                out.display(),
                other_world.unwrap_or(0)
            )));
        }
        let v = read_json(&e.path()).unwrap_or(Value::Null);
        if v.get("config_hash").and_then(|h| h.as_str()) != Some(config_hash) {
            return Err(Error::msg(format!(
                "{} holds a finished run of a different config ({}); use another --out or --overwrite",
                out.display(),
                name
            )));
        }
    }
    Ok(())
}

/// Check a rank that has a marker. `Err`: its inputs changed (refused). `Ok(problems)`:
/// empty when it can be trusted, else what is wrong with its outputs.
fn check_finished(out: &Path, rank: usize, world: usize, check: &Check) -> Result<Vec<String>> {
    let tag = rank_tag(rank, world);
    let marker = match read_json(&marker_path(out, rank, world)) {
        Ok(v) => v,
        Err(e) => return Ok(vec![format!("its marker is unreadable: {e}")]),
    };
    let manifest_path = out.join("ranks").join(format!("{tag}.manifest.json"));
    let manifest = read_json(&manifest_path).ok();
    match marker.get("inputs") {
        Some(recorded) => {
            let old: Vec<InputFile> = serde_json::from_value(recorded.clone())?;
            let old_sha = manifest_input_sha(manifest.as_ref());
            let changed = compare_inputs(&old, check.inputs, &old_sha, check.verify);
            if !changed.is_empty() {
                return Err(inputs_changed(
                    &out.display().to_string(),
                    rank,
                    world,
                    &changed,
                ));
            }
        }
        None => tracing::warn!(
            "rank {rank} of {world}: its marker records no input fingerprint (written by an older sluice); inputs not checked"
        ),
    }
    let Some(manifest) = manifest else {
        return Ok(vec![format!(
            "ranks/{tag}.manifest.json: missing or unreadable"
        )]);
    };
    let mut problems = Vec::new();
    let stats = out.join("ranks").join(format!("{tag}.stats.json"));
    if read_json(&stats).is_err() {
        problems.push(format!("ranks/{tag}.stats.json: missing or unreadable"));
    }
    problems.extend(check_outputs(
        &out.to_string_lossy(),
        &manifest,
        check.verify,
    ));
    if problems.is_empty() && marker.get("inputs").is_some() {
        let recorded: Vec<InputFile> =
            serde_json::from_value(marker["inputs"].clone()).unwrap_or_default();
        if recorded != check.inputs {
            // Only mtimes differ, and `--verify` found the contents unchanged: record the
            // new mtimes, so later runs without `--verify` accept them too.
            let mut m = marker.clone();
            m["inputs"] = serde_json::to_value(check.inputs)?;
            write_atomic(marker_path(out, rank, world), pretty(&m).as_bytes())?;
            tracing::info!(
                "rank {rank} of {world}: inputs with a new mtime have unchanged contents; fingerprint updated"
            );
        }
    }
    if problems.is_empty() {
        let listed: BTreeSet<String> = listed_outputs(&manifest).into_iter().map(|o| o.0).collect();
        notice_strays(out, rank, world, &listed)?;
        tracing::info!(
            "rank {rank} of {world}: inputs unchanged, {} output files checked ({})",
            listed.len(),
            if check.verify {
                "size and sha256"
            } else {
                "size"
            }
        );
    }
    Ok(problems)
}

/// Files in `shards/` and `rejects/` no manifest accounts for. This rank's (`listed` are
/// its manifest's files) are removed: the caller holds its lock, so they are leftovers
/// of an earlier attempt. Files of no rank of this run are warned about.
fn notice_strays(out: &Path, rank: usize, world: usize, listed: &BTreeSet<String>) -> Result<()> {
    let needle = format!("-r{rank:04}-");
    let of_this_run = |name: &str| (0..world).any(|r| name.contains(&format!("-r{r:04}-")));
    let mut unknown = Vec::new();
    for (rel, name, path) in output_files(out)? {
        if name.contains(&needle) {
            if !listed.contains(&rel) {
                tracing::warn!(
                    "removing {rel}: rank {rank} wrote it but its manifest does not list it (left by an earlier attempt)"
                );
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        } else if !of_this_run(&name) {
            unknown.push(rel);
        }
    }
    if !unknown.is_empty() {
        let n = unknown.len();
        unknown.truncate(10);
        tracing::warn!(
            "{n} file(s) in {} were not written by any rank of this run, and `sluice audit` will read them: {}{}",
            out.display(),
            unknown.join(", "),
            if n > 10 { ", …" } else { "" }
        );
    }
    Ok(())
}

/// Every file in `shards/` and `rejects/`: (`sub/name`, name, path).
fn output_files(out: &Path) -> Result<Vec<(String, String, PathBuf)>> {
    let mut v = Vec::new();
    for sub in ["shards", "rejects"] {
        let d = out.join(sub);
        if !d.is_dir() {
            continue;
        }
        for e in std::fs::read_dir(&d)
            .map_err(|e| Error::io(&d, e))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            v.push((format!("{sub}/{name}"), name, e.path()));
        }
    }
    Ok(v)
}

/// Take the marker of a rank away (first), and the merged files that counted it.
fn unfinish(out: &Path, rank: usize, world: usize) -> Result<()> {
    let m = marker_path(out, rank, world);
    if m.exists() {
        std::fs::remove_file(&m).map_err(|e| Error::io(&m, e))?;
    }
    for f in ["stats.json", "manifest.json"] {
        let p = out.join(f);
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(())
}

/// `--overwrite`: discard the whole previous run. Every rank's lock is taken first (ours
/// is held by the caller), so no running attempt of any rank loses files under it; a
/// held lock refuses the overwrite. Lock files themselves stay (see the module doc).
fn wipe_run(out: &Path, rank: usize, world: usize) -> Result<()> {
    let ranks = out.join("ranks");
    let mut locks: BTreeSet<PathBuf> = (0..world)
        .filter(|r| *r != rank)
        .map(|r| lock_path(out, r))
        .collect();
    if ranks.is_dir() {
        for e in std::fs::read_dir(&ranks)
            .map_err(|e| Error::io(&ranks, e))?
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "lock") && p != lock_path(out, rank) {
                locks.insert(p);
            }
        }
    }
    let mut held = Vec::new();
    for p in &locks {
        match try_flock(p)? {
            Some(f) => held.push(f),
            None => {
                let other = p
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.strip_prefix('r'))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(usize::MAX);
                return Err(Error::RankBusy {
                    rank: other,
                    holder: format!("{}; --overwrite would delete its files", holder(p)),
                    path: p.clone(),
                });
            }
        }
    }
    for sub in ["shards", "rejects", "tmp"] {
        let p = out.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    for f in ["stats.json", "manifest.json"] {
        let p = out.join(f);
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    if ranks.is_dir() {
        for e in std::fs::read_dir(&ranks)
            .map_err(|e| Error::io(&ranks, e))?
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "lock") {
                continue;
            }
            if p.is_dir() {
                std::fs::remove_dir_all(&p).map_err(|er| Error::io(&p, er))?;
            } else {
                std::fs::remove_file(&p).map_err(|er| Error::io(&p, er))?;
            }
        }
    }
    tracing::info!("--overwrite: removed the previous run in {}", out.display());
    drop(held);
    Ok(())
}

/// Whether a rank is done and still true, without running anything: its marker exists,
/// the inputs it records are unchanged (by size and mtime) and every output its manifest
/// lists has the listed size ([`check_recorded`]). For launchers deciding what to start;
/// the engine checks again, against the inputs the sources expand to now, and refuses a
/// rank whose inputs changed.
pub fn rank_done(out: &str, rank: usize, world: usize) -> bool {
    let problems = match check_recorded(out, rank, world, false) {
        Ok(p) => p,
        Err(e) => vec![e.to_string()],
    };
    for p in &problems {
        tracing::info!("rank {rank} of {world} is not done: {p}");
    }
    problems.is_empty()
}

/// Remove every output of one rank (shards, rejects, scratch, temp files, rank files).
pub fn clean_rank(out: &Path, rank: usize, world: usize) -> Result<()> {
    let needle = format!("-r{rank:04}-");
    for (_, name, path) in output_files(out)? {
        if name.contains(&needle) {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    let tmp = out.join("tmp").join(format!("r{rank:04}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let tag = rank_tag(rank, world);
    for ext in ["stats.json", "manifest.json"] {
        let p = out.join("ranks").join(format!("{tag}.{ext}"));
        let _ = std::fs::remove_file(p);
    }
    // Temp files of a killed attempt: this rank's stats/manifest/marker under `ranks/`, and
    // the merged files at the top (any rank merges). Only those whose writer is gone.
    remove_dead_tmp(&out.join("ranks"), |n| n.starts_with(&format!("{tag}.")))?;
    remove_dead_tmp(out, |n| {
        n.starts_with("stats.json.") || n.starts_with("manifest.json.")
    })?;
    Ok(())
}

/// Remove `<name>.<pid>.tmp` files in `dir` matching `keep` whose process no longer runs
/// (a live writer, e.g. another rank merging right now, keeps its file).
fn remove_dead_tmp(dir: &Path, matches: impl Fn(&str) -> bool) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".tmp") else {
            continue;
        };
        if !matches(&name) {
            continue;
        }
        let pid = stem.rsplit('.').next().and_then(|p| p.parse::<u32>().ok());
        let alive = pid
            .is_some_and(|p| p != std::process::id() && Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let p = e.path();
            match std::fs::remove_file(&p) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io_doing("cannot remove stale temp file", &p, err))
                }
                _ => tracing::info!("removed {} (left by an attempt that died)", p.display()),
            }
        }
    }
    Ok(())
}

/// Write a rank's stats and manifest, then its marker (config hash and input
/// fingerprint), then merge if every rank is done.
pub fn finish_rank(
    out: &Path,
    rank: usize,
    world: usize,
    config_hash: &str,
    inputs: &[InputFile],
    stats: &Value,
    manifest: &Value,
) -> Result<bool> {
    let tag = rank_tag(rank, world);
    let ranks = out.join("ranks");
    write_atomic(
        ranks.join(format!("{tag}.stats.json")),
        pretty(stats).as_bytes(),
    )?;
    write_atomic(
        ranks.join(format!("{tag}.manifest.json")),
        pretty(manifest).as_bytes(),
    )?;
    let marker = json!({
        "config_hash": config_hash,
        "rank": rank,
        "world_size": world,
        "sluice_version": env!("CARGO_PKG_VERSION"),
        "inputs": inputs,
        "attempt": {"pid": std::process::id(), "host": host_name(), "finished": unix_secs()},
    });
    write_atomic(marker_path(out, rank, world), pretty(&marker).as_bytes())?;
    let tmp = out.join("tmp").join(format!("r{rank:04}"));
    if tmp.exists() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    try_merge(out, world)
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

/// If every rank of `world` is done, (re)write the merged `stats.json` and `manifest.json`.
/// Deterministic: any rank may do it and writes the same bytes.
pub fn try_merge(out: &Path, world: usize) -> Result<bool> {
    if !(0..world).all(|r| marker_path(out, r, world).exists()) {
        return Ok(false);
    }
    let read = |p: PathBuf| -> Result<Value> {
        let b = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        Ok(serde_json::from_slice(&b)?)
    };
    let mut stats = Vec::new();
    let mut manifests = Vec::new();
    for r in 0..world {
        let tag = rank_tag(r, world);
        stats.push(read(out.join("ranks").join(format!("{tag}.stats.json")))?);
        manifests.push(read(
            out.join("ranks").join(format!("{tag}.manifest.json")),
        )?);
    }
    write_atomic(
        out.join("stats.json"),
        pretty(&merge_stats(&stats)).as_bytes(),
    )?;
    write_atomic(
        out.join("manifest.json"),
        pretty(&merge_manifests(&manifests)).as_bytes(),
    )?;
    Ok(true)
}

fn add_numbers(acc: &mut Value, v: &Value) {
    match (acc, v) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, bv) in b {
                match a.get_mut(k) {
                    Some(av) => add_numbers(av, bv),
                    None => {
                        a.insert(k.clone(), bv.clone());
                    }
                }
            }
        }
        (a @ Value::Number(_), Value::Number(b)) => {
            let x = a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0);
            *a = if a.is_u64() && b.is_u64() {
                json!(a.as_u64().unwrap_or(0) + b.as_u64().unwrap_or(0))
            } else {
                json!(x)
            };
        }
        _ => {}
    }
}

/// Merge per-rank stats: counters add up; `extra` is kept per rank when there are several.
pub fn merge_stats(ranks: &[Value]) -> Value {
    if ranks.len() == 1 {
        return ranks[0].clone();
    }
    let mut merged = ranks[0].clone();
    let mut extras: serde_json::Map<String, Value> = Default::default();
    for (r, s) in ranks.iter().enumerate() {
        if let Some(nodes) = s.get("nodes").and_then(|n| n.as_object()) {
            for (name, n) in nodes {
                let e = extras.entry(name.clone()).or_insert_with(|| json!([]));
                if let Some(a) = e.as_array_mut() {
                    a.push(n.get("extra").cloned().unwrap_or(Value::Null));
                }
            }
        }
        if r > 0 {
            let mut s2 = s.clone();
            if let Some(nodes) = s2.get_mut("nodes").and_then(|n| n.as_object_mut()) {
                for n in nodes.values_mut() {
                    if let Some(o) = n.as_object_mut() {
                        o.remove("extra");
                        o.remove("kind");
                        o.remove("role");
                        if let Some(b) = o.get_mut("bad_records").and_then(|b| b.as_object_mut()) {
                            b.remove("examples");
                        }
                    }
                }
            }
            if let (Some(m), Some(n)) = (merged.get_mut("nodes"), s2.get("nodes")) {
                add_numbers(m, n);
            }
            let w = s.get("wall_secs").and_then(|w| w.as_f64()).unwrap_or(0.0);
            let mw = merged
                .get("wall_secs")
                .and_then(|w| w.as_f64())
                .unwrap_or(0.0);
            merged["wall_secs"] = json!(w.max(mw));
        }
    }
    if let Some(nodes) = merged.get_mut("nodes").and_then(|n| n.as_object_mut()) {
        for (name, n) in nodes.iter_mut() {
            n["extra"] = json!({ "per_rank": extras.get(name).cloned().unwrap_or(json!([])) });
        }
    }
    merged["accounting"] = merge_accounting(ranks);
    merged
}

/// Per node, the ranks' accounting figures add up and `ok` holds only if it held on every
/// rank; `detail` lists the ranks that failed.
fn merge_accounting(ranks: &[Value]) -> Value {
    let mut acc = serde_json::Map::new();
    for (r, s) in ranks.iter().enumerate() {
        let Some(a) = s.get("accounting").and_then(|a| a.as_object()) else {
            continue;
        };
        for (node, e) in a {
            let m = acc
                .entry(node.clone())
                .or_insert_with(|| json!({"ok": true, "detail": ""}));
            let mut nums = e.clone();
            if let Some(o) = nums.as_object_mut() {
                o.retain(|_, v| v.is_number());
            }
            add_numbers(m, &nums);
            if e["rule"].is_string() {
                m["rule"] = e["rule"].clone();
            }
            if e["ok"] != json!(true) {
                m["ok"] = json!(false);
                let d = format!(
                    "{}rank {r}: {}",
                    m["detail"]
                        .as_str()
                        .filter(|d| !d.is_empty())
                        .map(|d| format!("{d}; "))
                        .unwrap_or_default(),
                    e["detail"].as_str().unwrap_or("")
                );
                m["detail"] = json!(d);
            }
        }
    }
    Value::Object(acc)
}

/// Merge per-rank manifests: shard, reject and input lists concatenate (sorted by path),
/// totals add up, node entries are kept per rank when there are several.
pub fn merge_manifests(ranks: &[Value]) -> Value {
    if ranks.len() == 1 {
        return ranks[0].clone();
    }
    let mut merged = ranks[0].clone();
    for key in ["shards", "rejects", "inputs"] {
        let mut all: Vec<Value> = ranks
            .iter()
            .flat_map(|m| {
                m.get(key)
                    .and_then(|s| s.as_array())
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        all.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
        merged[key] = Value::Array(all);
    }
    let mut totals = json!({"rows": 0u64, "tokens": 0u64, "bytes": 0u64, "reject_rows": 0u64});
    for m in ranks {
        if let Some(t) = m.get("totals") {
            add_numbers(&mut totals, t);
        }
    }
    merged["totals"] = totals;
    let mut nodes = serde_json::Map::new();
    if let Some(n0) = ranks[0].get("nodes").and_then(|n| n.as_object()) {
        for name in n0.keys() {
            let per: Vec<Value> = ranks.iter().map(|m| m["nodes"][name].clone()).collect();
            // Identical entries (e.g. a tokenizer hash) stay flat; others are kept per rank.
            if per.iter().all(|p| p == &per[0]) {
                nodes.insert(name.clone(), per[0].clone());
            } else {
                nodes.insert(name.clone(), json!({ "per_rank": per }));
            }
        }
    }
    merged["nodes"] = Value::Object(nodes);
    merged["rank"] = Value::Null;
    merged
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
