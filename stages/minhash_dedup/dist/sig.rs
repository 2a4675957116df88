//! Phase 1 (`minhash-sig`): the internal `minhash_signatures` sink that writes one rank's
//! sketches, ids and sorted bucket runs.

use super::*;

// ---------------------------------------------------------------------------------------
// Phase 1: the `minhash_signatures` sink.

/// Buffered band entries: (key, origin, local index).
pub(super) type Entry = (u64, u64, u32);

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
