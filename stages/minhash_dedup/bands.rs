//! LSH banding: parameters, band keys, and the compact band index.
//!
//! A signature of `bands × rows` values is cut into `bands` slices of `rows` values; each
//! slice hashes to one 64-bit **band key** ([`band_keys`]). Two documents become candidates
//! when they share a key in at least one band. For Jaccard similarity `s`, the candidate
//! probability is `1 - (1 - s^rows)^bands`, an S-curve whose steepness grows with `rows`.
//!
//! # The decision rule (shared with the multi-machine mode)
//! Documents are numbered in input order (`0, 1, …`). For every band key the **bucket
//! representative** is the lowest-numbered document with that key. A document `d` is a
//! duplicate iff, for some band, the key's representative `r < d` and the pair `(d, r)` passes
//! verification ([`super::accept`]: Jaccard ≥ threshold or containment ≥ containment threshold,
//! estimated or exact). Union-find over those accepted
//! `(d, r)` edges gives the clusters.
//!
//! The single-process stage applies this online with [`BandIndex::get_or_insert`] (the first
//! insert of a key wins, so the stored value is exactly the representative). A multi-machine
//! run can apply the same rule offline: write `(band key, doc number)` bucket files per rank,
//! take the minimum doc number per key, verify `(d, min)` pairs, union, filter. Both give the
//! same kept/dropped sets for the same input order and seed.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Bands × rows of an LSH index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LshParams {
    /// Number of bands (number of band keys per document).
    pub bands: usize,
    /// Signature values per band.
    pub rows: usize,
}

impl LshParams {
    /// Probability that two documents with Jaccard `s` share at least one band key.
    pub fn candidate_probability(&self, s: f64) -> f64 {
        1.0 - (1.0 - s.powi(self.rows as i32)).powi(self.bands as i32)
    }
}

fn integrate(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    // Composite Simpson's rule, 200 intervals: smooth integrands, ample precision.
    let n = 200;
    if b <= a {
        return 0.0;
    }
    let h = (b - a) / n as f64;
    let mut s = f(a) + f(b);
    for i in 1..n {
        let x = a + i as f64 * h;
        s += if i % 2 == 1 { 4.0 } else { 2.0 } * f(x);
    }
    s * h / 3.0
}

/// Bands × rows (with `bands * rows <= num_perm`) minimising
/// `fp_weight · ∫₀ᵗ P(s) ds + fn_weight · ∫ₜ¹ (1 − P(s)) ds`, where `P` is the candidate
/// probability and `t` the Jaccard threshold. Ties keep the smaller `bands` (less memory).
pub fn optimal_params(
    threshold: f64,
    num_perm: usize,
    fp_weight: f64,
    fn_weight: f64,
) -> LshParams {
    let t = threshold.clamp(0.0, 1.0);
    let mut best = (
        f64::INFINITY,
        LshParams {
            bands: 1,
            rows: num_perm.max(1),
        },
    );
    for bands in 1..=num_perm.max(1) {
        for rows in 1..=(num_perm / bands) {
            let p = LshParams { bands, rows };
            let fp = integrate(|s| p.candidate_probability(s), 0.0, t);
            let fnr = integrate(|s| 1.0 - p.candidate_probability(s), t, 1.0);
            let err = fp_weight * fp + fn_weight * fnr;
            if err < best.0 - 1e-12 {
                best = (err, p);
            }
        }
    }
    best.1
}

