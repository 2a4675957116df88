//! A rank's input files: fingerprints (path, size, mtime) for the marker, their sha256
//! hashed alongside the run for the manifest, the check that they did not change while
//! read, the comparison with a finished rank's inputs, and the config embedded in the
//! manifest.

use super::*;

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

pub(super) fn bullets(lines: &[String]) -> String {
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
