//! Per-language thresholds: the config's overrides ([`LangParams`]) layered over built-in
//! defaults, resolved once at build time into concrete [`Rules`].
//!
//! Overrides are `Option`s on purpose: a user who sets one zh threshold keeps every other
//! built-in zh value, which a plain serde default (one value for all languages) could not do.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Every rule name, in evaluation order (the first failing one is the reject reason).
pub const RULE_NAMES: &[&str] = &[
    "chars",
    "cjk_share",
    "flagged_ratio",
    "flagged_distinct",
    "lorem_ipsum",
    "c4_bad_lines",
    "words",
    "avg_word_len",
    "hash_ratio",
    "ellipsis_ratio",
    "bullet_lines",
    "end_ellipsis_lines",
    "alpha_words",
    "stop_words",
    "dup_para_frac",
    "dup_para_char_frac",
    "dup_line_frac",
    "dup_line_char_frac",
    "top_n_gram",
    "dup_n_gram",
    "line_punct_ratio",
    "short_line_ratio",
    "char_dup_ratio",
    "newline_ratio",
    "char_ngram_rep",
];

/// Threshold overrides for one language. Every field is optional: unset fields keep the
/// built-in value for that language (Chinese defaults for `zh`, Gopher/FineWeb English
/// defaults for every other language).
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LangParams {
    /// Minimum length in characters. zh default 50; others 0.
    pub min_chars: Option<usize>,
    /// Maximum length in characters. Default 1,000,000.
    pub max_chars: Option<usize>,
    /// Minimum share (0–1) of non-whitespace characters that are Han. zh default 0.3; others off.
    pub min_cjk_share: Option<f64>,
    /// Maximum share (0–1) of characters inside flagged words (porn / gambling / ads lists).
    /// zh default 0.015; others off.
    pub max_flagged_ratio: Option<f64>,
    /// Maximum number of distinct flagged words. Catches long spam pages whose flagged words
    /// are diluted by filler text (e.g. lottery "poems"). zh default 6; others off.
    pub max_flagged_distinct: Option<usize>,
    /// The `max_flagged_distinct` limit holds per this many characters: a document of `n`
    /// characters may hold `max_flagged_distinct × ceil(n / flagged_distinct_chars)`
    /// distinct flagged words, so a book is not rejected for the words any long clean text
    /// collects. Default 20,000 (above nearly every web page, where the limit is unchanged).
    pub flagged_distinct_chars: Option<usize>,
    /// Maximum share (0–1) of lines that are C4 javascript / cookie / policy lines. Default 0.3.
    pub max_c4_bad_line_ratio: Option<f64>,
    /// Gopher: minimum number of non-symbol words. zh default 50; others 50.
    pub min_words: Option<usize>,
    /// Gopher: maximum number of non-symbol words. Default: off (Gopher's 100,000 rejects a
    /// book for its length alone; `max_chars` and `run.max_doc_bytes` bound the memory).
    pub max_words: Option<usize>,
    /// Gopher: minimum mean word length in characters. zh default 1.0; others 3.
    pub min_avg_word_len: Option<f64>,
    /// Gopher: maximum mean word length in characters. zh default 6; others 10.
    pub max_avg_word_len: Option<f64>,
    /// Gopher: maximum `#` count per word. Default 0.1.
    pub max_hash_ratio: Option<f64>,
    /// Gopher: maximum `...`/`…` count per word. Default 0.1.
    pub max_ellipsis_ratio: Option<f64>,
    /// Gopher: maximum share of lines starting with a bullet (`•`, `-`). Default 0.9.
    pub max_bullet_lines_ratio: Option<f64>,
    /// Gopher: maximum share of lines ending with `...`/`…`. Default 0.3.
    pub max_end_ellipsis_lines_ratio: Option<f64>,
    /// Gopher: minimum share of words with at least one alphabetic character (Han counts).
    /// zh default 0.5 (jieba emits punctuation and number tokens); others 0.8.
    pub min_alpha_words_ratio: Option<f64>,
    /// Gopher: minimum number of stopword occurrences. Default 2 where a stopword list
    /// exists (zh, en), else off.
    pub min_stop_words: Option<usize>,
    /// Gopher repetition: maximum share of duplicated paragraphs. Default 0.3.
    pub dup_para_frac: Option<f64>,
    /// Gopher repetition: maximum share of characters in duplicated paragraphs. Default 0.2.
    pub dup_para_char_frac: Option<f64>,
    /// Gopher repetition: maximum share of duplicated lines. zh default 0.287 (FineWeb-2
    /// cmn_Hani); others 0.3.
    pub dup_line_frac: Option<f64>,
    /// Gopher repetition: maximum share of characters in duplicated lines. Default 0.2.
    pub dup_line_char_frac: Option<f64>,
    /// Gopher repetition: n → maximum character share of the most frequent word n-gram.
    /// zh default {2: 0.256, 3: 0.201, 4: 0.171}; others {2: 0.2, 3: 0.18, 4: 0.16}.
    pub top_n_grams: Option<BTreeMap<usize, f64>>,
    /// Gopher repetition: n → maximum character share of repeated word n-grams.
    /// zh default {5: 0.198, 6: 0.182, 7: 0.167, 8: 0.154, 9: 0.14, 10: 0.127};
    /// others {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}.
    pub dup_n_grams: Option<BTreeMap<usize, f64>>,
    /// FineWeb: minimum share of lines ending in terminal punctuation. zh default 0.106
    /// (FineWeb-2 cmn_Hani); others 0.12.
    pub min_line_punct_ratio: Option<f64>,
    /// Line-share rules (`bullet_lines`, `end_ellipsis_lines`, `line_punct_ratio`,
    /// `short_line_ratio`) apply only to documents with at least this many non-empty lines:
    /// on a one- or two-line paragraph a share is 0 or 1 and says nothing. Default 3.
    pub min_lines_for_line_rules: Option<usize>,
    /// FineWeb: characters that count as line-end punctuation. zh default
    /// `。！？…．.!?"'”’」』）)` ; others `.?!"'`.
    pub line_end_punct: Option<String>,
    /// FineWeb: maximum share of short lines. Default 0.67.
    pub max_short_line_ratio: Option<f64>,
    /// FineWeb: a line this many characters or fewer is short. zh default 15; others 30.
    pub short_line_chars: Option<usize>,
    /// FineWeb: maximum share of characters in duplicated lines. zh default 0.1; others 0.01.
    pub max_char_dup_ratio: Option<f64>,
    /// FineWeb: maximum newlines per word. zh default 0.178; others 0.3.
    pub max_newline_ratio: Option<f64>,
    /// ChineseWebText: character n-gram size for the repetition rule. Default 13.
    pub char_ngram: Option<usize>,
    /// ChineseWebText: maximum share of characters inside repeated character n-grams.
    /// zh default 0.4; others off.
    pub max_char_ngram_rep: Option<f64>,
    /// Stopword list (one word a line) replacing the built-in one for this language.
    pub stopwords: Option<PathBuf>,
    /// Flagged-word lists (one word a line) replacing the built-in porn/gambling/ads lists.
    pub flagged_words: Option<Vec<PathBuf>>,
    /// Rules to switch off for this language, by name (see the module doc).
    #[serde(default)]
    pub disable: Vec<String>,
}

