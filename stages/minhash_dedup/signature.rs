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
//! 3. **Signature** ([`MinHasher::signature`]): `num_perm` `u32` values, each a min-hash of
//!    the shingle set, computed as a *bucketed* MinHash (Fast Similarity Sketching): every
//!    shingle is hashed once per round into one coordinate, for at most 4 rounds, and the
//!    few coordinates left empty fall back to a per-coordinate permutation. The exact
//!    formula is on [`MinHasher`]. Constants are drawn from SplitMix64 seeded by `seed`. A
//!    document with no shingle has no signature (callers skip it).
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
/// Version 2: bucketed MinHash signatures (version 1 evaluated one permutation per
/// coordinate and shingle); shingles and band keys are unchanged.
pub const SIGNATURE_VERSION: u32 = 2;

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
            out.reserve(text.len() / 3);
            for c in text.chars() {
                push_char_token(c, out);
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
            if text.is_ascii() {
                whitespace_tokens_ascii(text.as_bytes(), seed, out);
                return true;
            }
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

/// The [`ShingleMode::Chars`] token of one character, if it has one. Returns whether `c`
/// is alphanumeric.
#[inline(always)]
fn push_char_token(c: char, out: &mut Vec<u64>) -> bool {
    // Fast path: CJK Unified Ideographs are alphanumeric and caseless, so the Unicode table
    // lookups below would return exactly this.
    if ('\u{4E00}'..='\u{9FFF}').contains(&c) {
        out.push(c as u64);
        true
    } else if is_alphanumeric(c) {
        out.push(lower_char(c) as u64);
        true
    } else {
        false
    }
}

/// `looks_cjk(text)` and the tokens of the mode it picks (chars if CJK, else whitespace
/// words), in one pass over the text when it is CJK: the first 2,000 characters are
/// tokenized as chars while they are counted, and the rest follows only if the count says
/// chars. Same tokens and the same decision as [`looks_cjk`] then [`tokens`].
pub fn auto_tokens(text: &str, seed: u64, out: &mut Vec<u64>) -> ShingleMode {
    out.clear();
    out.reserve(text.len() / 3);
    let (mut cjk, mut alnum) = (0usize, 0usize);
    let mut chars = text.chars();
    for c in chars.by_ref().take(LOOKS_CJK_CHARS) {
        if ('\u{4E00}'..='\u{9FFF}').contains(&c) {
            // As in `push_char_token`; a CJK Unified Ideograph needs no further test.
            out.push(c as u64);
            alnum += 1;
            cjk += 1;
        } else if is_alphanumeric(c) {
            out.push(lower_char(c) as u64);
            alnum += 1;
            if is_cjk_letter(c) {
                cjk += 1;
            }
        }
    }
    if alnum > 0 && cjk * 20 >= alnum {
        for c in chars {
            push_char_token(c, out);
        }
        ShingleMode::Chars
    } else {
        tokens(text, None, ShingleMode::Whitespace, seed, out);
        ShingleMode::Whitespace
    }
}

/// Characters [`looks_cjk`] reads.
const LOOKS_CJK_CHARS: usize = 2000;

/// The scripts [`looks_cjk`] counts as CJK.
#[inline(always)]
fn is_cjk_letter(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// [`ShingleMode::Whitespace`] for pure-ASCII text, byte by byte: the same tokens as the
/// general path (`char::is_whitespace` on ASCII is exactly space and `\t`..=`\r`), without
/// UTF-8 decoding or a lower-case copy of words that have no upper-case letter.
fn whitespace_tokens_ascii(bytes: &[u8], seed: u64, out: &mut Vec<u64>) {
    let mut lower = [0u8; 64];
    let mut long = Vec::new();
    for w in bytes.split(|&b| b == b' ' || (b'\t'..=b'\r').contains(&b)) {
        let mut s = 0;
        let mut e = w.len();
        while s < e && w[s].is_ascii_punctuation() {
            s += 1;
        }
        while e > s && w[e - 1].is_ascii_punctuation() {
            e -= 1;
        }
        let w = &w[s..e];
        if !w.iter().any(u8::is_ascii_alphanumeric) {
            continue;
        }
        if !w.iter().any(u8::is_ascii_uppercase) {
            out.push(xxh3_64_with_seed(w, seed));
        } else if w.len() <= lower.len() {
            let l = &mut lower[..w.len()];
            for (d, &c) in l.iter_mut().zip(w) {
                *d = c.to_ascii_lowercase();
            }
            out.push(xxh3_64_with_seed(l, seed));
        } else {
            long.clear();
            long.extend(w.iter().map(u8::to_ascii_lowercase));
            out.push(xxh3_64_with_seed(&long, seed));
        }
    }
}

/// `char::is_alphanumeric`, with the answers for the Basic Multilingual Plane cached in a
/// bit table filled one 256-code-point page at a time on first use. Chinese text is full of
/// CJK punctuation and full-width forms, whose answer (not alphanumeric) otherwise costs two
/// binary searches of the Unicode tables per character (a third of the whole
/// `minhash_dedup` run on Chinese web text before this table). The bits are computed by
/// `char::is_alphanumeric` itself, so the answers are identical.
#[inline]
pub fn is_alphanumeric(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    let cp = c as u32;
    if cp > 0xFFFF {
        return c.is_alphanumeric();
    }
    alnum_table::lookup(cp)
}

mod alnum_table {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    const PAGES: usize = 256;
    static READY: [AtomicBool; PAGES] = [const { AtomicBool::new(false) }; PAGES];
    static BITS: [AtomicU64; PAGES * 4] = [const { AtomicU64::new(0) }; PAGES * 4];

    /// Whether BMP code point `cp` is alphanumeric.
    #[inline]
    pub(super) fn lookup(cp: u32) -> bool {
        let page = (cp >> 8) as usize;
        if !READY[page].load(Ordering::Acquire) {
            fill(page);
        }
        let w = BITS[(cp >> 6) as usize].load(Ordering::Relaxed);
        w >> (cp & 63) & 1 == 1
    }

    /// Fill one page. Two threads may fill the same page at once; both store the same bits
    /// before either sets the flag (release), so a reader that sees the flag sees the bits.
    #[cold]
    fn fill(page: usize) {
        for word in 0..4 {
            let mut bits = 0u64;
            for b in 0..64u32 {
                let cp = (page as u32) << 8 | (word as u32) << 6 | b;
                if char::from_u32(cp).is_some_and(char::is_alphanumeric) {
                    bits |= 1 << b;
                }
            }
            BITS[page * 4 + word].store(bits, Ordering::Relaxed);
        }
        READY[page].store(true, Ordering::Release);
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
    shingle_hashes(tokens, n, seed, out);
    sort_dedup(out);
}

/// The n-gram shingle hashes of a token sequence in text order, repeats included (the
/// multiset; [`shingles`] sorts and deduplicates it). A signature does not depend on order
/// or repeats, so the stage signs this directly and counts the distinct values with
/// [`distinct_count`] instead of sorting when it does not need the set itself.
pub fn shingle_hashes(tokens: &[u64], n: usize, seed: u64, out: &mut Vec<u64>) {
    out.clear();
    let n = n.max(1);
    if tokens.is_empty() {
        return;
    }
    if tokens.len() >= n && (3..=16).contains(&n) {
        // A window of 3..=16 tokens is 24..=128 bytes: xxh3's mid-size path, computed
        // straight from the token words (bit-identical, see `window_hash`).
        let k = WindowKeys::new(seed);
        out.reserve(tokens.len() - n + 1);
        match n {
            5 => out.extend(tokens.windows(5).map(|w| k.hash::<5>(w))),
            3 => out.extend(tokens.windows(3).map(|w| k.hash::<3>(w))),
            _ => out.extend(tokens.windows(n).map(|w| k.hash_dyn(w))),
        }
    } else {
        // The little-endian bytes of all tokens, once; a window of `n` tokens is then one
        // contiguous slice (no per-shingle copy).
        let mut bytes: Vec<u8> = Vec::with_capacity(tokens.len() * 8);
        for t in tokens {
            bytes.extend_from_slice(&t.to_le_bytes());
        }
        if tokens.len() < n {
            out.push(xxh3_64_with_seed(&bytes, seed));
        } else {
            let w = n * 8;
            out.extend(
                (0..=tokens.len() - n).map(|i| xxh3_64_with_seed(&bytes[i * 8..i * 8 + w], seed)),
            );
        }
    }
}

/// The number of distinct values in `xs` (shingle hashes: already uniformly distributed),
/// by linear probing in `table` (reused between calls; resized to a power of two ≥ 4·len).
/// Same answer as sorting and deduplicating, in one pass.
pub fn distinct_count(xs: &[u64], table: &mut Vec<u64>) -> usize {
    if xs.len() < 2 {
        return xs.len();
    }
    // Load ≤ 1/4: most inserts find an empty slot at once (a predictable branch).
    let size = (xs.len() * 4).next_power_of_two();
    table.clear();
    table.resize(size, 0);
    let mask = size - 1;
    let mut n = 0;
    let mut zero = false;
    for &x in xs {
        // 0 marks an empty slot; the value 0 itself is tracked on the side.
        if x == 0 {
            n += usize::from(!zero);
            zero = true;
            continue;
        }
        let mut i = x as usize & mask;
        loop {
            let t = table[i];
            if t == x {
                break;
            }
            if t == 0 {
                table[i] = x;
                n += 1;
                break;
            }
            i = (i + 1) & mask;
        }
    }
    n
}

/// Sort and deduplicate shingle hashes (the set).
fn sort_dedup(v: &mut Vec<u64>) {
    v.sort_unstable();
    v.dedup();
}

/// The first 128 bytes of xxh3's default secret as little-endian words (a constant of the
/// xxh3 specification, the same bytes `xxhash_rust` uses).
const XXH3_SECRET: [u64; 16] = [
    0xBE4B_A423_396C_FEB8,
    0x1CAD_21F7_2C81_017C,
    0xDB97_9083_E96D_D4DE,
    0x1F67_B3B7_A4A4_4072,
    0x78E5_C0CC_4EE6_79CB,
    0x2172_FFCC_7DD0_5A82,
    0x8E24_43F7_7446_08B8,
    0x4C26_3A81_E690_35E0,
    0xCB00_C391_BB52_283C,
    0xA32E_531B_8B65_D088,
    0x4EF9_0DA2_9748_6471,
    0xD8AC_DEA9_46EF_1938,
    0x3F34_9CE3_3F76_FAA8,
    0x1D4F_0BC7_C7BB_DCF9,
    0x3159_B4CD_4BE0_518A,
    0x6473_78D9_C97E_9FC8,
];
const XXH_PRIME64_1: u64 = 0x9E37_79B1_85EB_CA87;

/// `xxh3_64_with_seed(little-endian bytes of w, seed)` for windows of 3..=16 tokens
/// (24..=128 bytes), without building the byte string: every 16-byte chunk xxh3 reads at
/// those lengths starts at a multiple of 8, i.e. is a pair of whole tokens. The seeded
/// secret words are computed once per document.
struct WindowKeys([u64; 16]);

impl WindowKeys {
    fn new(seed: u64) -> Self {
        let mut k = [0u64; 16];
        for i in 0..8 {
            k[2 * i] = XXH3_SECRET[2 * i].wrapping_add(seed);
            k[2 * i + 1] = XXH3_SECRET[2 * i + 1].wrapping_sub(seed);
        }
        WindowKeys(k)
    }

    #[inline(always)]
    fn mix(&self, lo: u64, hi: u64, s: usize) -> u64 {
        let p = ((lo ^ self.0[s]) as u128).wrapping_mul((hi ^ self.0[s + 1]) as u128);
        (p as u64) ^ ((p >> 64) as u64)
    }

    /// xxh3's 17..=128-byte path on `w.len()` words (`w.len()` in 3..=16).
    #[inline(always)]
    fn hash_dyn(&self, w: &[u64]) -> u64 {
        let n = w.len();
        let len = 8 * n;
        let mut acc = (len as u64).wrapping_mul(XXH_PRIME64_1);
        if len > 32 {
            if len > 64 {
                if len > 96 {
                    acc = acc.wrapping_add(self.mix(w[6], w[7], 12));
                    acc = acc.wrapping_add(self.mix(w[n - 8], w[n - 7], 14));
                }
                acc = acc.wrapping_add(self.mix(w[4], w[5], 8));
                acc = acc.wrapping_add(self.mix(w[n - 6], w[n - 5], 10));
            }
            acc = acc.wrapping_add(self.mix(w[2], w[3], 4));
            acc = acc.wrapping_add(self.mix(w[n - 4], w[n - 3], 6));
        }
        acc = acc.wrapping_add(self.mix(w[0], w[1], 0));
        acc = acc.wrapping_add(self.mix(w[n - 2], w[n - 1], 2));
        acc ^= acc >> 37;
        acc = acc.wrapping_mul(0x1656_6791_9E37_79F9);
        acc ^ (acc >> 32)
    }

    /// [`Self::hash_dyn`] with the window length known at compile time.
    #[inline(always)]
    fn hash<const N: usize>(&self, w: &[u64]) -> u64 {
        let w: &[u64; N] = w.try_into().expect("window of N tokens");
        self.hash_dyn(w)
    }
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

/// Number of bucket rounds before the per-coordinate fallback (see [`MinHasher`]).
const ROUNDS: usize = 4;
/// Signature values are `tag << TAG_SHIFT | 29-bit value`; tag = round, or `ROUNDS` for
/// the fallback. Lower tags win, so an earlier round always beats a later one.
const TAG_SHIFT: u32 = 29;
/// Tag of fallback values (`ROUNDS << TAG_SHIFT`).
const FALLBACK: u32 = (ROUNDS as u32) << TAG_SHIFT;
/// Shingles per block: bucket indices and values of a block are computed in one
/// vectorised pass, then applied by a scalar scatter.
const BLOCK: usize = 64;

/// Computes MinHash signatures with `num_perm` coordinates (a bucketed MinHash sketch).
///
/// # Definition (`SIGNATURE_VERSION` 2)
/// Let `y = fold32(x) = (x ^ x >> 32) mod 2^32` for a shingle `x` and
/// `p(a, b, y) = h ^ h >> 16` with `h = a·y + b mod 2^32` (odd `a`: a bijection of `u32`).
/// Every shingle gives coordinate `j` a *priority* `g_j(x)`, and
/// `sig[j] = min over shingles x of g_j(x)`:
/// * **Bucket rounds** `r = 0..4`: with round constants `(c_r, d_r)`, `u = p(c_r, d_r, y)`
///   and its fast-range product `q = u · num_perm` (64-bit), round `r` sends `x` to the one
///   bucket `j = q >> 32` with value `r << 29 | (q mod 2^32) >> 3`.
/// * **Fallback**: `4 << 29 | p(a_j, b_j, y) >> 3` for every `j` (per-coordinate constants).
///
/// `g_j(x)` is the smallest of the values `x` gives to `j` (round tags dominate). Each
/// coordinate is therefore a min-hash over the shingle set: for two sets, `P[sig_A[j] ==
/// sig_B[j]]` is their Jaccard similarity (the argmin over `A ∪ B` is uniform by symmetry),
/// and the signature of a union is the coordinatewise minimum, which is what a
/// multi-machine mode needs. The construction follows *Fast Similarity Sketching*
/// (Dahlgaard, Knudsen, Thorup, FOCS 2017): a shingle costs one hash per round instead of
/// one per coordinate, and a set of `n` shingles fills all `k` coordinates after about
/// `k·ln(k)/n` rounds. All constants are drawn from `seed` by [`SplitMix64`].
///
/// # Computation
/// Rounds run in order over all shingles (in pairs for small sets); after each batch of
/// rounds, if every coordinate already holds a value from a round so far, later rounds and
/// the fallback cannot lower any minimum and are skipped. Coordinates still empty after the
/// rounds get their fallback minimum, one coordinate at a time when few are missing, else
/// for all coordinates at once. Bucket indices and values are computed 64 shingles at a
/// time in a loop that compiles to SIMD; it and the fallback kernel are built for AVX-512,
/// AVX2 and the baseline and picked at run time, with the same integer arithmetic
/// (bit-identical, tested). Whatever path runs, the result is the definition above;
/// duplicate shingles do not change it.
#[derive(Debug, Clone)]
pub struct MinHasher {
    a: Vec<u32>,
    b: Vec<u32>,
    c: [u32; ROUNDS],
    d: [u32; ROUNDS],
    seed: u64,
}

/// The CPU features a kernel was compiled for, detected once per call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Isa {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    #[inline]
    fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }
}

impl MinHasher {
    /// `num_perm` coordinates (at least 1) drawn from `seed`.
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
        let mut c = [0u32; ROUNDS];
        let mut d = [0u32; ROUNDS];
        for r in 0..ROUNDS {
            let x = rng.next_u64();
            c[r] = (x as u32) | 1;
            d[r] = (x >> 32) as u32;
        }
        MinHasher { a, b, c, d, seed }
    }

    /// Number of coordinates (signature length).
    pub fn num_perm(&self) -> usize {
        self.a.len()
    }

    /// The seed this hasher was built with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Write the signature of a shingle set into `sig` (length must be `num_perm`).
    /// An empty set gives all `u32::MAX`. Order and repeats of `shingles` do not matter.
    pub fn signature(&self, shingles: &[u64], sig: &mut [u32]) {
        self.signature_isa(Isa::detect(), shingles, sig)
    }

    fn signature_isa(&self, isa: Isa, shingles: &[u64], sig: &mut [u32]) {
        assert_eq!(
            sig.len(),
            self.a.len(),
            "signature buffer length must equal num_perm"
        );
        assert!(
            sig.len() <= u32::MAX as usize,
            "num_perm must be below 2^32"
        );
        sig.fill(u32::MAX);
        if shingles.is_empty() {
            return;
        }
        // Rounds per pass: one while a single round is likely to fill every coordinate
        // (n ≥ 6k leaves k·e^-6 ≈ 0.3 empty for k = 128), else two.
        let step = if shingles.len() >= 6 * sig.len() {
            1
        } else {
            2
        };
        let mut r = 0;
        while r < ROUNDS {
            let end = (r + step).min(ROUNDS);
            rounds_dispatch(isa, &self.c[r..end], &self.d[r..end], r, shingles, sig);
            r = end;
            let next = (r as u32) << TAG_SHIFT;
            if sig.iter().fold(0, |acc, &v| acc.max(v)) < next {
                return;
            }
        }
        self.fallback(isa, shingles, sig);
    }

    /// Fallback minima for the coordinates no round reached (`u32::MAX`).
    fn fallback(&self, isa: Isa, shingles: &[u64], sig: &mut [u32]) {
        let missing = sig.iter().filter(|&&v| v == u32::MAX).count();
        if missing * 8 <= sig.len() {
            for (j, s) in sig.iter_mut().enumerate() {
                if *s == u32::MAX {
                    let (aj, bj) = (self.a[j], self.b[j]);
                    let m = shingles
                        .iter()
                        .fold(u32::MAX, |m, &x| m.min(perm32(aj, bj, fold32(x))));
                    *s = FALLBACK | (m >> (32 - TAG_SHIFT));
                }
            }
            return;
        }
        let mut stack = [0u32; 256];
        let mut heap = Vec::new();
        let full: &mut [u32] = if sig.len() <= stack.len() {
            &mut stack[..sig.len()]
        } else {
            heap.resize(sig.len(), 0);
            &mut heap
        };
        permutation_dispatch(isa, &self.a, &self.b, shingles, full);
        for (s, &f) in sig.iter_mut().zip(full.iter()) {
            *s = (*s).min(FALLBACK | (f >> (32 - TAG_SHIFT)));
        }
    }

    /// Allocate and return a signature.
    pub fn signature_vec(&self, shingles: &[u64]) -> Vec<u32> {
        let mut s = vec![0u32; self.a.len()];
        self.signature(shingles, &mut s);
        s
    }
}

#[inline(always)]
fn perm32(ai: u32, bi: u32, y: u32) -> u32 {
    let h = ai.wrapping_mul(y).wrapping_add(bi);
    h ^ (h >> 16)
}

#[inline(always)]
fn fold32(x: u64) -> u32 {
    (x ^ (x >> 32)) as u32
}

fn rounds_dispatch(isa: Isa, c: &[u32], d: &[u32], first: usize, xs: &[u64], sig: &mut [u32]) {
    match isa {
        // SAFETY: `Isa::detect` saw the features these functions are compiled for.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { rounds_avx512(c, d, first, xs, sig) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { rounds_avx2(c, d, first, xs, sig) },
        Isa::Baseline => rounds_kernel(c, d, first, xs, sig),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2")]
unsafe fn rounds_avx512(c: &[u32], d: &[u32], first: usize, xs: &[u64], sig: &mut [u32]) {
    rounds_kernel(c, d, first, xs, sig)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rounds_avx2(c: &[u32], d: &[u32], first: usize, xs: &[u64], sig: &mut [u32]) {
    rounds_kernel(c, d, first, xs, sig)
}

/// Bucket rounds `first .. first + c.len()` over all shingles, lowering `sig` in place.
#[inline(always)]
fn rounds_kernel(c: &[u32], d: &[u32], first: usize, xs: &[u64], sig: &mut [u32]) {
    // `k < 2^32` (checked by `signature_isa`); going through `u32` lets the widening
    // multiply below compile to a 32×32→64 lane multiply.
    let k = sig.len() as u32 as u64;
    let mut ys = [0u32; BLOCK];
    let mut js = [0u32; BLOCK];
    let mut vs = [0u32; BLOCK];
    for block in xs.chunks(BLOCK) {
        let ys = &mut ys[..block.len()];
        for (y, &x) in ys.iter_mut().zip(block) {
            *y = fold32(x);
        }
        for (i, (&ci, &di)) in c.iter().zip(d).enumerate() {
            let tag = ((first + i) as u32) << TAG_SHIFT;
            // Vectorised: bucket index and tagged value of every shingle of the block.
            for ((j, v), &y) in js.iter_mut().zip(vs.iter_mut()).zip(ys.iter()) {
                let q = perm32(ci, di, y) as u64 * k;
                *j = (q >> 32) as u32;
                *v = tag | ((q as u32) >> (32 - TAG_SHIFT));
            }
            // Scalar scatter. `j = u·k >> 32 < k = sig.len()` for any `u < 2^32`, so
            // `get_mut` never misses; it only spares an unchecked index.
            for (&j, &v) in js[..ys.len()].iter().zip(&vs[..ys.len()]) {
                if let Some(s) = sig.get_mut(j as usize) {
                    *s = (*s).min(v);
                }
            }
        }
    }
}

/// `out[i] = min_x perm32(a_i, b_i, fold32(x))` for every coordinate.
fn permutation_dispatch(isa: Isa, a: &[u32], b: &[u32], xs: &[u64], out: &mut [u32]) {
    match isa {
        // SAFETY: `Isa::detect` saw the features these functions are compiled for.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { permutation_avx512(a, b, xs, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { permutation_avx2(a, b, xs, out) },
        Isa::Baseline => permutation_kernel(a, b, xs, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2")]
unsafe fn permutation_avx512(a: &[u32], b: &[u32], xs: &[u64], out: &mut [u32]) {
    permutation_kernel(a, b, xs, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn permutation_avx2(a: &[u32], b: &[u32], xs: &[u64], out: &mut [u32]) {
    permutation_kernel(a, b, xs, out)
}

/// The fallback permutations for all coordinates; four shingles per pass over the
/// constants reuse each `a_i`/`b_i` load, and the inner loop vectorises over 32-bit lanes.
#[inline(always)]
fn permutation_kernel(a: &[u32], b: &[u32], xs: &[u64], out: &mut [u32]) {
    out.fill(u32::MAX);
    let n = out.len().min(a.len()).min(b.len());
    let (a, b, out) = (&a[..n], &b[..n], &mut out[..n]);
    let mut chunks = xs.chunks_exact(4);
    for c in &mut chunks {
        let (x0, x1, x2, x3) = (fold32(c[0]), fold32(c[1]), fold32(c[2]), fold32(c[3]));
        for i in 0..n {
            let (ai, bi) = (a[i], b[i]);
            let m = perm32(ai, bi, x0)
                .min(perm32(ai, bi, x1))
                .min(perm32(ai, bi, x2).min(perm32(ai, bi, x3)));
            out[i] = out[i].min(m);
        }
    }
    for &x in chunks.remainder() {
        let y = fold32(x);
        for i in 0..n {
            out[i] = out[i].min(perm32(a[i], b[i], y));
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

/// Estimated containment of the smaller shingle set in the larger, `|A ∩ B| / min(|A|, |B|)`,
/// from an estimated Jaccard `j` and the exact set sizes: `|A ∩ B| = j·(|A| + |B|) / (1 + j)`
/// (from `j = |A ∩ B| / (|A| + |B| − |A ∩ B|)`). Clamped to `[0, 1]`; 0 when a set is empty.
///
/// A copy whose tail was cut, or an original that a repost wrapped in extra lines, has a
/// Jaccard well below its containment: a 50 % cut has Jaccard 0.5 and containment 1.
pub fn estimate_containment(j: f64, size_a: u32, size_b: u32) -> f64 {
    let small = size_a.min(size_b);
    if small == 0 || j <= 0.0 {
        return 0.0;
    }
    let inter = j * (size_a as f64 + size_b as f64) / (1.0 + j);
    (inter / small as f64).min(1.0)
}

/// Exact Jaccard similarity of two sorted, deduplicated shingle sets. Two empty sets: 0.
pub fn exact_jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 0.0;
    }
    let inter = exact_intersection(a, b);
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// Exact containment `|A ∩ B| / min(|A|, |B|)` of two sorted, deduplicated shingle sets
/// (0 when one is empty).
pub fn exact_containment(a: &[u64], b: &[u64]) -> f64 {
    let small = a.len().min(b.len());
    if small == 0 {
        return 0.0;
    }
    exact_intersection(a, b) as f64 / small as f64
}

/// `|A ∩ B|` of two sorted, deduplicated sets.
fn exact_intersection(a: &[u64], b: &[u64]) -> usize {
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
    inter
}

/// True when at least 5 % of the letters and digits are CJK ideographs / kana / hangul
/// (used to pick chars mode for documents without a language tag). Looks at the first
/// 2,000 characters only.
///
/// The bar is low on purpose: a Chinese exam sheet full of formulas (`$y^{2}=3 x$`) has
/// only 10–30 % CJK, and a copy of it with a few Chinese source lines added must land in
/// the same mode as the original, or the two are never compared. Whitespace words suit
/// only text that has (almost) no CJK.
pub fn looks_cjk(text: &str) -> bool {
    let (mut cjk, mut alnum) = (0usize, 0usize);
    for c in text.chars().take(LOOKS_CJK_CHARS) {
        if ('\u{4E00}'..='\u{9FFF}').contains(&c) {
            // CJK Unified Ideographs: alphanumeric and CJK (the common case, no lookup).
            alnum += 1;
            cjk += 1;
        } else if is_alphanumeric(c) {
            alnum += 1;
            if is_cjk_letter(c) {
                cjk += 1;
            }
        }
    }
    alnum > 0 && cjk * 20 >= alnum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_tokens_and_the_alnum_table_equal_the_two_pass_path() {
        // `auto_tokens` must pick the mode `looks_cjk` picks and give the tokens `tokens`
        // gives, including past the 2,000 characters `looks_cjk` reads.
        let long_zh = "中文维基百科，自由的百科全书。".repeat(200);
        let latin_then_zh = format!("{}{}", "Ab1 ".repeat(600), "中文".repeat(500));
        let few_cjk = format!("{} 中", "word ".repeat(100));
        let texts = [
            "",
            "。，！",
            "中文，维基 ABC",
            "The Quick brown fox, ÉTÉ naïve ß İ",
            "数学 $f(x)=x^{4}-2 x^{3}$ 的图像 ① ② Ⅻ ０１２ ＡＢＣ ｶﾀｶﾅ ひらがな 한국어 々〆〇",
            "emoji 😀 𠀀𪚥 text",
            long_zh.as_str(),
            latin_then_zh.as_str(),
            few_cjk.as_str(),
        ];
        for t in texts {
            let want_mode = if looks_cjk(t) {
                ShingleMode::Chars
            } else {
                ShingleMode::Whitespace
            };
            let mut want = Vec::new();
            tokens(t, None, want_mode, 9, &mut want);
            let mut got = Vec::new();
            assert_eq!(auto_tokens(t, 9, &mut got), want_mode, "{t:.40}");
            assert_eq!(got, want, "{t:.40}");
        }
        // The cached table answers exactly as `char::is_alphanumeric`, over the whole BMP.
        for cp in 0..=0xFFFFu32 {
            if let Some(c) = char::from_u32(cp) {
                assert_eq!(is_alphanumeric(c), c.is_alphanumeric(), "U+{cp:04X}");
            }
        }
    }

    #[test]
    fn window_hash_equals_xxh3_of_the_token_bytes() {
        // The word-level xxh3 path must give exactly `xxh3_64_with_seed` of the bytes for
        // every window length it serves (3..=16 tokens) and seed, or shingles (and every
        // signature) would change.
        let mut rng = SplitMix64(42);
        for seed in [0u64, 1, 7, u64::MAX, rng.next_u64()] {
            for n in 1..=20usize {
                let toks: Vec<u64> = (0..n + 30)
                    .map(|i| match i % 3 {
                        0 => rng.below(0x9FFF),
                        1 => rng.next_u64(),
                        _ => rng.below(128),
                    })
                    .collect();
                let mut fast = Vec::new();
                shingles(&toks, n, seed, &mut fast);
                let bytes: Vec<u8> = toks.iter().flat_map(|t| t.to_le_bytes()).collect();
                let mut slow: Vec<u64> = (0..=toks.len() - n)
                    .map(|i| xxh3_64_with_seed(&bytes[i * 8..(i + n) * 8], seed))
                    .collect();
                slow.sort_unstable();
                slow.dedup();
                assert_eq!(fast, slow, "n = {n}, seed = {seed}");
                let k = WindowKeys::new(seed);
                if (3..=16).contains(&n) {
                    assert_eq!(
                        k.hash_dyn(&toks[..n]),
                        xxh3_64_with_seed(&bytes[..n * 8], seed)
                    );
                }
            }
        }
    }

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
    fn ascii_whitespace_fast_path_equals_the_general_path() {
        // The general path (split_whitespace on chars) is what the fast path must reproduce;
        // a trailing non-ASCII char forces the general path on the same words.
        let texts = [
            "Hello, World!  again\tand\nagain\x0bvt\x0cff\rcr \x1cfs-sep",
            "(quoted) \"Words\" -- 42 ... ALLCAPS MiXeD don't e-mail",
            "a-very-long-WORD-that-is-longer-than-sixty-four-bytes-to-hit-the-heap-path-XYZ",
            "   ",
            "",
        ];
        for t in texts {
            let mut fast = Vec::new();
            tokens(t, None, ShingleMode::Whitespace, 9, &mut fast);
            let mut general = Vec::new();
            let mut buf = String::new();
            for w in t.split_whitespace() {
                let w = w.trim_matches(|c: char| c.is_ascii_punctuation());
                if w.chars().any(char::is_alphanumeric) {
                    general.push(hash_word(w, 9, &mut buf));
                }
            }
            assert_eq!(fast, general, "{t:?}");
            let mut with_cjk = Vec::new();
            tokens(
                &format!("{t} 中"),
                None,
                ShingleMode::Whitespace,
                9,
                &mut with_cjk,
            );
            assert_eq!(&with_cjk[..fast.len()], &fast[..], "{t:?}");
        }
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
        // The run-time dispatched SIMD path equals the portable build bit for bit.
        let mut portable = vec![0u32; 256];
        h.signature_isa(Isa::Baseline, &a, &mut portable);
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

    /// The definition in [`MinHasher`]'s docs, evaluated literally: every shingle's priority
    /// for every coordinate, no early exit, no blocks, no SIMD.
    fn reference_signature(h: &MinHasher, xs: &[u64]) -> Vec<u32> {
        let k = h.num_perm();
        let mut sig = vec![u32::MAX; k];
        for &x in xs {
            let y = fold32(x);
            for (j, s) in sig.iter_mut().enumerate() {
                let mut g = FALLBACK | (perm32(h.a[j], h.b[j], y) >> 3);
                for r in 0..ROUNDS {
                    let q = perm32(h.c[r], h.d[r], y) as u64 * k as u64;
                    if (q >> 32) as usize == j {
                        g = g.min(((r as u32) << 29) | ((q as u32) >> 3));
                    }
                }
                *s = (*s).min(g);
            }
        }
        sig
    }

    #[test]
    fn signature_matches_the_definition_on_every_path() {
        let mut rng = SplitMix64(99);
        // Sizes cover: full fallback kernel (few shingles), per-coordinate fallback,
        // two-round passes, one-round passes, partial blocks; k not a power of two too.
        for &k in &[128usize, 100, 7, 1] {
            let h = MinHasher::new(k, 5);
            for &n in &[1usize, 3, 40, 130, 250, 433, 777, 1000] {
                let xs: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
                let want = reference_signature(&h, &xs);
                assert_eq!(h.signature_vec(&xs), want, "k={k} n={n} dispatched");
                let mut base = vec![0u32; k];
                h.signature_isa(Isa::Baseline, &xs, &mut base);
                assert_eq!(base, want, "k={k} n={n} baseline");
                // Repeats and order do not matter.
                let mut twice: Vec<u64> = xs.iter().rev().copied().collect();
                twice.extend_from_slice(&xs);
                assert_eq!(h.signature_vec(&twice), want, "k={k} n={n} repeated");
            }
        }
        // Structured input (small integers) still fills every coordinate correctly.
        let h = MinHasher::new(128, 5);
        let xs: Vec<u64> = (0..300).collect();
        assert_eq!(h.signature_vec(&xs), reference_signature(&h, &xs));
    }

    #[test]
    fn signature_of_a_union_is_the_coordinatewise_minimum() {
        let h = MinHasher::new(128, 11);
        let mut rng = SplitMix64(3);
        let a: Vec<u64> = (0..200).map(|_| rng.next_u64()).collect();
        let b: Vec<u64> = (0..60).map(|_| rng.next_u64()).collect();
        let (sa, sb) = (h.signature_vec(&a), h.signature_vec(&b));
        let ab: Vec<u64> = a.iter().chain(&b).copied().collect();
        let min: Vec<u32> = sa.iter().zip(&sb).map(|(x, y)| *x.min(y)).collect();
        assert_eq!(h.signature_vec(&ab), min);
    }

    #[test]
    fn jaccard_estimate_is_unbiased_over_seeds() {
        // J = 300 / 500 = 0.6; the mean estimate over 40 seeds (128 coordinates each) must
        // be within 0.02 of it (the standard error is about 0.007).
        let mut rng = SplitMix64(17);
        let common: Vec<u64> = (0..300).map(|_| rng.next_u64()).collect();
        let mut a = common.clone();
        let mut b = common;
        a.extend((0..100).map(|_| rng.next_u64()));
        b.extend((0..100).map(|_| rng.next_u64()));
        let mean = (0..40u64)
            .map(|seed| {
                let h = MinHasher::new(128, seed);
                estimate_jaccard(&h.signature_vec(&a), &h.signature_vec(&b))
            })
            .sum::<f64>()
            / 40.0;
        assert!((mean - 0.6).abs() < 0.02, "mean estimate {mean}");
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
        // A formula-heavy exam item is CJK text; an English sentence with one Chinese name
        // is not.
        assert!(looks_cjk(
            "10. (5 分) 设 $F$ 为抛物线 $C: y^{2}=3 x$ 的焦点，过 $F$ 且倾斜角为 $30^{\\circ}$ 的直线交 $C$ 于 $A, B$ 两点，则 $|A B|=$"
        ));
        assert!(!looks_cjk(
            "The museum was founded by Zhang Wei (张伟) in 1998 and has since grown into one of the largest collections of bronze age artefacts in the region."
        ));
    }

    #[test]
    fn containment_of_a_cut_copy_is_one_and_its_estimate_follows_jaccard() {
        // The first half of a text: Jaccard ≈ 0.5, containment exactly 1.
        let full = "北京大学是中国近代第一所国立综合性大学，创建于1898年，初名京师大学堂，是中国近代最早以大学身份和名称建立的学校。";
        let half: String = full.chars().take(full.chars().count() / 2).collect();
        let sf = text_shingles(full, None, ShingleMode::Chars, 5, 1);
        let sh = text_shingles(&half, None, ShingleMode::Chars, 5, 1);
        let j = exact_jaccard(&sf, &sh);
        assert!(j < 0.5, "{j}");
        assert_eq!(exact_containment(&sf, &sh), 1.0);
        assert_eq!(exact_containment(&sh, &sf), 1.0);
        // The estimate from the exact Jaccard and sizes gives the exact containment back.
        let c = estimate_containment(j, sf.len() as u32, sh.len() as u32);
        assert!((c - 1.0).abs() < 1e-9, "{c}");
        // Equal sizes: containment = 2j / (1 + j); no overlap or an empty set: 0.
        assert!((estimate_containment(0.5, 100, 100) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(estimate_containment(0.0, 100, 10), 0.0);
        assert_eq!(estimate_containment(0.9, 0, 10), 0.0);
        assert_eq!(exact_containment(&[], &sf), 0.0);
        // Never above 1, even for an estimate that overshoots.
        assert_eq!(estimate_containment(0.9, 100, 10), 1.0);
    }
}
