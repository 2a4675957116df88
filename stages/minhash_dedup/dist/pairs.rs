//! Phase 2 (`minhash-pairs`): the verified candidate pairs of one bucket.

use super::*;

// ---------------------------------------------------------------------------------------
// Phase 2: pairs of one bucket.

/// One accepted candidate pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// Origin of the later document.
    pub d: u64,
    /// Origin of the representative (earlier).
    pub rep: u64,
    /// Local index of `d` in its rank's files.
    pub d_local: u32,
    /// Local index of `rep` in its rank's files.
    pub rep_local: u32,
    /// Estimated Jaccard.
    pub est: f64,
}

/// Counters of one bucket.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PairStats {
    /// Band entries merged.
    pub entries: u64,
    /// Distinct band keys.
    pub keys: u64,
    /// (d, rep) candidates examined.
    pub candidates: u64,
    /// Candidates that failed verification.
    pub rejected_by_verify: u64,
    /// Candidates accepted by the containment test alone.
    pub accepted_by_containment: u64,
    /// Distinct accepted pairs written.
    pub pairs: u64,
}

/// Fetches a sketch record (signature, then shingle-set size) by (rank, local index) into
/// a buffer.
pub type SigFetch<'a> = dyn FnMut(usize, u32, &mut Vec<u32>) -> Result<()> + 'a;

/// The accepted pairs of one bucket's merged entries, from sorted runs. `sig` fetches a
/// signature by (rank, local). Returns pairs sorted by (d, rep), deduplicated.
pub fn bucket_pairs(
    runs: Vec<Box<dyn Iterator<Item = Result<Entry>> + '_>>,
    cfg: &Config,
    world: usize,
    sig: &mut SigFetch<'_>,
    st: &mut PairStats,
) -> Result<Vec<Pair>> {
    let mut runs = runs;
    let mut heap: BinaryHeap<std::cmp::Reverse<(Entry, usize)>> = BinaryHeap::new();
    for (i, r) in runs.iter_mut().enumerate() {
        if let Some(e) = r.next() {
            heap.push(std::cmp::Reverse((e?, i)));
        }
    }
    let mut pairs = Vec::new();
    let mut group: Vec<Entry> = Vec::new();
    let (mut rep_sig, mut d_sig) = (Vec::new(), Vec::new());
    let mut flush = |group: &mut Vec<Entry>, pairs: &mut Vec<Pair>, st: &mut PairStats| {
        if group.len() >= 2 {
            let (_, rep, rep_local) = group[0];
            sig(Origin(rep).rank(world), rep_local, &mut rep_sig)?;
            for &(_, d, d_local) in &group[1..] {
                if d == rep {
                    continue;
                }
                st.candidates += 1;
                sig(Origin(d).rank(world), d_local, &mut d_sig)?;
                let (est, est_c) = estimate_records(&d_sig, &rep_sig);
                let verdict = accept(cfg, est, est_c);
                st.accepted_by_containment += verdict.by_containment as u64;
                if verdict.accepted {
                    pairs.push(Pair {
                        d,
                        rep,
                        d_local,
                        rep_local,
                        est,
                    });
                } else {
                    st.rejected_by_verify += 1;
                }
            }
        }
        group.clear();
        Ok::<(), Error>(())
    };
    while let Some(std::cmp::Reverse((e, i))) = heap.pop() {
        st.entries += 1;
        if group.first().is_some_and(|g| g.0 != e.0) {
            flush(&mut group, &mut pairs, st)?;
        }
        if group.is_empty() {
            st.keys += 1;
        }
        group.push(e);
        if let Some(n) = runs[i].next() {
            heap.push(std::cmp::Reverse((n?, i)));
        }
    }
    flush(&mut group, &mut pairs, st)?;
    pairs.sort_unstable_by_key(|p| (p.d, p.rep));
    pairs.dedup_by(|a, b| a.d == b.d && a.rep == b.rep);
    st.pairs = pairs.len() as u64;
    Ok(pairs)
}

fn bucket_run_iter(path: &Path) -> Result<impl Iterator<Item = Result<Entry>>> {
    records(path, MAGIC_BUCKET, |r| Ok((r.u64()?, r.u64()?, r.u32()?)))
}

/// Phase 2, one unit: the pairs of bucket `bucket`. Skips when its marker exists.
pub fn run_pairs(out: &Path, plan: &Plan, bucket: usize, world: usize) -> Result<bool> {
    let marker = unit_marker(out, plan, PHASE_PAIRS, bucket, world).unwrap_or_default();
    if marker.exists() {
        return Ok(false);
    }
    if bucket >= plan.buckets {
        return Err(Error::msg(format!(
            "bucket {bucket} out of range (buckets: {})",
            plan.buckets
        )));
    }
    require_markers(out, plan, PHASE_SIG, world, world)?;
    let t0 = std::time::Instant::now();
    let sig_dir = state_dir(out, &plan.node).join("sig");
    let prefix = format!("b{bucket:04}-");
    let mut paths = Vec::new();
    for r in 0..world {
        let d = sig_dir.join(format!("r{r:04}"));
        let mut v: Vec<PathBuf> = std::fs::read_dir(&d)
            .map_err(|e| Error::io(&d, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".bin"))
            })
            .collect();
        v.sort();
        paths.extend(v);
    }
    let mut runs: Vec<Box<dyn Iterator<Item = Result<Entry>>>> = Vec::new();
    for p in &paths {
        runs.push(Box::new(bucket_run_iter(p)?));
    }
    let mut files = RankFiles::new(sig_dir, plan.cfg.num_perm);
    let mut st = PairStats::default();
    let pairs = bucket_pairs(
        runs,
        &plan.cfg,
        world,
        &mut |r, l, out| files.sig(r, l, out),
        &mut st,
    )?;
    fault(PHASE_PAIRS)?;
    let path = state_dir(out, &plan.node)
        .join("pairs")
        .join(format!("b{bucket:04}.bin"));
    write_pairs(&path, &pairs)?;
    write_marker(
        &marker,
        &json!({"bucket": bucket, "buckets": plan.buckets, "world_size": world, "run_files": paths.len(), "stats": st, "wall_secs": t0.elapsed().as_secs_f64()}),
    )?;
    Ok(true)
}

/// Write a pairs file (sorted by (d, rep)).
pub fn write_pairs(path: &Path, pairs: &[Pair]) -> Result<()> {
    let mut w = CheckedWriter::create(path.to_path_buf(), MAGIC_PAIRS)?;
    for p in pairs {
        w.record(&[
            &p.d.to_le_bytes(),
            &p.rep.to_le_bytes(),
            &p.d_local.to_le_bytes(),
            &p.rep_local.to_le_bytes(),
            &p.est.to_le_bytes(),
        ])?;
    }
    w.commit()
}

/// Stream a pairs file, verifying its checksum at the end.
pub fn read_pairs(path: &Path) -> Result<impl Iterator<Item = Result<Pair>>> {
    records(path, MAGIC_PAIRS, |r| {
        Ok(Pair {
            d: r.u64()?,
            rep: r.u64()?,
            d_local: r.u32()?,
            rep_local: r.u32()?,
            est: f64::from_le_bytes(r.bytes::<8>()?),
        })
    })
}