/// Resolved thresholds for one language. `None` means the rule is off.
#[derive(Debug, Clone)]
pub struct Rules {
    pub min_chars: usize,
    pub max_chars: usize,
    pub min_cjk_share: Option<f64>,
    pub max_flagged_ratio: Option<f64>,
    pub max_flagged_distinct: Option<usize>,
    pub flagged_distinct_chars: usize,
    pub lorem_ipsum: bool,
    pub max_c4_bad_line_ratio: Option<f64>,
    pub min_words: Option<usize>,
    pub max_words: Option<usize>,
    pub min_avg_word_len: Option<f64>,
    pub max_avg_word_len: Option<f64>,
    pub max_hash_ratio: Option<f64>,
    pub max_ellipsis_ratio: Option<f64>,
    pub max_bullet_lines_ratio: Option<f64>,
    pub max_end_ellipsis_lines_ratio: Option<f64>,
    pub min_alpha_words_ratio: Option<f64>,
    pub min_stop_words: Option<usize>,
    pub dup_para_frac: Option<f64>,
    pub dup_para_char_frac: Option<f64>,
    pub dup_line_frac: Option<f64>,
    pub dup_line_char_frac: Option<f64>,
    pub top_n_grams: BTreeMap<usize, f64>,
    pub dup_n_grams: BTreeMap<usize, f64>,
    pub min_line_punct_ratio: Option<f64>,
    pub min_lines_for_line_rules: usize,
    pub line_end_punct: Vec<char>,
    pub max_short_line_ratio: Option<f64>,
    pub short_line_chars: usize,
    pub max_char_dup_ratio: Option<f64>,
    pub max_newline_ratio: Option<f64>,
    pub char_ngram: usize,
    pub max_char_ngram_rep: Option<f64>,
}

