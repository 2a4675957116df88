//! Per-language thresholds: the config's overrides ([`LangParams`]) layered over the
//! built-in defaults of the rule table ([`super::table::RULES`]), resolved once at build
//! time into concrete [`Rules`].
//!
//! Overrides are `Option`s on purpose: a user who sets one zh threshold keeps every other
//! built-in zh value, which a plain serde default (one value for all languages) could not do.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::table::{rule_index, Check, RULES};
use crate::stage::Checks;

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

/// Resolved rules for one language: one threshold per [`RULES`] limit (`None`: off) and the
/// settings the measurements use.
#[derive(Debug, Clone)]
pub struct Rules {
    /// `limits[i][j]` is limit `j` of rule `RULES[i]`.
    pub limits: Vec<Vec<Option<f64>>>,
    pub flagged_distinct_chars: usize,
    pub min_lines_for_line_rules: usize,
    pub line_end_punct: Vec<char>,
    pub short_line_chars: usize,
    pub char_ngram: usize,
    pub top_n_grams: BTreeMap<usize, f64>,
    pub dup_n_grams: BTreeMap<usize, f64>,
}

impl Rules {
    /// Built-in Chinese defaults (FineWeb-2 `cmn_Hani` where it has a value).
    pub fn zh() -> Self {
        Rules {
            limits: RULES
                .iter()
                .map(|r| r.limits.iter().map(|l| l.zh).collect())
                .collect(),
            flagged_distinct_chars: 20_000,
            min_lines_for_line_rules: 3,
            line_end_punct: "。！？…．.!?\"'”’」』）)".chars().collect(),
            short_line_chars: 15,
            char_ngram: 13,
            top_n_grams: BTreeMap::from([(2, 0.256), (3, 0.201), (4, 0.171)]),
            dup_n_grams: BTreeMap::from([
                (5, 0.198),
                (6, 0.182),
                (7, 0.167),
                (8, 0.154),
                (9, 0.14),
                (10, 0.127),
            ]),
        }
    }

    /// Built-in defaults for other languages (datatrove's Gopher and FineWeb defaults);
    /// `stop_words` is off without a stopword list.
    pub fn generic(has_stopwords: bool) -> Self {
        let mut r = Rules {
            limits: RULES
                .iter()
                .map(|r| r.limits.iter().map(|l| l.other).collect())
                .collect(),
            flagged_distinct_chars: 20_000,
            min_lines_for_line_rules: 3,
            line_end_punct: ".?!\"'".chars().collect(),
            short_line_chars: 30,
            char_ngram: 13,
            top_n_grams: BTreeMap::from([(2, 0.2), (3, 0.18), (4, 0.16)]),
            dup_n_grams: BTreeMap::from([
                (5, 0.15),
                (6, 0.14),
                (7, 0.13),
                (8, 0.12),
                (9, 0.11),
                (10, 0.10),
            ]),
        };
        if !has_stopwords {
            r.disable("stop_words");
        }
        r
    }

    /// Whether rule `i` of [`RULES`] runs.
    pub fn enabled(&self, i: usize) -> bool {
        match RULES[i].name {
            "top_n_gram" => !self.top_n_grams.is_empty(),
            "dup_n_gram" => !self.dup_n_grams.is_empty(),
            _ => self.limits[i].iter().any(Option::is_some),
        }
    }

    /// The length above which a document fails `chars` (`usize::MAX` when off).
    pub fn max_chars(&self) -> usize {
        rule_index("chars")
            .and_then(|i| {
                let j = RULES[i]
                    .limits
                    .iter()
                    .position(|l| l.param == "max_chars")?;
                self.limits[i][j]
            })
            .map_or(usize::MAX, |v| v as usize)
    }

    /// Switch a rule off; false for an unknown name.
    fn disable(&mut self, name: &str) -> bool {
        let Some(i) = rule_index(name) else {
            return false;
        };
        self.limits[i].iter_mut().for_each(|l| *l = None);
        match name {
            "top_n_gram" => self.top_n_grams.clear(),
            "dup_n_gram" => self.dup_n_grams.clear(),
            _ => {}
        }
        true
    }

    /// Apply overrides, then switch off the rules named in `disable`. Returns the problems
    /// (unknown rule names) found.
    pub fn apply(&mut self, p: &LangParams) -> Vec<String> {
        // Thresholds: every table limit reads its own `LangParams` field by name.
        let over = serde_json::to_value(p).unwrap_or_default();
        for (i, rule) in RULES.iter().enumerate() {
            for (j, l) in rule.limits.iter().enumerate() {
                if let Some(v) = over.get(l.param).and_then(serde_json::Value::as_f64) {
                    self.limits[i][j] = Some(v);
                }
            }
        }
        macro_rules! set {
            ($f:ident) => {
                if let Some(v) = p.$f.clone() {
                    self.$f = v;
                }
            };
        }
        set!(flagged_distinct_chars);
        set!(min_lines_for_line_rules);
        set!(short_line_chars);
        set!(char_ngram);
        set!(top_n_grams);
        set!(dup_n_grams);
        if let Some(s) = &p.line_end_punct {
            self.line_end_punct = s.chars().collect();
        }
        let mut problems = Vec::new();
        for d in &p.disable {
            if !self.disable(d) {
                let names: Vec<String> = rule_names().map(str::to_string).collect();
                problems.push(match crate::graph::nearest(d, &names) {
                    Some(n) => format!("unknown rule \"{d}\" (did you mean \"{n}\"?)"),
                    None => format!("unknown rule \"{d}\"; rules: {}", names.join(", ")),
                })
            }
        }
        problems
    }
}

/// Every rule name, in evaluation order (the first failing one is the reject reason).
pub fn rule_names() -> impl Iterator<Item = &'static str> {
    RULES.iter().map(|r| r.name)
}

/// Values of one language's overrides that make no sense: shares outside [0, 1], a
/// minimum above its maximum, an n-gram size of 0.
pub fn check_lang_params(lang: &str, lp: &LangParams) -> Vec<String> {
    let f = |name: &str| format!("languages.{lang}.{name}");
    let over = serde_json::to_value(lp).unwrap_or_default();
    let get = |param: &str| over.get(param).and_then(serde_json::Value::as_f64);
    let mut c = Checks::new();
    for rule in RULES {
        for l in rule.limits.iter().filter(|l| l.check == Check::Fraction) {
            c.fraction_opt(&f(l.param), get(l.param));
        }
        // A rule with a minimum and a maximum: both set, in order.
        if let [lo, hi] = rule.limits {
            if let (Some(a), Some(b)) = (get(lo.param), get(hi.param)) {
                c.min_max(&f(lo.param), a, &f(hi.param), b);
            }
        }
    }
    for (n, v) in lp.top_n_grams.iter().flatten() {
        c.fraction(&format!("{}.{n}", f("top_n_grams")), *v);
    }
    for (n, v) in lp.dup_n_grams.iter().flatten() {
        c.fraction(&format!("{}.{n}", f("dup_n_grams")), *v);
    }
    c.at_least_opt(&f("char_ngram"), lp.char_ngram, 1);
    c.into_vec()
}
