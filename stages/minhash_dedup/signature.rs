//! Pure MinHash signature code: shingling, signatures and Jaccard estimates.
//!
//! This module is the reusable core of near-duplicate detection. It has no state beyond a
//! [`MinHasher`]'s permutation constants, opens no files and never looks at the rest of the
//! pipeline, so the single-process `minhash_dedup` stage and the multi-machine mode (per-rank
//! signatures → bucket files → global union-find → filter) compute **bit-identical**
//! shingles, signatures and band keys for the same text, mode, n and seed.
//!
//! # Pipeline of a document
//! 1. **Tokens** ([`tokens`]): the text becomes a sequence of `u64` token values.
//!    * [`ShingleMode::Chars`]: every alphanumeric Unicode scalar (lower-cased), whitespace and
//!      punctuation skipped, so `"中文，维基"` and `"中文 维基"` give the same tokens. The
//!      token value is the scalar value itself (no hashing needed).
//!    * [`ShingleMode::Words`]: the byte spans of `Document.words` (set by `segment_zh`);
//!      spans that hold no alphanumeric character (punctuation, spaces) are skipped. Token
//!      value = `xxh3_64_with_seed(lowercased word, seed)`.
//!    * [`ShingleMode::Whitespace`]: `split_whitespace` words, ASCII punctuation trimmed from
//!      both ends, lower-cased; token value as for words.
//! 2. **Shingles** ([`shingles`]): every window of `n` consecutive tokens is hashed with
//!    `xxh3_64_with_seed(little-endian bytes of the n token values, seed)`. A document with
//!    fewer than `n` (but at least one) tokens yields one shingle over all of them. The
//!    result is sorted and deduplicated, i.e. it is the shingle **set**, which is what
//!    Jaccard similarity is defined on and what exact verification compares.
//! 3. **Signature** ([`MinHasher::signature`]): `num_perm` values; value `i` is
//!    `min over shingles x of ((a_i * x + b_i) mod 2^64) >> 32` (multiply-shift hashing,
//!    a 2-universal family), with odd `a_i` and `b_i` drawn from SplitMix64 seeded by `seed`.
//!    Values are `u32`. A document with no shingle has no signature (callers skip it).
//!
//! Band keys (LSH) live in [`super::bands`]; both modules take the same `seed`.
//!
//! # Stability
//! The functions here define the on-disk meaning of signatures and bucket files. Changing
//! any constant or formula changes every result, so it must bump [`SIGNATURE_VERSION`].

use std::ops::Range;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Version of the shingle/signature/band formulas. Persisted signature or bucket files
/// carry it; readers refuse files with another version.
pub const SIGNATURE_VERSION: u32 = 1;

/// How a document is cut into tokens before n-gram shingling.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ShingleMode {
    /// Alphanumeric characters (the Chinese default): robust, needs no segmenter.
    Chars,
    /// Words from `Document.words` (the spans written by `segment_zh`).
    Words,
    /// Whitespace-separated words (English and other space-delimited languages).
    Whitespace,
}

/// The token sequence of `text` under `mode`, appended to `out` (cleared first).
///
/// `words` is required for [`ShingleMode::Words`]; if it is `None` this returns `false`
/// and leaves `out` empty so the caller can fall back (the stage falls back to chars).
pub fn tokens(
    text: &str,
    words: Option<&[Range<u32>]>,
    mode: ShingleMode,
    seed: u64,
    out: &mut Vec<u64>,
) -> bool {
    out.clear();
    match mode {
        ShingleMode::Chars => {
            for c in text.chars() {
                // Fast path: CJK Unified Ideographs are alphanumeric and caseless, so the
                // Unicode table lookups below would return exactly this.
                if ('\u{4E00}'..='\u{9FFF}').contains(&c) {
                    out.push(c as u64);
                } else if c.is_alphanumeric() {
                    out.push(lower_char(c) as u64);
                }
            }
            true
        }
        ShingleMode::Words => {
            let Some(words) = words else { return false };
            let mut buf = String::new();
            for r in words {
                let (s, e) = (r.start as usize, r.end as usize);
                let Some(w) = text.get(s..e) else { continue };
                if !w.chars().any(char::is_alphanumeric) {
                    continue;
                }
                out.push(hash_word(w, seed, &mut buf));
            }
            true
        }
        ShingleMode::Whitespace => {
            let mut buf = String::new();
            for w in text.split_whitespace() {
                let w = w.trim_matches(|c: char| c.is_ascii_punctuation());
                if !w.chars().any(char::is_alphanumeric) {
                    continue;
                }
                out.push(hash_word(w, seed, &mut buf));
            }
            true
        }
    }
}