impl Rules {
    /// Built-in Chinese defaults (FineWeb-2 `cmn_Hani` where it has a value).
    pub fn zh() -> Self {
        Rules {
            min_chars: 50,
            max_chars: 1_000_000,
            min_cjk_share: Some(0.3),
            max_flagged_ratio: Some(0.015),
            max_flagged_distinct: Some(6),
            flagged_distinct_chars: 20_000,
            lorem_ipsum: true,
            max_c4_bad_line_ratio: Some(0.3),
            min_words: Some(50),
            max_words: None,
            min_avg_word_len: Some(1.0),
            max_avg_word_len: Some(6.0),
            max_hash_ratio: Some(0.1),
            max_ellipsis_ratio: Some(0.1),
            max_bullet_lines_ratio: Some(0.9),
            max_end_ellipsis_lines_ratio: Some(0.3),
            min_alpha_words_ratio: Some(0.5),
            min_stop_words: Some(2),
            dup_para_frac: Some(0.3),
            dup_para_char_frac: Some(0.2),
            dup_line_frac: Some(0.287),
            dup_line_char_frac: Some(0.2),
            top_n_grams: BTreeMap::from([(2, 0.256), (3, 0.201), (4, 0.171)]),
            dup_n_grams: BTreeMap::from([
                (5, 0.198),
                (6, 0.182),
                (7, 0.167),
                (8, 0.154),
                (9, 0.14),
                (10, 0.127),
            ]),
            min_line_punct_ratio: Some(0.106),
            min_lines_for_line_rules: 3,
            line_end_punct: "。！？…．.!?\"'”’」』）)".chars().collect(),
            max_short_line_ratio: Some(0.67),
            short_line_chars: 15,
            max_char_dup_ratio: Some(0.1),
            max_newline_ratio: Some(0.178),
            char_ngram: 13,
            max_char_ngram_rep: Some(0.4),
        }
    }

    /// Built-in defaults for other languages (datatrove's Gopher and FineWeb defaults).
    pub fn generic(has_stopwords: bool) -> Self {
        Rules {
            min_chars: 0,
            max_chars: 1_000_000,
            min_cjk_share: None,
            max_flagged_ratio: None,
            max_flagged_distinct: None,
            flagged_distinct_chars: 20_000,
            lorem_ipsum: true,
            max_c4_bad_line_ratio: Some(0.3),
            min_words: Some(50),
            max_words: None,
            min_avg_word_len: Some(3.0),
            max_avg_word_len: Some(10.0),
            max_hash_ratio: Some(0.1),
            max_ellipsis_ratio: Some(0.1),
            max_bullet_lines_ratio: Some(0.9),
            max_end_ellipsis_lines_ratio: Some(0.3),
            min_alpha_words_ratio: Some(0.8),
            min_stop_words: has_stopwords.then_some(2),
            dup_para_frac: Some(0.3),
            dup_para_char_frac: Some(0.2),
            dup_line_frac: Some(0.3),
            dup_line_char_frac: Some(0.2),
            top_n_grams: BTreeMap::from([(2, 0.2), (3, 0.18), (4, 0.16)]),
            dup_n_grams: BTreeMap::from([
                (5, 0.15),
                (6, 0.14),
                (7, 0.13),
                (8, 0.12),
                (9, 0.11),
                (10, 0.10),
            ]),
            min_line_punct_ratio: Some(0.12),
            min_lines_for_line_rules: 3,
            line_end_punct: ".?!\"'".chars().collect(),
            max_short_line_ratio: Some(0.67),
            short_line_chars: 30,
            max_char_dup_ratio: Some(0.01),
            max_newline_ratio: Some(0.3),
            char_ngram: 13,
            max_char_ngram_rep: None,
        }
    }

