//! Finishing a rank (stats, manifest, then the marker) and merging every rank's stats
//! and manifest into the top-level `stats.json` and `manifest.json` once all are done.

use super::*;

/// Write a rank's stats and manifest, then its marker (config hash and input
/// fingerprint), then merge if every rank is done. The manifest gets its `docs_index`
/// list ([`index_entries`]) first.
pub fn finish_rank(
    out: &Path,
    rank: usize,
    world: usize,
    config_hash: &str,
    inputs: &[InputFile],
    stats: &Value,
    manifest: &mut Value,
) -> Result<bool> {
    let tag = rank_tag(rank, world);
    let ranks = out.join("ranks");
    write_atomic(
        ranks.join(format!("{tag}.stats.json")),
        pretty(stats).as_bytes(),
    )?;
    // The `pack` stages' document-index files, listed with size and sha256 like the
    // shards, so a finished rank is checked (and cleaned, and taken down) with them.
    manifest[DOCS_INDEX] = index_entries(out, manifest)?;
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

pub(super) fn pretty(v: &Value) -> String {
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

pub(super) fn add_numbers(acc: &mut Value, v: &Value) {
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
pub(super) fn merge_accounting(ranks: &[Value]) -> Value {
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

/// Merge per-rank manifests: shard, reject, document-index and input lists concatenate
/// (sorted by path),
/// totals add up, node entries are kept per rank when there are several.
pub fn merge_manifests(ranks: &[Value]) -> Value {
    if ranks.len() == 1 {
        return ranks[0].clone();
    }
    let mut merged = ranks[0].clone();
    for key in ["shards", "rejects", DOCS_INDEX, "inputs"] {
        if ranks.iter().all(|m| m.get(key).is_none()) {
            continue;
        }
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