#[inline]
fn lower_char(c: char) -> char {
    if c.is_ascii() {
        c.to_ascii_lowercase()
    } else {
        // Multi-char lower-case expansions (rare) keep their first char: stable and cheap.
        c.to_lowercase().next().unwrap_or(c)
    }
}

#[inline]
fn hash_word(w: &str, seed: u64, buf: &mut String) -> u64 {
    if w.bytes().all(|b| !b.is_ascii_uppercase()) && w.is_ascii() {
        return xxh3_64_with_seed(w.as_bytes(), seed);
    }
    buf.clear();
    buf.extend(w.chars().map(lower_char));
    xxh3_64_with_seed(buf.as_bytes(), seed)
}

/// The sorted, deduplicated n-gram shingle set of a token sequence, written to `out`.
///
/// `n` is clamped to at least 1. Fewer than `n` tokens (but at least one) give a single
/// shingle over all of them; no tokens give an empty set.
pub fn shingles(tokens: &[u64], n: usize, seed: u64, out: &mut Vec<u64>) {
    out.clear();
    let n = n.max(1);
    if tokens.is_empty() {
        return;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(n * 8);
    let mut hash_window = |w: &[u64]| {
        buf.clear();
        for t in w {
            buf.extend_from_slice(&t.to_le_bytes());
        }
        xxh3_64_with_seed(&buf, seed)
    };
    if tokens.len() < n {
        out.push(hash_window(tokens));
    } else {
        out.reserve(tokens.len() + 1 - n);
        for w in tokens.windows(n) {
            out.push(hash_window(w));
        }
    }
    out.sort_unstable();
    out.dedup();
}

/// Convenience: text → shingle set in one call (allocates a token buffer).
pub fn text_shingles(
    text: &str,
    words: Option<&[Range<u32>]>,
    mode: ShingleMode,
    n: usize,
    seed: u64,
) -> Vec<u64> {
    let mut toks = Vec::new();
    let mut out = Vec::new();
    if tokens(text, words, mode, seed, &mut toks) {
        shingles(&toks, n, seed, &mut out);
    }
    out
}

/// SplitMix64: the seeded generator for permutation constants (and for the bench's
/// planted-duplicate generator). Tiny, fast, fully specified.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// Next 64-bit value.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform value in `0..n` (n > 0), by multiply-shift (no modulo bias worth noting).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// Computes MinHash signatures with `num_perm` seeded hash functions.
#[derive(Debug, Clone)]
pub struct MinHasher {
    a: Vec<u32>,
    b: Vec<u32>,
    seed: u64,
}

impl MinHasher {
    /// `num_perm` hash functions (at least 1) drawn from `seed`.
    pub fn new(num_perm: usize, seed: u64) -> Self {
        let mut rng = SplitMix64(seed ^ 0x6D69_6E68_6173_6831); // "minhash1"
        let n = num_perm.max(1);
        let mut a = Vec::with_capacity(n);
        let mut b = Vec::with_capacity(n);
        for _ in 0..n {
            let r = rng.next_u64();
            a.push((r as u32) | 1);
            b.push((r >> 32) as u32);
        }
        MinHasher { a, b, seed }
    }

    /// Number of hash functions (signature length).
    pub fn num_perm(&self) -> usize {
        self.a.len()
    }

    /// The seed this hasher was built with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Write the signature of a shingle set into `sig` (length must be `num_perm`).
    /// An empty set gives all `u32::MAX`.
    ///
    /// The same integer arithmetic is compiled three times (AVX-512, AVX2, baseline) and
    /// picked at run time; results are bit-identical on every CPU.
    pub fn signature(&self, shingles: &[u64], sig: &mut [u32]) {
        assert_eq!(
            sig.len(),
            self.a.len(),
            "signature buffer length must equal num_perm"
        );
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512f")
            {
                // SAFETY: the CPU supports the features this function is compiled for.
                unsafe { signature_avx512(&self.a, &self.b, shingles, sig) };
                return;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: as above.
                unsafe { signature_avx2(&self.a, &self.b, shingles, sig) };
                return;
            }
        }
        signature_kernel(&self.a, &self.b, shingles, sig);
    }

    /// Allocate and return a signature.
    pub fn signature_vec(&self, shingles: &[u64]) -> Vec<u32> {
        let mut s = vec![0u32; self.a.len()];
        self.signature(shingles, &mut s);
        s
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
unsafe fn signature_avx512(a: &[u32], b: &[u32], shingles: &[u64], sig: &mut [u32]) {
    signature_kernel(a, b, shingles, sig)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn signature_avx2(a: &[u32], b: &[u32], shingles: &[u64], sig: &mut [u32]) {
    signature_kernel(a, b, shingles, sig)
}

/// `sig[i] = min_x p_i(fold32(x))` with the 32-bit permutation
/// `p_i(y) = (a_i·y + b_i mod 2^32) ^ ((a_i·y + b_i mod 2^32) >> 16)` (odd `a_i`: a bijection),
/// `fold32(x) = (x ^ x >> 32) mod 2^32`. All lanes are 32-bit, so AVX-512 does 16 per
/// instruction. Four shingles per pass over the constants reuse each `a_i`/`b_i` load.
#[inline(always)]
fn signature_kernel(a: &[u32], b: &[u32], shingles: &[u64], sig: &mut [u32]) {
    sig.fill(u32::MAX);
    let n = sig.len().min(a.len()).min(b.len());
    let (a, b, sig) = (&a[..n], &b[..n], &mut sig[..n]);
    #[inline(always)]
    fn p(ai: u32, bi: u32, y: u32) -> u32 {
        let h = ai.wrapping_mul(y).wrapping_add(bi);
        h ^ (h >> 16)
    }
    let fold = |x: u64| (x ^ (x >> 32)) as u32;
    let mut chunks = shingles.chunks_exact(4);
    for c in &mut chunks {
        let (x0, x1, x2, x3) = (fold(c[0]), fold(c[1]), fold(c[2]), fold(c[3]));
        for i in 0..n {
            let (ai, bi) = (a[i], b[i]);
            let m = p(ai, bi, x0)
                .min(p(ai, bi, x1))
                .min(p(ai, bi, x2).min(p(ai, bi, x3)));
            sig[i] = sig[i].min(m);
        }
    }
    for &x in chunks.remainder() {
        let y = fold(x);
        for i in 0..n {
            sig[i] = sig[i].min(p(a[i], b[i], y));
        }
    }
}

/// Estimated Jaccard similarity: the fraction of equal signature positions.
pub fn estimate_jaccard(a: &[u32], b: &[u32]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    let eq = a.iter().zip(b).filter(|(x, y)| x == y).count();
    eq as f64 / n as f64
}

/// Exact Jaccard similarity of two sorted, deduplicated shingle sets. Two empty sets: 0.
pub fn exact_jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 0.0;
    }
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// True when the text is mostly CJK ideographs / kana / hangul (used to pick chars mode for
/// documents without a language tag). Looks at the first 2,000 characters only.
pub fn looks_cjk(text: &str) -> bool {
    let (mut cjk, mut alnum) = (0usize, 0usize);
    for c in text.chars().take(2000) {
        if c.is_alphanumeric() {
            alnum += 1;
            if matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
            {
                cjk += 1;
            }
        }
    }
    alnum > 0 && cjk * 10 >= alnum * 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chars_skip_punctuation_and_space_and_lowercase() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        tokens("中文，维基 ABC", None, ShingleMode::Chars, 1, &mut a);
        tokens("中文 维基abc。", None, ShingleMode::Chars, 1, &mut b);
        assert_eq!(a, b);
        assert_eq!(a.len(), 7);
        assert_eq!(a[0], '中' as u64);
    }

    #[test]
    fn words_mode_uses_spans_and_needs_them() {
        let text = "我们 喜欢，北京";
        let spans = vec![0..6, 6..7, 7..13, 13..16, 16..22];
        let mut t = Vec::new();
        assert!(tokens(text, Some(&spans), ShingleMode::Words, 7, &mut t));
        assert_eq!(t.len(), 3, "space and comma spans are skipped");
        assert_eq!(t[0], xxh3_64_with_seed("我们".as_bytes(), 7));
        assert!(!tokens(text, None, ShingleMode::Words, 7, &mut t));
        assert!(t.is_empty());
    }

    #[test]
    fn whitespace_mode_trims_and_lowercases() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        tokens(
            "Hello, World!  again",
            None,
            ShingleMode::Whitespace,
            3,
            &mut a,
        );
        tokens(
            "hello world again",
            None,
            ShingleMode::Whitespace,
            3,
            &mut b,
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn shingle_sets_are_sorted_dedup_and_short_docs_get_one() {
        let toks: Vec<u64> = vec![1, 2, 3, 1, 2, 3, 1, 2, 3];
        let mut s = Vec::new();
        shingles(&toks, 3, 0, &mut s);
        assert_eq!(s.len(), 3, "only (1,2,3) (2,3,1) (3,1,2) are distinct");
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        shingles(&toks[..2], 5, 0, &mut s);
        assert_eq!(s.len(), 1);
        shingles(&[], 5, 0, &mut s);
        assert!(s.is_empty());
    }

    #[test]
    fn signature_is_deterministic_and_estimates_jaccard() {
        let h = MinHasher::new(256, 42);
        let h2 = MinHasher::new(256, 42);
        let a: Vec<u64> = (0..1000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        // b shares 800 of a's 1000 shingles plus 200 new ones: J = 800/1200 = 0.667.
        let mut b: Vec<u64> = a[..800].to_vec();
        b.extend((5000..5200u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        let sa = h.signature_vec(&a);
        assert_eq!(sa, h2.signature_vec(&a));
        // The run-time dispatched SIMD path equals the portable kernel bit for bit.
        let mut portable = vec![0u32; 256];
        signature_kernel(&h.a, &h.b, &a, &mut portable);
        assert_eq!(sa, portable);
        assert_ne!(sa, MinHasher::new(256, 43).signature_vec(&a));
        let sb = h.signature_vec(&b);
        let est = estimate_jaccard(&sa, &sb);
        let mut bs = b.clone();
        bs.sort_unstable();
        let mut as_ = a.clone();
        as_.sort_unstable();
        let exact = exact_jaccard(&as_, &bs);
        assert!((exact - 800.0 / 1200.0).abs() < 1e-9);
        assert!((est - exact).abs() < 0.1, "est {est} exact {exact}");
        // Order of shingles does not matter; chunked and remainder paths agree.
        let mut rev = a.clone();
        rev.reverse();
        assert_eq!(h.signature_vec(&rev), sa);
        assert_eq!(h.signature_vec(&a[..3]), {
            let mut s = vec![u32::MAX; 256];
            for &x in &a[..3] {
                let one = h.signature_vec(&[x]);
                for i in 0..256 {
                    s[i] = s[i].min(one[i]);
                }
            }
            s
        });
    }

    #[test]
    fn near_duplicate_chinese_text_has_high_similarity() {
        let a = "北京大学是中国近代第一所国立综合性大学，创建于1898年，初名京师大学堂。";
        let b = "北京大学是中国近代第一所国立综合性大学，创建于1898年，原名京师大学堂。";
        let c = "上海是中华人民共和国直辖市，国家中心城市，超大城市，上海大都市圈核心城市。";
        let sa = text_shingles(a, None, ShingleMode::Chars, 5, 1);
        let sb = text_shingles(b, None, ShingleMode::Chars, 5, 1);
        let sc = text_shingles(c, None, ShingleMode::Chars, 5, 1);
        let jab = exact_jaccard(&sa, &sb);
        assert!(jab > 0.6 && jab < 1.0, "{jab}");
        assert!(exact_jaccard(&sa, &sc) < 0.05);
        assert!(looks_cjk(a) && !looks_cjk("plain English text"));
    }
}
