//! Before a rank runs: check a finished rank (config hash, inputs, listed outputs by
//! size or sha256) before trusting its marker, notice stray outputs, and decide whether
//! the rank is done or must be (re)done.

use super::*;

/// The output folders of a run directory, each with the manifest key that lists its files:
/// training data, rejected documents, and the `pack` stage's document index.
pub const OUTPUT_DIRS: [&str; 3] = ["shards", "rejects", DOCS_INDEX];

/// The `pack` stage's document index folder (and the manifest key listing its files).
pub const DOCS_INDEX: &str = "docs_index";

/// The files a rank's manifest lists (`shards`, `rejects`, `docs_index`): (path, bytes,
/// sha256). Index files of a manifest written before the top-level `docs_index` list
/// existed come from the `pack` nodes' own entries (`nodes.<pack>.docs_index.files`),
/// without size (`None`: only their presence is checked) or sha256.
pub(super) fn listed_outputs(manifest: &Value) -> Vec<(String, Option<u64>, String)> {
    let mut v: Vec<(String, Option<u64>, String)> = OUTPUT_DIRS
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
                Some(e["bytes"].as_u64().unwrap_or(u64::MAX)),
                e["sha256"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    if !manifest[DOCS_INDEX].is_array() {
        let mut files = Vec::new();
        node_index_files(&manifest["nodes"], &mut files);
        v.extend(files.into_iter().map(|(_, p)| (p, None, String::new())));
    }
    v
}

/// Every (node, path) under a `docs_index.files` list in a manifest's `nodes` (the `pack`
/// stage's entries; a merged manifest keeps differing node entries under `per_rank`).
pub fn node_index_files(nodes: &Value, out: &mut Vec<(String, String)>) {
    fn walk(v: &Value, node: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                if let Some(files) = m.get(DOCS_INDEX).and_then(|d| d["files"].as_array()) {
                    for f in files.iter().filter_map(|f| f.as_str()) {
                        out.push((node.to_string(), f.to_string()));
                    }
                }
                m.iter()
                    .filter(|(k, _)| *k != DOCS_INDEX)
                    .for_each(|(_, x)| walk(x, node, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, node, out)),
            _ => {}
        }
    }
    for (name, v) in nodes.as_object().into_iter().flatten() {
        walk(v, name, out);
    }
}

/// The top-level `docs_index` list of a rank manifest: every index file its `pack` nodes
/// wrote, with node, rows (from the file's footer), bytes and sha256, as `shards` lists
/// the shards. `out` is the local run directory.
pub fn index_entries(out: &Path, manifest: &Value) -> Result<Value> {
    let mut files = Vec::new();
    node_index_files(&manifest["nodes"], &mut files);
    files.sort_by(|a, b| a.1.cmp(&b.1));
    files.dedup_by(|a, b| a.1 == b.1);
    let mut list = Vec::new();
    for (node, rel) in files {
        let p = out.join(&rel);
        let f = File::open(&p).map_err(|e| Error::io(&p, e))?;
        let rows = parquet::file::reader::FileReader::metadata(
            &parquet::file::serialized_reader::SerializedFileReader::new(f)?,
        )
        .file_metadata()
        .num_rows() as u64;
        let bytes = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?.len();
        list.push(
            json!({"path": rel, "node": node, "rows": rows, "bytes": bytes,
                         "sha256": sha256_file(&p)?}),
        );
    }
    Ok(Value::Array(list))
}

/// Check every output a rank's manifest lists: size always, sha256 when `verify`. One
/// line per missing or damaged file. `out` is a local run directory or an object-store URL.
pub fn check_outputs(out: &str, manifest: &Value, verify: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for (rel, bytes, sha) in listed_outputs(manifest) {
        let p = crate::storage::join(out, &rel);
        match crate::storage::size(&p) {
            Err(_) => problems.push(format!("{rel}: missing")),
            Ok(_) if bytes.is_none() => {}
            Ok(len) if Some(len) != bytes => problems.push(format!(
                "{rel}: size {len} bytes, expected {}",
                bytes.unwrap_or_default()
            )),
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
pub(super) fn sha256_any(path: &str) -> Result<String> {
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
pub(super) fn inputs_changed(out: &str, rank: usize, world: usize, changed: &[String]) -> Error {
    Error::msg(format!(
        "the inputs of rank {rank} of {world} changed since it finished in {out}:\n{}\nits outputs would be stale: rerun with --overwrite to redo the run, or use another --out",
        bullets(changed)
    ))
}

/// path → sha256 of the inputs a rank manifest lists.
pub(super) fn manifest_input_sha(manifest: Option<&Value>) -> BTreeMap<String, String> {
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

pub(super) fn read_json(p: &Path) -> Result<Value> {
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
pub(super) fn check_other_markers(out: &Path, world: usize, config_hash: &str) -> Result<()> {
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
pub(super) fn check_finished(
    out: &Path,
    rank: usize,
    world: usize,
    check: &Check,
) -> Result<Vec<String>> {
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

/// Files in `shards/`, `rejects/` and `docs_index/` no manifest accounts for. This rank's (`listed` are
/// its manifest's files) are removed: the caller holds its lock, so they are leftovers
/// of an earlier attempt. Files of no rank of this run are warned about.
pub(super) fn notice_strays(
    out: &Path,
    rank: usize,
    world: usize,
    listed: &BTreeSet<String>,
) -> Result<()> {
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

/// Every file in `shards/`, `rejects/` and `docs_index/`: (`sub/name`, name, path).
pub(super) fn output_files(out: &Path) -> Result<Vec<(String, String, PathBuf)>> {
    let mut v = Vec::new();
    for sub in OUTPUT_DIRS {
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
