//! The portable shuffle shared by the Rust loader and `python/sluice_feed`.
//!
//! Both loaders must produce identical batches for the same seed, so the shuffle is
//! defined here bit for bit, in a form that is a dozen lines in any language:
//!
//! - `mix(x)` is the splitmix64 finaliser (Steele, Lea & Flood 2014) applied to
//!   `x + 0x9E3779B97F4A7C15`, all arithmetic wrapping mod 2^64.
//! - [`SplitMix64`] is the splitmix64 generator: `state += GOLDEN; return fmix(state)`.
//! - [`below`] maps a 64-bit draw to `0..n` with Lemire's multiply-shift,
//!   `(x * n) >> 64` in 128-bit arithmetic (no modulo; bias < n / 2^64).
//! - [`permutation`] is Fisher–Yates: `for i in (1..n).rev() { j = below(rng, i+1); swap(i, j) }`
//!   starting from the identity.
//! - The shard order of epoch `e` uses `SplitMix64::new(epoch_seed(seed, e))`; the row
//!   order of shard `s` (its index in the canonical, path-sorted shard list) in epoch `e`
//!   uses `SplitMix64::new(row_seed(seed, e, s))`.

/// splitmix64's increment (the golden ratio in 64-bit fixed point).
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn fmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One splitmix64 step from `x`: a well-mixed 64-bit hash of `x`.
pub fn mix(x: u64) -> u64 {
    fmix(x.wrapping_add(GOLDEN))
}

/// Seed of the shard-order generator for `epoch`.
pub fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    mix(seed ^ mix(epoch))
}

/// Seed of the row-order generator for canonical shard `shard` in `epoch`.
pub fn row_seed(seed: u64, epoch: u64, shard: u64) -> u64 {
    mix(epoch_seed(seed, epoch) ^ mix(shard.wrapping_add(0x5EED)))
}

/// The splitmix64 generator.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }
    /// The next 64-bit draw.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        fmix(self.state)
    }
}

/// A draw in `0..n` (n > 0) by multiply-shift.
pub fn below(rng: &mut SplitMix64, n: u64) -> u64 {
    ((rng.next_u64() as u128 * n as u128) >> 64) as u64
}

/// A Fisher–Yates permutation of `0..n` from `seed`.
pub fn permutation(n: usize, seed: u64) -> Vec<u32> {
    let mut p: Vec<u32> = (0..n as u32).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        let j = below(&mut rng, i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // Reference outputs of splitmix64 seeded with 1234567 (from the public-domain C
        // implementation by Vigna).
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
        assert_eq!(r.next_u64(), 9817491932198370423);
    }

    #[test]
    fn permutation_is_a_permutation_and_seeded() {
        let p = permutation(1000, 7);
        let mut s = p.clone();
        s.sort();
        assert_eq!(s, (0..1000).collect::<Vec<u32>>());
        assert_eq!(p, permutation(1000, 7));
        assert_ne!(p, permutation(1000, 8));
        assert_eq!(permutation(0, 1), Vec::<u32>::new());
        assert_eq!(permutation(1, 1), vec![0]);
    }
}