/// The band keys of a signature, one per band, written to `out` (cleared first).
///
/// Key of band `i` = `xxh3_64_with_seed(LE bytes of sig[i*rows .. (i+1)*rows], seed ^ i·K)`
/// with a fixed odd `K`, so equal slices in different bands give unrelated keys and one
/// index can hold every band. Key `0` is remapped to `1` (0 marks an empty index slot).
pub fn band_keys(sig: &[u32], params: LshParams, seed: u64, out: &mut Vec<u64>) {
    out.clear();
    let mut buf: Vec<u8> = Vec::with_capacity(params.rows * 4);
    for band in 0..params.bands {
        let start = band * params.rows;
        let Some(slice) = sig.get(start..start + params.rows) else {
            break;
        };
        buf.clear();
        for v in slice {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        let bseed = seed ^ (band as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F);
        let k = xxh3_64_with_seed(&buf, bseed);
        out.push(if k == 0 { 1 } else { k });
    }
}

/// Number of independently growing segments of a [`BandIndex`].
const SEGMENTS: usize = 64;

/// Hash table from band key (`u64`, never 0) to the representative document number
/// (`u32`): 64 open-addressing segments (selected by the key's low 6 bits), each addressed
/// by the key's high bits (multiply-shift "fastrange", so any slot count works) with
/// linear probing.
///
/// **Memory:** 12 bytes per slot (key + value in parallel arrays). A segment grows by 1.5×
/// when 7/8 full, so the load stays between 0.58 and 0.875: 13.7–20.6 bytes per stored
/// key, ≈ 16.7 on average. Growing one segment at a time keeps the transient peak to
/// 1/64 of the table (no whole-table doubling spike). Pre-sized with
/// [`BandIndex::with_capacity`] for the expected number of keys it never grows and holds
/// 13.7 bytes per key.
#[derive(Debug, Clone)]
pub struct BandIndex {
    segs: Vec<Segment>,
}

#[derive(Debug, Clone)]
struct Segment {
    keys: Vec<u64>,
    vals: Vec<u32>,
    len: usize,
}

impl Segment {
    fn with_slots(slots: usize) -> Self {
        let slots = slots.max(16);
        Segment {
            keys: vec![0; slots],
            vals: vec![0; slots],
            len: 0,
        }
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        ((key as u128 * self.keys.len() as u128) >> 64) as usize
    }

    /// (slot, found)
    #[inline]
    fn find(&self, key: u64) -> (usize, bool) {
        let n = self.keys.len();
        let mut i = self.home(key);
        loop {
            let k = self.keys[i];
            if k == key {
                return (i, true);
            }
            if k == 0 {
                return (i, false);
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    fn grow(&mut self) {
        let new_slots = self.keys.len() + self.keys.len() / 2;
        let old = std::mem::replace(self, Segment::with_slots(new_slots));
        for (k, v) in old.keys.into_iter().zip(old.vals) {
            if k != 0 {
                let (i, _) = self.find(k);
                self.keys[i] = k;
                self.vals[i] = v;
                self.len += 1;
            }
        }
    }
}

impl Default for BandIndex {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl BandIndex {
    /// A table with room for `n` keys before any segment must grow.
    pub fn with_capacity(n: usize) -> Self {
        let per = (n as f64 / SEGMENTS as f64 / 0.875).ceil() as usize + 1;
        BandIndex {
            segs: (0..SEGMENTS).map(|_| Segment::with_slots(per)).collect(),
        }
    }

    /// Number of stored keys.
    pub fn len(&self) -> usize {
        self.segs.iter().map(|s| s.len).sum()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the table's arrays.
    pub fn heap_bytes(&self) -> usize {
        self.segs
            .iter()
            .map(|s| s.keys.capacity() * 8 + s.vals.capacity() * 4)
            .sum()
    }

    /// The representative for `key`, if any.
    pub fn get(&self, key: u64) -> Option<u32> {
        let key = if key == 0 { 1 } else { key };
        let seg = &self.segs[(key as usize) % SEGMENTS];
        match seg.find(key) {
            (i, true) => Some(seg.vals[i]),
            _ => None,
        }
    }

    /// If `key` is present return its representative; otherwise store `doc` as the
    /// representative and return `None`. The first insert of a key wins.
    pub fn get_or_insert(&mut self, key: u64, doc: u32) -> Option<u32> {
        let key = if key == 0 { 1 } else { key };
        let seg = &mut self.segs[(key as usize) % SEGMENTS];
        let (mut i, found) = seg.find(key);
        if found {
            return Some(seg.vals[i]);
        }
        if (seg.len + 1) * 8 > seg.keys.len() * 7 {
            seg.grow();
            i = seg.find(key).0;
        }
        seg.keys[i] = key;
        seg.vals[i] = doc;
        seg.len += 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimal_params_match_known_values() {
        // Equal weights at t=0.8 with 128 perms favour many short bands... check the curve
        // crosses near the threshold and bands*rows fits.
        for (t, np) in [(0.5, 128), (0.7, 128), (0.8, 128), (0.9, 256)] {
            let p = optimal_params(t, np, 0.5, 0.5);
            assert!(p.bands * p.rows <= np);
            let at = p.candidate_probability(t);
            assert!(at > 0.2 && at < 0.8, "t={t} {p:?} P(t)={at}");
            assert!(p.candidate_probability(t + 0.1) > at);
        }
        // Higher threshold => more rows per band.
        assert!(optimal_params(0.9, 128, 0.5, 0.5).rows > optimal_params(0.5, 128, 0.5, 0.5).rows);
    }

    #[test]
    fn band_keys_differ_per_band_and_seed() {
        let sig = vec![7u32; 20];
        let p = LshParams { bands: 4, rows: 5 };
        let mut k = Vec::new();
        band_keys(&sig, p, 1, &mut k);
        assert_eq!(k.len(), 4);
        let mut d = k.clone();
        d.sort();
        d.dedup();
        assert_eq!(
            d.len(),
            4,
            "same slice in different bands must give different keys"
        );
        let mut k2 = Vec::new();
        band_keys(&sig, p, 2, &mut k2);
        assert_ne!(k, k2);
    }

    #[test]
    fn index_first_insert_wins_and_grows() {
        let mut ix = BandIndex::with_capacity(0);
        for i in 0..10_000u32 {
            let key = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            assert_eq!(ix.get_or_insert(key, i), None);
        }
        assert_eq!(ix.len(), 10_000);
        for i in 0..10_000u32 {
            let key = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            assert_eq!(ix.get_or_insert(key, 99_999), Some(i));
            assert_eq!(ix.get(key), Some(i));
        }
        assert_eq!(ix.get(12345), None);
        let mut zero = BandIndex::default();
        assert_eq!(zero.get_or_insert(0, 5), None);
        assert_eq!(zero.get(0), Some(5));
    }
}
