//! Redoing a rank cleanly: its marker first, then the merged files, its shards, rejects,
//! document-index files, scratch and temp files; `--overwrite` wipes every rank's outputs under their locks.

use super::*;

/// Take the marker of a rank away (first), and the merged files that counted it.
pub(super) fn unfinish(out: &Path, rank: usize, world: usize) -> Result<()> {
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
pub(super) fn wipe_run(out: &Path, rank: usize, world: usize) -> Result<()> {
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
    for sub in OUTPUT_DIRS.iter().chain(&["tmp"]) {
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

/// Remove every output of one rank (shards, rejects, document-index files, scratch, temp
/// files, rank files).
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
pub(super) fn remove_dead_tmp(dir: &Path, matches: impl Fn(&str) -> bool) -> Result<()> {
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