    /// Apply overrides, then switch off the rules named in `disable`. Returns the problems
    /// (unknown rule names) found.
    pub fn apply(&mut self, p: &LangParams) -> Vec<String> {
        macro_rules! set {
            ($f:ident) => {
                if let Some(v) = p.$f {
                    self.$f = v;
                }
            };
        }
        macro_rules! set_opt {
            ($f:ident) => {
                if let Some(v) = p.$f {
                    self.$f = Some(v);
                }
            };
        }
        set!(min_chars);
        set!(max_chars);
        set!(flagged_distinct_chars);
        set_opt!(min_cjk_share);
        set_opt!(max_flagged_ratio);
        set_opt!(max_flagged_distinct);
        set_opt!(max_c4_bad_line_ratio);
        set_opt!(min_words);
        set_opt!(max_words);
        set_opt!(min_avg_word_len);
        set_opt!(max_avg_word_len);
        set_opt!(max_hash_ratio);
        set_opt!(max_ellipsis_ratio);
        set_opt!(max_bullet_lines_ratio);
        set_opt!(max_end_ellipsis_lines_ratio);
        set_opt!(min_alpha_words_ratio);
        set_opt!(min_stop_words);
        set_opt!(dup_para_frac);
        set_opt!(dup_para_char_frac);
        set_opt!(dup_line_frac);
        set_opt!(dup_line_char_frac);
        if let Some(m) = &p.top_n_grams {
            self.top_n_grams = m.clone();
        }
        if let Some(m) = &p.dup_n_grams {
            self.dup_n_grams = m.clone();
        }
        set_opt!(min_line_punct_ratio);
        set!(min_lines_for_line_rules);
        if let Some(s) = &p.line_end_punct {
            self.line_end_punct = s.chars().collect();
        }
        set_opt!(max_short_line_ratio);
        set!(short_line_chars);
        set_opt!(max_char_dup_ratio);
        set_opt!(max_newline_ratio);
        set!(char_ngram);
        set_opt!(max_char_ngram_rep);
        let mut problems = Vec::new();
        for d in &p.disable {
            match d.as_str() {
                "chars" => {
                    self.min_chars = 0;
                    self.max_chars = usize::MAX;
                }
                "cjk_share" => self.min_cjk_share = None,
                "flagged_ratio" => self.max_flagged_ratio = None,
                "flagged_distinct" => self.max_flagged_distinct = None,
                "lorem_ipsum" => self.lorem_ipsum = false,
                "c4_bad_lines" => self.max_c4_bad_line_ratio = None,
                "words" => {
                    self.min_words = None;
                    self.max_words = None;
                }
                "avg_word_len" => {
                    self.min_avg_word_len = None;
                    self.max_avg_word_len = None;
                }
                "hash_ratio" => self.max_hash_ratio = None,
                "ellipsis_ratio" => self.max_ellipsis_ratio = None,
                "bullet_lines" => self.max_bullet_lines_ratio = None,
                "end_ellipsis_lines" => self.max_end_ellipsis_lines_ratio = None,
                "alpha_words" => self.min_alpha_words_ratio = None,
                "stop_words" => self.min_stop_words = None,
                "dup_para_frac" => self.dup_para_frac = None,
                "dup_para_char_frac" => self.dup_para_char_frac = None,
                "dup_line_frac" => self.dup_line_frac = None,
                "dup_line_char_frac" => self.dup_line_char_frac = None,
                "top_n_gram" => self.top_n_grams.clear(),
                "dup_n_gram" => self.dup_n_grams.clear(),
                "line_punct_ratio" => self.min_line_punct_ratio = None,
                "short_line_ratio" => self.max_short_line_ratio = None,
                "char_dup_ratio" => self.max_char_dup_ratio = None,
                "newline_ratio" => self.max_newline_ratio = None,
                "char_ngram_rep" => self.max_char_ngram_rep = None,
                other => {
                    let names: Vec<String> = RULE_NAMES.iter().map(|s| s.to_string()).collect();
                    problems.push(match crate::graph::nearest(other, &names) {
                        Some(n) => format!("unknown rule \"{other}\" (did you mean \"{n}\"?)"),
                        None => format!("unknown rule \"{other}\"; rules: {}", names.join(", ")),
                    })
                }
            }
        }
        problems
    }
}
