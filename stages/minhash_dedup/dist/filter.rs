//! Phase 4 (`run`): the `minhash_dedup` node of a distributed config, built as a filter
//! over its rank's remove list.

use super::*;

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
