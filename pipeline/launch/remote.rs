//! `sluice run CONFIG --out s3://bucket/run`: a run directory in object storage.
//!
//! The engine writes its run directory on a filesystem (atomic renames, scratch space for
//! stateful stages). For an object-store `--out`, a rank runs into a private local staging
//! directory (`$TMPDIR/sluice-stage/<hash of URL>-r<rank>`), then publishes:
//!
//! 1. every shard and rejects file of the rank, each as an all-or-nothing multipart upload
//!    ([`crate::storage::create`]); objects of this rank left by an earlier failed attempt
//!    and not rewritten are deleted;
//! 2. the rank's `ranks/<tag>.stats.json` and `.manifest.json`;
//! 3. only then the completion marker `ranks/<tag>.done`;
//! 4. when every rank's marker is present, the merged `stats.json` and `manifest.json`
//!    (computed from the ranks' objects, so whichever rank finishes last writes them).
//!
//! A rank whose marker exists in the bucket is skipped only after the checks of a local
//! run ([`crate::rundir::check_recorded`]: the inputs its marker records are unchanged,
//! every object its manifest lists has the listed size, and with `--verify` the sha256,
//! streamed), so Slurm and the local launcher resume remote runs the same way. A damaged
//! rank loses its marker and the merged files, then is redone; the publish step replaces
//! its objects and deletes the stale ones. The staging directory
//! holds at most one rank's outputs on local disk (not in memory) and is removed after
//! publishing. An attempt holds the `flock` of `<staging>.lock` for its lifetime, so a
//! second attempt of the same rank on the same machine exits (code 75) instead of clearing
//! the staging directory under the first.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::PipelineSpec;
use crate::error::{Error, Result};
use crate::rundir::{merge_manifests, merge_stats, rank_tag};
use crate::runtime::{self, RunOptions, RunSummary};
use crate::storage;

/// The local staging directory for one rank of a remote run.
pub fn staging_dir(url: &str, rank: usize) -> PathBuf {
    let h = xxhash_rust::xxh3::xxh3_64(url.as_bytes());
    std::env::temp_dir()
        .join("sluice-stage")
        .join(format!("{h:016x}-r{rank:04}"))
}

fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    if dir.is_dir() {
        for e in std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .flatten()
        {
            let p = e.path();
            if p.is_file() && !p.to_string_lossy().ends_with(".tmp") {
                v.push(p);
            }
        }
    }
    v.sort();
    Ok(v)
}

/// Run one rank with its run directory at `url` (see the module doc).
pub fn run(spec: PipelineSpec, opts: &RunOptions, url: &str) -> Result<RunSummary> {
    let url = url.trim_end_matches('/');
    let (rank, world) = (opts.rank, opts.world_size);
    let tag = rank_tag(rank, world);
    let marker = storage::join(url, &format!("ranks/{tag}.done"));
    let stage = staging_dir(url, rank);
    // Two attempts of this rank on one machine share the staging directory: the second
    // must not clear it under the first.
    let _stage_lock = crate::rundir::RankLock::acquire_at(&stage.with_extension("lock"), rank)?;
    if opts.overwrite {
        for obj in storage::expand(&format!("{url}/"))? {
            storage::delete(&obj)?;
        }
    } else if storage::exists(&marker)? {
        let done: Value =
            serde_json::from_slice(&storage::read_all(&marker)?).unwrap_or(Value::Null);
        if done.get("config_hash").and_then(|h| h.as_str()) != Some(spec.config_hash.as_str()) {
            return Err(Error::msg(format!(
                "{url} holds a finished run of a different config ({tag}); use another --out or --overwrite"
            )));
        }
        let problems = crate::rundir::check_recorded(url, rank, world, opts.verify)?;
        if problems.is_empty() {
            let merged = try_merge(url, world)?;
            return Ok(RunSummary {
                skipped: true,
                stats: Value::Null,
                manifest: Value::Null,
                merged,
            });
        }
        for p in &problems {
            tracing::warn!("rank {rank} of {world} was marked done, but {p}");
        }
        tracing::warn!(
            "redoing rank {rank} of {world}: {} problem(s) with its outputs",
            problems.len()
        );
        // The marker goes first, then the merged files that counted this rank.
        storage::delete(&marker)?;
        for f in ["stats.json", "manifest.json"] {
            storage::delete(&storage::join(url, f))?;
        }
    }
    if stage.exists() {
        std::fs::remove_dir_all(&stage).map_err(|e| Error::io(&stage, e))?;
    }
    let mut local = opts.clone();
    local.out_dir = stage.clone();
    local.overwrite = false;
    let mut summary = match runtime::run(spec, &local) {
        Ok(s) => s,
        Err(e) => {
            // Nothing was published; a re-run starts from a clean staging directory anyway.
            let _ = std::fs::remove_dir_all(&stage);
            return Err(e);
        }
    };

    // 1. Data files, then leftovers of an earlier attempt of this rank.
    let needle = format!("-r{rank:04}-");
    for sub in ["shards", "rejects"] {
        let mut written = Vec::new();
        for f in files_under(&stage.join(sub))? {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dst = storage::join(url, &format!("{sub}/{name}"));
            storage::upload_file(&f, &dst)?;
            written.push(dst);
        }
        for obj in storage::expand(&format!("{url}/{sub}/"))? {
            let name = obj.rsplit('/').next().unwrap_or("");
            if name.contains(&needle) && !written.contains(&obj) {
                storage::delete(&obj)?;
            }
        }
    }
    // 2. Rank stats and manifest; 3. the marker, last.
    let ranks = stage.join("ranks");
    for ext in ["stats.json", "manifest.json", "done"] {
        let f = ranks.join(format!("{tag}.{ext}"));
        storage::upload_file(&f, &storage::join(url, &format!("ranks/{tag}.{ext}")))?;
    }
    // 4. Merged files once every rank is done.
    summary.merged = try_merge(url, world)?;
    let _ = std::fs::remove_dir_all(&stage);
    Ok(summary)
}

/// Write the merged `stats.json` / `manifest.json` at `url` if every rank is done.
pub fn try_merge(url: &str, world: usize) -> Result<bool> {
    for r in 0..world {
        if !storage::exists(&storage::join(
            url,
            &format!("ranks/{}.done", rank_tag(r, world)),
        ))? {
            return Ok(false);
        }
    }
    let read = |name: String| -> Result<Value> {
        Ok(serde_json::from_slice(&storage::read_all(
            &storage::join(url, &name),
        )?)?)
    };
    let mut stats = Vec::new();
    let mut manifests = Vec::new();
    for r in 0..world {
        let tag = rank_tag(r, world);
        stats.push(read(format!("ranks/{tag}.stats.json"))?);
        manifests.push(read(format!("ranks/{tag}.manifest.json"))?);
    }
    let pretty = |v: &Value| {
        format!(
            "{}\n",
            serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into())
        )
    };
    storage::put(
        &storage::join(url, "stats.json"),
        pretty(&merge_stats(&stats)).as_bytes(),
    )?;
    storage::put(
        &storage::join(url, "manifest.json"),
        pretty(&merge_manifests(&manifests)).as_bytes(),
    )?;
    Ok(true)
}
