//! The measurements behind `heuristic_filter`, as pure functions over text and words.
//!
//! Definitions follow the published filters so thresholds carry over:
//! * Gopher quality and repetition (Rae et al. 2021) as implemented by datatrove's
//!   `GopherQualityFilter` / `GopherRepetitionFilter` (the FineWeb-2 thresholds were tuned
//!   against those exact formulas, e.g. top n-gram length counts the joining spaces);
//! * FineWeb quality (`FineWebQualityFilter`);
//! * C4 line rules (javascript / cookie / policy lines, lorem ipsum);
//! * ChineseWebText-style character n-gram repetition and CJK character share;
//! * ROOTS-style flagged-word ratio.
//!
//! Lengths are in Unicode scalar values, as Python's `len` counts them.

use std::collections::HashSet;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::stages::segment_zh::is_han;

/// Fixed seed for every hash here (determinism; the value is arbitrary).
const SEED: u64 = 0x5151_1CE0_2026_0004;

/// Punctuation and symbols: ASCII punctuation, Latin-1 punctuation, general punctuation,
/// CJK symbols and punctuation, full-width ASCII punctuation, and common symbol blocks.
/// Stands in for datatrove's `PUNCTUATION_SET` (Unicode P* and S* categories).
#[inline]
pub fn is_punct(c: char) -> bool {
    let u = c as u32;
    c.is_ascii_punctuation()
        || matches!(u,
            0xA1..=0xBF | 0xD7 | 0xF7 | 0x2010..=0x2027 | 0x2030..=0x205E | 0x2190..=0x23FF
            | 0x2500..=0x27BF | 0x3000..=0x303F | 0x30FB | 0xFE10..=0xFE6B | 0xFF01..=0xFF0F
            | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65 | 0xFFE0..=0xFFEE)
}

/// Whether a word has at least one character that is not punctuation (Gopher's
/// "non-symbol word").
#[inline]
pub fn is_non_symbol_word(w: &str) -> bool {
    w.chars().any(|c| !is_punct(c))
}

/// Number of chars in a string.
#[inline]
pub fn nchars(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

/// `(duplicate elements, chars in duplicate elements)` over a sequence, first occurrence
/// not counted (datatrove `find_duplicates`).
pub fn find_duplicates<'a>(items: impl Iterator<Item = &'a str>) -> (usize, usize) {
    let mut seen: HashSet<&str> = HashSet::new();
    let (mut n, mut chars) = (0, 0);
    for it in items {
        if !seen.insert(it) {
            n += 1;
            chars += nchars(it);
        }
    }
    (n, chars)
}

/// In a sorted vector, keep one copy of each value whose run length passes `keep`.
fn keep_runs(sorted: &mut Vec<u64>, keep: impl Fn(usize) -> bool) {
    let mut w = 0;
    let mut r = 0;
    while r < sorted.len() {
        let k = sorted[r];
        let run = sorted[r..].iter().take_while(|&&x| x == k).count();
        if keep(run) {
            sorted[w] = k;
            w += 1;
        }
        r += run;
    }
    sorted.truncate(w);
}

/// Per-word hashes and char lengths, computed once for all n-gram rules.
pub struct WordStats {
    /// xxh3 of each word's bytes.
    pub hashes: Vec<u64>,
    /// Char length of each word.
    pub lens: Vec<u32>,
}

impl WordStats {
    /// Hash and measure every word.
    pub fn new<'a>(words: impl Iterator<Item = &'a str>) -> Self {
        let n = words.size_hint().0;
        let (mut hashes, mut lens) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for w in words {
            hashes.push(xxh3_64_with_seed(w.as_bytes(), SEED));
            lens.push(nchars(w) as u32);
        }
        WordStats { hashes, lens }
    }

    #[inline]
    fn gram_key(&self, i: usize, n: usize) -> u64 {
        // Order-sensitive combination of word hashes (a polynomial hash over 64-bit words).
        let mut h: u64 = n as u64;
        for &x in &self.hashes[i..i + n] {
            h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) ^ x;
        }
        h
    }

    #[inline]
    fn gram_chars(&self, i: usize, n: usize) -> usize {
        self.lens[i..i + n].iter().map(|&l| l as usize).sum()
    }

    /// Gopher "top n-gram": chars of the most frequent word n-gram (words joined by a
    /// space, as datatrove does) times its count. Ties go to the earliest n-gram. `None`
    /// when there are fewer than `n` words.
    pub fn top_ngram_chars(&self, n: usize) -> Option<usize> {
        let m = self.hashes.len();
        if m < n || n == 0 {
            return None;
        }
        // Sorted keys instead of a hash map of counts: 8 bytes per word, not ~32.
        let mut keys: Vec<u64> = (0..=m - n).map(|i| self.gram_key(i, n)).collect();
        keys.sort_unstable();
        let best = keys.chunk_by(|a, b| a == b).map(<[u64]>::len).max()?;
        // The keys that reach the top count, then the earliest n-gram with one of them.
        keep_runs(&mut keys, |run| run == best);
        let first = (0..=m - n).find(|&i| keys.binary_search(&self.gram_key(i, n)).is_ok())?;
        Some((self.gram_chars(first, n) + n - 1) * best)
    }

    /// Gopher "duplicate n-grams": chars (words joined without space) inside repeated
    /// word n-grams, skipping past each repeat (datatrove `find_all_duplicate`).
    pub fn dup_ngram_chars(&self, n: usize) -> usize {
        let m = self.hashes.len();
        if m < n || n == 0 {
            return 0;
        }
        let mut seen: HashSet<u64> = HashSet::with_capacity(m);
        let (mut rep, mut i) = (0usize, 0usize);
        while i + n <= m {
            if seen.insert(self.gram_key(i, n)) {
                i += 1;
            } else {
                rep += self.gram_chars(i, n);
                i += n;
            }
        }
        rep
    }
}

