//! Phase 3 (`minhash-clusters`): union-find over the pairs, per-rank remove lists.

use super::*;

// ---------------------------------------------------------------------------------------
// Phase 3: clusters.

/// Union-find over the documents that appear in pairs, keyed by origin; the root of a set
/// is its smallest origin (the online stage's rule).
#[derive(Default)]
pub struct PairUnionFind {
    index: HashMap<u64, u32>,
    parent: Vec<u32>,
    pub(super) origin: Vec<u64>,
    local: Vec<u32>,
    pub(super) dups: Vec<u32>,
}

impl PairUnionFind {
    /// The node of an origin, created on first sight.
    pub fn node(&mut self, origin: u64, local: u32) -> u32 {
        let n = self.parent.len() as u32;
        let e = *self.index.entry(origin).or_insert(n);
        if e == n {
            self.parent.push(n);
            self.origin.push(origin);
            self.local.push(local);
            self.dups.push(0);
        }
        e
    }
    fn find(&mut self, x: u32) -> u32 {
        super::super::unionfind::find_root(&mut self.parent, x)
    }
    /// Merge; the root is the smaller origin.
    pub fn union(&mut self, a: u32, b: u32) -> u32 {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return ra;
        }
        let (root, child) = if self.origin[ra as usize] < self.origin[rb as usize] {
            (ra, rb)
        } else {
            (rb, ra)
        };
        self.parent[child as usize] = root;
        root
    }
    /// Number of documents held.
    pub fn len(&self) -> usize {
        self.parent.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }
    /// Heap bytes of the state (hash map estimated from its capacity).
    pub fn heap_bytes(&self) -> usize {
        // hashbrown: buckets = next power of two ≥ capacity × 8/7, each (key 8 + value 4,
        // padded to 16) + 1 control byte.
        let buckets = if self.index.capacity() == 0 {
            0
        } else {
            (self.index.capacity() * 8 / 7).next_power_of_two()
        };
        buckets * 17
            + self.parent.capacity() * 4
            + self.origin.capacity() * 8
            + self.local.capacity() * 4
            + self.dups.capacity() * 4
    }
}

/// One decision of phase 3: `d` is a duplicate charged to `root`, best match `matched`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Removal {
    /// The duplicate.
    pub d: u64,
    /// Its cluster root at decision time (origin, local).
    pub root: (u64, u32),
    /// Its best match (origin, local).
    pub matched: (u64, u32),
    /// Estimated Jaccard with the match.
    pub est: f64,
}

/// Counters of phase 3.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ClusterStats {
    /// Distinct pairs read.
    pub pairs: u64,
    /// Documents removed.
    pub duplicates: u64,
    /// Documents with union-find state.
    pub nodes: u64,
    /// Bytes of union-find state at the end.
    pub state_bytes: u64,
}

/// Process pairs in (d, rep) order (duplicates allowed) with the online rule; call `emit`
/// for every removal, in `d` order. Returns the union-find (for root duplicate counts).
pub fn cluster(
    pairs: impl Iterator<Item = Result<Pair>>,
    st: &mut ClusterStats,
    mut emit: impl FnMut(&Removal) -> Result<()>,
) -> Result<PairUnionFind> {
    let mut uf = PairUnionFind::default();
    let mut cur: Vec<Pair> = Vec::new();
    let mut decide =
        |cur: &mut Vec<Pair>, uf: &mut PairUnionFind, st: &mut ClusterStats| -> Result<()> {
            let Some(first) = cur.first().copied() else {
                return Ok(());
            };
            let dn = uf.node(first.d, first.d_local);
            let mut best = first;
            for p in cur.iter() {
                if p.est > best.est {
                    best = *p;
                }
                let rn = uf.node(p.rep, p.rep_local);
                uf.union(dn, rn);
            }
            let root = uf.find(dn);
            uf.dups[root as usize] += 1;
            st.duplicates += 1;
            emit(&Removal {
                d: first.d,
                root: (uf.origin[root as usize], uf.local[root as usize]),
                matched: (best.rep, best.rep_local),
                est: best.est,
            })?;
            cur.clear();
            Ok(())
        };
    let mut last: Option<(u64, u64)> = None;
    for p in pairs {
        let p = p?;
        if let Some(l) = last {
            if (p.d, p.rep) < l {
                return Err(Error::msg("pairs out of order"));
            }
            if (p.d, p.rep) == l {
                continue;
            }
        }
        last = Some((p.d, p.rep));
        st.pairs += 1;
        if cur.first().is_some_and(|c| c.d != p.d) {
            decide(&mut cur, &mut uf, st)?;
        }
        cur.push(p);
    }
    decide(&mut cur, &mut uf, st)?;
    st.nodes = uf.len() as u64;
    st.state_bytes = uf.heap_bytes() as u64;
    Ok(uf)
}