/// Share of characters covered by a character `n`-gram that occurs more than once
/// (ChineseWebText-style repetition), over all non-whitespace characters.
pub fn char_ngram_repetition(text: &str, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    // Two streaming passes over the windows of `n` non-whitespace characters (hashed from
    // a small rolling buffer, whitespace between them ignored): the first collects the
    // window hashes, sorted, and keeps those seen more than once; the second marks the
    // characters such windows cover. 8 bytes per character at most, where a hash map of
    // counts plus offset tables cost ~60.
    let windows = |f: &mut dyn FnMut(u64)| {
        let mut buf = String::with_capacity(4 * n);
        let mut lens: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
        for c in text.chars().filter(|c| !c.is_whitespace()) {
            buf.push(c);
            lens.push_back(c.len_utf8());
            if lens.len() > n {
                let l = lens.pop_front().unwrap_or(0);
                buf.drain(..l);
            }
            if lens.len() == n {
                f(xxh3_64_with_seed(buf.as_bytes(), SEED));
            }
        }
    };
    let m = text.chars().filter(|c| !c.is_whitespace()).count();
    if m < n {
        return 0.0;
    }
    let mut keys: Vec<u64> = Vec::with_capacity(m - n + 1);
    windows(&mut |k| keys.push(k));
    keys.sort_unstable();
    keep_runs(&mut keys, |run| run > 1);
    // Window i covers chars i..i+n; count the chars under at least one repeated window.
    let (mut i, mut covered_until, mut covered) = (0usize, 0usize, 0usize);
    windows(&mut |k| {
        if keys.binary_search(&k).is_ok() {
            covered_until = i + n;
        }
        if i < covered_until {
            covered += 1;
        }
        i += 1;
    });
    // The last n-1 chars start no window.
    covered += covered_until.saturating_sub(i);
    covered as f64 / m as f64
}

/// Share of non-whitespace characters that are Han ideographs.
pub fn cjk_share(text: &str) -> f64 {
    let (mut han, mut all) = (0usize, 0usize);
    for c in text.chars() {
        if c.is_whitespace() {
            continue;
        }
        all += 1;
        if is_han(c) {
            han += 1;
        }
    }
    if all == 0 {
        0.0
    } else {
        han as f64 / all as f64
    }
}

/// C4 line rules: a line is "bad" when it mentions javascript or is a cookie / policy
/// boilerplate line (English phrases from C4 plus their Chinese equivalents).
pub fn is_c4_bad_line(line: &str) -> bool {
    const PHRASES: &[&str] = &[
        "javascript",
        "terms of use",
        "privacy policy",
        "cookie policy",
        "uses cookies",
        "use of cookies",
        "use cookies",
        "隐私政策",
        "隐私条款",
        "隐私声明",
        "使用条款",
        "服务条款",
        "免责声明",
        "使用cookie",
        "cookie政策",
        "启用javascript",
    ];
    let lower = line.to_lowercase();
    PHRASES.iter().any(|p| lower.contains(p))
}

/// Whether the text contains "lorem ipsum" (C4 drops such pages outright).
pub fn has_lorem_ipsum(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .windows(11)
        .any(|w| w.eq_ignore_ascii_case(b"lorem ipsum"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_count_after_first() {
        assert_eq!(
            find_duplicates(["甲乙", "丙", "甲乙", "甲乙"].into_iter()),
            (2, 4)
        );
    }

    #[test]
    fn ngrams_match_datatrove_definitions() {
        let w = ["我", "爱", "北京", "我", "爱", "北京", "天安门"];
        let s = WordStats::new(w.iter().copied());
        // "我 爱" occurs twice: (1+1+1 space) * 2 = 6.
        assert_eq!(s.top_ngram_chars(2), Some(6));
        // 3-grams: "我爱北京" seen at 0 and 3 → repeat at 3 counts 4 chars, skip to 6.
        assert_eq!(s.dup_ngram_chars(3), 4);
        assert_eq!(s.top_ngram_chars(8), None);
        assert_eq!(s.dup_ngram_chars(8), 0);
    }

    #[test]
    fn char_13gram_repetition_on_real_strings() {
        let clean = "北京是中华人民共和国的首都，是全国的政治中心、文化中心，是世界著名古都和现代化国际城市。";
        assert_eq!(char_ngram_repetition(clean, 13), 0.0);
        let spam = "香港最快开奖现场直播结果查询。".repeat(4);
        assert_eq!(char_ngram_repetition(&spam, 13), 1.0);
        let half = format!("{clean}{}", "香港最快开奖现场直播结果查询。".repeat(2));
        let r = char_ngram_repetition(&half, 13);
        assert!(r > 0.3 && r < 0.5, "{r}");
    }

    #[test]
    fn cjk_share_and_punct() {
        assert_eq!(cjk_share("中文 ab"), 0.5);
        assert!(
            is_punct('。') && is_punct('，') && is_punct('！') && is_punct('…') && is_punct('#')
        );
        assert!(!is_punct('中') && !is_punct('a') && !is_punct('1'));
        assert!(!is_non_symbol_word("。。"));
        assert!(is_non_symbol_word("中。"));
    }

    #[test]
    fn c4_lines() {
        assert!(is_c4_bad_line("请启用JavaScript以获得最佳体验"));
        assert!(is_c4_bad_line("本网站使用Cookie。查看隐私政策"));
        assert!(!is_c4_bad_line("北京是中华人民共和国的首都。"));
        assert!(has_lorem_ipsum("Lorem Ipsum dolor sit amet"));
        assert!(!has_lorem_ipsum("中文段落"));
    }
}