/// k-way merge of sorted pair streams by (d, rep).
pub fn merge_pairs<'a>(
    mut streams: Vec<Box<dyn Iterator<Item = Result<Pair>> + 'a>>,
) -> impl Iterator<Item = Result<Pair>> + 'a {
    let mut heap: BinaryHeap<std::cmp::Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let mut head: Vec<Option<Pair>> = vec![None; streams.len()];
    let mut pending_err: Option<Error> = None;
    for (i, s) in streams.iter_mut().enumerate() {
        match s.next() {
            Some(Ok(p)) => {
                heap.push(std::cmp::Reverse((p.d, p.rep, i)));
                head[i] = Some(p);
            }
            Some(Err(e)) => pending_err = Some(e),
            None => {}
        }
    }
    std::iter::from_fn(move || {
        if let Some(e) = pending_err.take() {
            return Some(Err(e));
        }
        let std::cmp::Reverse((_, _, i)) = heap.pop()?;
        let p = head[i].take()?;
        match streams[i].next() {
            Some(Ok(n)) => {
                heap.push(std::cmp::Reverse((n.d, n.rep, i)));
                head[i] = Some(n);
            }
            Some(Err(e)) => pending_err = Some(e),
            None => {}
        }
        Some(Ok(p))
    })
}

/// Phase 3: read every bucket's pairs, decide, write per-rank remove lists. Skips when
/// its marker exists.
pub fn run_clusters(out: &Path, plan: &Plan, world: usize) -> Result<bool> {
    let marker = unit_marker(out, plan, PHASE_CLUSTERS, 0, world).unwrap_or_default();
    if marker.exists() {
        return Ok(false);
    }
    require_markers(out, plan, PHASE_PAIRS, plan.buckets, world)?;
    let t0 = std::time::Instant::now();
    let s = state_dir(out, &plan.node);
    let mut streams: Vec<Box<dyn Iterator<Item = Result<Pair>>>> = Vec::new();
    for b in 0..plan.buckets {
        streams.push(Box::new(read_pairs(
            &s.join("pairs").join(format!("b{b:04}.bin")),
        )?));
    }
    let mut files = RankFiles::new(s.join("sig"), plan.cfg.num_perm);
    let mut writers: Vec<CheckedWriter> = (0..world)
        .map(|r| CheckedWriter::create(s.join("remove").join(format!("r{r:04}.bin")), MAGIC_REMOVE))
        .collect::<Result<_>>()?;
    let mut st = ClusterStats::default();
    // The fault hook fires after the first remove record was written (uncommitted).
    let inject = std::env::var(FAULT_ENV).is_ok_and(|v| v == PHASE_CLUSTERS);
    let mut written = 0u64;
    let uf = cluster(merge_pairs(streams), &mut st, |r| {
        if inject && written > 0 {
            fault(PHASE_CLUSTERS)?;
        }
        written += 1;
        let root = files.id(Origin(r.root.0).rank(world), r.root.1)?;
        let matched = files.id(Origin(r.matched.0).rank(world), r.matched.1)?;
        let w = &mut writers[Origin(r.d).rank(world)];
        w.record(&[
            &[0u8],
            &r.d.to_le_bytes(),
            &r.est.to_le_bytes(),
            &(root.len() as u32).to_le_bytes(),
            root.as_bytes(),
            &(matched.len() as u32).to_le_bytes(),
            matched.as_bytes(),
        ])
    })?;
    // Duplicate counts of roots, per rank in origin order.
    let mut sizes: Vec<(u64, u32)> = (0..uf.len())
        .filter(|&i| uf.dups[i] > 0)
        .map(|i| (uf.origin[i], uf.dups[i]))
        .collect();
    sizes.sort_unstable();
    for (o, n) in sizes {
        writers[Origin(o).rank(world)].record(&[&[1u8], &o.to_le_bytes(), &n.to_le_bytes()])?;
    }
    for w in writers {
        w.commit()?;
    }
    write_marker(
        &marker,
        &json!({"world_size": world, "buckets": plan.buckets, "stats": st,
                "state_bytes_per_pair": st.state_bytes as f64 / st.pairs.max(1) as f64,
                "wall_secs": t0.elapsed().as_secs_f64()}),
    )?;
    Ok(true)
}
