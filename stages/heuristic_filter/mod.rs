//! `heuristic_filter`: the published web-text quality heuristics, per language, with
//! Chinese defaults built in and computed over jieba words.
//!
//! Why one stage: every rule needs the same lines, paragraphs and words. Peers run each
//! filter separately (datatrove re-tokenizes in Gopher quality, Gopher repetition and
//! FineWeb quality). Here the words come from [`Document::words`] (set once by
//! `segment_zh`; segmented here with the default jieba only when absent) and every rule
//! shares one pass over lines.
//!
//! Rules, in evaluation order (`attrs` key `heuristic_filter.<rule>`, reject reason = rule):
//!
//! | rule | value | zh default | source |
//! |---|---|---|---|
//! | `chars` | characters | 50 ≤ n ≤ 1,000,000 | length bounds |
//! | `cjk_share` | Han / non-whitespace chars | ≥ 0.3 | ChineseWebText |
//! | `flagged_ratio` | chars inside porn/gambling/ads words / chars | ≤ 0.015 | ROOTS |
//! | `flagged_distinct` | distinct flagged words | ≤ 6 per 20,000 chars (`flagged_distinct_chars`) | (catches diluted spam) |
//! | `lorem_ipsum` | 1 if present | must be 0 | C4 |
//! | `c4_bad_lines` | javascript/cookie/policy lines / lines | ≤ 0.3 | C4 |
//! | `words` | non-symbol words | ≥ 50 (Gopher's ≤ 100,000 is off by default: it rejects books for their length) | Gopher |
//! | `avg_word_len` | mean chars per non-symbol word | 1 ≤ x ≤ 6 | Gopher |
//! | `hash_ratio` / `ellipsis_ratio` | `#` / ellipses per word | ≤ 0.1 | Gopher |
//! | `bullet_lines` / `end_ellipsis_lines` | share of lines | ≤ 0.9 / ≤ 0.3 | Gopher |
//! | `alpha_words` | words with a letter (Han counts) / words | ≥ 0.5 | Gopher |
//! | `stop_words` | stopword occurrences (BigScience zh list) | ≥ 2 | Gopher |
//! | `dup_para_frac`, `dup_para_char_frac`, `dup_line_frac`, `dup_line_char_frac` | | 0.3, 0.2, 0.287, 0.2 | Gopher / FineWeb-2 |
//! | `top_{n}_gram` | top word n-gram chars / chars | {2: .256, 3: .201, 4: .171} | FineWeb-2 cmn_Hani |
//! | `dup_{n}_gram` | repeated word n-gram chars / chars | {5: .198 … 10: .127} | FineWeb-2 cmn_Hani |
//! | `line_punct_ratio` | lines ending in `。！？…` etc. / lines | ≥ 0.106 | FineWeb(-2) |
//! | `short_line_ratio` | lines ≤ 15 chars / lines | ≤ 0.67 | FineWeb |
//! | `char_dup_ratio` | chars in duplicated lines / chars | ≤ 0.1 | FineWeb(-2) |
//! | `newline_ratio` | newlines / words | ≤ 0.178 | FineWeb(-2) |
//! | `char_ngram_rep` | chars inside repeated character 13-grams / chars | ≤ 0.4 | ChineseWebText |
//!
//! The four line-share rules (`bullet_lines`, `end_ellipsis_lines`, `line_punct_ratio`,
//! `short_line_ratio`) run only on documents with ≥ `min_lines_for_line_rules` (3) lines:
//! on a single paragraph the share is 0 or 1 (a paragraph cut mid-sentence would fail).
//!
//! Other languages get datatrove's Gopher and FineWeb defaults (Unicode words); `en` also
//! gets the BigScience English stopwords. Overrides per language go under `languages:`;
//! any rule can be switched off with `disable: [rule, ...]`.
//!
//! Every computed rule value is written to `attrs`, failing or not. A document failing
//! any rule goes to `rejected` with the first failing rule as reason and its value as
//! score; `meta["heuristic_filter.failed"]` lists all failing rules (comma-separated) and
//! the reject detail repeats them with values and thresholds. Text is never edited (C4
//! line rules score the page rather than cut lines, so `words` stays valid).
//!
//! Built-in lists (compiled in, from `samples/lists/`, see `samples/README.md`): BigScience
//! `stopwords.zh.txt` / `stopwords.en.txt`; flagged words = BigScience zh porn terms,
//! konsheng porn and ads lists, and sluice's gambling list. Pure-ASCII flagged entries
//! shorter than 4 characters (`BT`, `SM`, `QQ`) are skipped: they match inside ordinary
//! Latin words. Matching is leftmost-longest, ASCII case-insensitive (Aho-Corasick).
//!
//! Reads `text`, `lang`, `words`. Writes `attrs`, `meta`, and `words` when absent.
//! Memory: a document over `max_chars` (default 1,000,000) fails `chars`, the first rule,
//! and nothing else is computed (nor segmented), so by default working memory is bounded
//! by `max_chars`, whatever the document's size. Below it, per document: hash sets of its
//! lines and paragraphs, per-word hashes and lengths (12 B/word), sorted n-gram keys (8 B
//! per word or per non-whitespace character, one table at a time) and the `dup_n_gram`
//! set; measured ~6× the document with `max_chars` raised on a 16 MiB document
//! (`docs/memory.md`). The automaton and stopword sets (< 1 MB) are built once per node.
//!
//! ```yaml
//! quality:
//!   kind: heuristic_filter
//!   inputs: [seg]
//!   default_lang: zh          # for documents without `lang`
//!   languages:
//!     zh: {min_chars: 100, disable: [short_line_ratio]}
//!     en: {min_words: 80}
//! ```

mod params;
pub mod rules;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::{Deserialize, Serialize};

pub use params::{LangParams, Rules, RULE_NAMES};
use rules::*;

use crate::attrs::AttrDecl;
use crate::document::{DocBatch, Document};
use crate::error::{Error, Result};
use crate::stage::{
    check_file, field_problem, parse_config, BuildCtx, Checks, Emitter, Kind, Node, Role,
    StageConfig, Transform, OUT_REJECTED,
};
use crate::stages::segment_zh::{self, is_chinese_lang};

const STOPWORDS_ZH: &str = include_str!("../../samples/lists/bigscience/stopwords.zh.txt");
const STOPWORDS_EN: &str = include_str!("../../samples/lists/bigscience/stopwords.en.txt");
const FLAGGED_ZH: &[&str] = &[
    include_str!("../../samples/lists/bigscience/flagged_words.zh_only.txt"),
    include_str!("../../samples/lists/konsheng/porn.zh.txt"),
    include_str!("../../samples/lists/konsheng/ads.zh.txt"),
    include_str!("../../samples/lists/gambling.zh.txt"),
];

/// What to do with a language that has neither built-in defaults nor a `languages` entry.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, schemars::JsonSchema, PartialEq, Eq,
)]
#[serde(rename_all = "lowercase")]
pub enum OtherLangs {
    /// Apply the generic (datatrove English-default) rules without stopwords.
    #[default]
    Generic,
    /// Pass such documents through unfiltered (values not computed).
    Pass,
}

/// Config for `heuristic_filter`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Per-language threshold overrides, keyed by `lang` (e.g. `zh`, `en`). Unset fields keep
    /// the built-in defaults. Default: none (built-in zh and generic rules).
    #[serde(default)]
    pub languages: BTreeMap<String, LangParams>,
    /// Language assumed for documents without `lang`. Default `zh`.
    #[serde(default = "default_lang")]
    pub default_lang: String,
    /// Languages without defaults or an entry: `generic` (default) or `pass`.
    #[serde(default)]
    pub other_langs: OtherLangs,
    /// Use jieba's HMM when a document arrives without `words`. Default true.
    #[serde(default = "yes")]
    pub hmm: bool,
}

fn default_lang() -> String {
    "zh".to_string()
}
fn yes() -> bool {
    true
}

impl Default for Config {
    fn default() -> Self {
        Config {
            languages: BTreeMap::new(),
            default_lang: default_lang(),
            other_langs: OtherLangs::Generic,
            hmm: true,
        }
    }
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        let mut p = Vec::new();
        for (lang, lp) in &self.languages {
            if let Some(s) = &lp.stopwords {
                p.extend(check_file(&format!("languages.{lang}.stopwords"), s));
            }
            for f in lp.flagged_words.iter().flatten() {
                p.extend(check_file(&format!("languages.{lang}.flagged_words"), f));
            }
            let mut r = Rules::zh();
            p.extend(
                r.apply(lp)
                    .into_iter()
                    .map(|e| field_problem(&format!("languages.{lang}.disable"), e)),
            );
            p.extend(check_lang_params(lang, lp));
        }
        p
    }
}

/// Values of one language's overrides that make no sense: shares outside [0, 1], a
/// minimum above its maximum, an n-gram size of 0.
fn check_lang_params(lang: &str, lp: &LangParams) -> Vec<String> {
    let f = |name: &str| format!("languages.{lang}.{name}");
    let mut c = Checks::new();
    for (name, v) in [
        ("min_cjk_share", lp.min_cjk_share),
        ("max_flagged_ratio", lp.max_flagged_ratio),
        ("max_c4_bad_line_ratio", lp.max_c4_bad_line_ratio),
        ("max_hash_ratio", lp.max_hash_ratio),
        ("max_ellipsis_ratio", lp.max_ellipsis_ratio),
        ("max_bullet_lines_ratio", lp.max_bullet_lines_ratio),
        (
            "max_end_ellipsis_lines_ratio",
            lp.max_end_ellipsis_lines_ratio,
        ),
        ("min_alpha_words_ratio", lp.min_alpha_words_ratio),
        ("dup_para_frac", lp.dup_para_frac),
        ("dup_para_char_frac", lp.dup_para_char_frac),
        ("dup_line_frac", lp.dup_line_frac),
        ("dup_line_char_frac", lp.dup_line_char_frac),
        ("min_line_punct_ratio", lp.min_line_punct_ratio),
        ("max_short_line_ratio", lp.max_short_line_ratio),
        ("max_char_dup_ratio", lp.max_char_dup_ratio),
        ("max_char_ngram_rep", lp.max_char_ngram_rep),
    ] {
        c.fraction_opt(&f(name), v);
    }
    for (n, v) in lp.top_n_grams.iter().flatten() {
        c.fraction(&format!("{}.{n}", f("top_n_grams")), *v);
    }
    for (n, v) in lp.dup_n_grams.iter().flatten() {
        c.fraction(&format!("{}.{n}", f("dup_n_grams")), *v);
    }
    if let (Some(lo), Some(hi)) = (lp.min_chars, lp.max_chars) {
        c.min_max(&f("min_chars"), lo, &f("max_chars"), hi);
    }
    if let (Some(lo), Some(hi)) = (lp.min_words, lp.max_words) {
        c.min_max(&f("min_words"), lo, &f("max_words"), hi);
    }
    if let (Some(lo), Some(hi)) = (lp.min_avg_word_len, lp.max_avg_word_len) {
        c.min_max(&f("min_avg_word_len"), lo, &f("max_avg_word_len"), hi);
    }
    c.at_least_opt(&f("char_ngram"), lp.char_ngram, 1);
    c.into_vec()
}

/// Resolved rules and lists for one language.
struct LangRules {
    rules: Rules,
    stopwords: HashSet<String>,
    flagged: Option<AhoCorasick>,
}

fn word_list(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn read_list(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Entries of the built-in lists too common in clean text to flag (measured on the CMRC
/// 2018 Wikipedia paragraphs): "network", "agent", "Miss", "stimulate", job-ad words.
const GENERIC_EXCLUDE: &[&str] = &[
    "网络", "代理", "小姐", "刺激", "招聘", "全职", "客服", "淘宝", "网购",
];

fn flagged_automaton<'a>(
    words: impl Iterator<Item = &'a str>,
    exclude: &[&str],
) -> Result<Option<AhoCorasick>> {
    let mut pats: Vec<&str> = words
        .filter(|w| !(exclude.contains(w) || w.is_ascii() && w.len() < 4))
        .collect();
    pats.sort_unstable();
    pats.dedup();
    if pats.is_empty() {
        return Ok(None);
    }
    AhoCorasickBuilder::new()
        .match_kind(MatchKind::LeftmostLongest)
        .ascii_case_insensitive(true)
        .build(pats)
        .map(Some)
        .map_err(|e| Error::msg(format!("flagged words: {e}")))
}

impl LangRules {
    fn build(lang: &str, over: Option<&LangParams>) -> Result<Self> {
        let zh = lang == "zh";
        let builtin_stop = match lang {
            "zh" => Some(STOPWORDS_ZH),
            "en" => Some(STOPWORDS_EN),
            _ => None,
        };
        let custom_stop = match over.and_then(|o| o.stopwords.as_ref()) {
            Some(p) => Some(read_list(p)?),
            None => None,
        };
        let stop_text = custom_stop.as_deref().or(builtin_stop);
        let mut rules = if zh {
            Rules::zh()
        } else {
            Rules::generic(stop_text.is_some())
        };
        if let Some(o) = over {
            let problems = rules.apply(o);
            if !problems.is_empty() {
                return Err(Error::Config(problems));
            }
        }
        let stopwords = stop_text
            .map(|t| word_list(t).map(str::to_string).collect())
            .unwrap_or_default();
        let flagged = match over.and_then(|o| o.flagged_words.as_ref()) {
            Some(paths) => {
                let texts = paths
                    .iter()
                    .map(|p| read_list(p))
                    .collect::<Result<Vec<_>>>()?;
                flagged_automaton(texts.iter().flat_map(|t| word_list(t)), &[])?
            }
            None if zh => flagged_automaton(
                FLAGGED_ZH.iter().flat_map(|t| word_list(t)),
                GENERIC_EXCLUDE,
            )?,
            None => None,
        };
        Ok(LangRules {
            rules,
            stopwords,
            flagged,
        })
    }
}

/// One rule outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Rule name (`top_2_gram` etc. for per-n rules).
    pub rule: String,
    /// Measured value.
    pub value: f64,
    /// Threshold description when failing, e.g. `< 0.106`.
    pub failed: Option<String>,
}

/// The `heuristic_filter` transform.
pub struct HeuristicFilter {
    cfg: Config,
    langs: HashMap<String, Arc<LangRules>>,
    generic: Arc<LangRules>,
}

fn min_rule(out: &mut Vec<Outcome>, rule: &str, value: f64, min: Option<f64>) {
    if let Some(m) = min {
        let failed = (value < m).then(|| format!("< {m}"));
        out.push(Outcome {
            rule: rule.to_string(),
            value,
            failed,
        });
    }
}

fn max_rule(out: &mut Vec<Outcome>, rule: &str, value: f64, max: Option<f64>) {
    if let Some(m) = max {
        let failed = (value > m).then(|| format!("> {m}"));
        out.push(Outcome {
            rule: rule.to_string(),
            value,
            failed,
        });
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl HeuristicFilter {
    /// Build from a config: resolve rules and load lists for zh, en, every configured
    /// language, and the generic fallback.
    pub fn new(cfg: Config) -> Result<Self> {
        let mut langs = HashMap::new();
        for l in ["zh", "en"] {
            langs.insert(
                l.to_string(),
                Arc::new(LangRules::build(l, cfg.languages.get(l))?),
            );
        }
        for (l, o) in &cfg.languages {
            if !langs.contains_key(l) {
                langs.insert(l.clone(), Arc::new(LangRules::build(l, Some(o))?));
            }
        }
        let generic = Arc::new(LangRules::build("", None)?);
        Ok(HeuristicFilter {
            cfg,
            langs,
            generic,
        })
    }

    /// Every attribute some language's rules may set: `heuristic_filter.<rule>`, integer
    /// for counts (`chars`, `words`, `stop_words`, `flagged_distinct`, `lorem_ipsum`), float
    /// for ratios. The same conditions as `evaluate_rules` enable each rule.
    fn attr_decls(&self) -> Vec<AttrDecl> {
        let mut out: BTreeMap<String, bool> = BTreeMap::new();
        let mut all: Vec<&LangRules> = self.langs.values().map(|a| &**a).collect();
        all.push(&self.generic);
        for lr in all {
            let r = &lr.rules;
            let mut on = |name: &str, int: bool, enabled: bool| {
                if enabled {
                    out.insert(name.to_string(), int);
                }
            };
            on("chars", true, true);
            on("cjk_share", false, r.min_cjk_share.is_some());
            let flagged = lr.flagged.is_some();
            on(
                "flagged_ratio",
                false,
                flagged && r.max_flagged_ratio.is_some(),
            );
            on(
                "flagged_distinct",
                true,
                flagged && r.max_flagged_distinct.is_some(),
            );
            on("lorem_ipsum", true, r.lorem_ipsum);
            on("c4_bad_lines", false, r.max_c4_bad_line_ratio.is_some());
            on(
                "words",
                true,
                r.min_words.is_some() || r.max_words.is_some(),
            );
            on(
                "avg_word_len",
                false,
                r.min_avg_word_len.is_some() || r.max_avg_word_len.is_some(),
            );
            on("hash_ratio", false, r.max_hash_ratio.is_some());
            on("ellipsis_ratio", false, r.max_ellipsis_ratio.is_some());
            on("bullet_lines", false, r.max_bullet_lines_ratio.is_some());
            on(
                "end_ellipsis_lines",
                false,
                r.max_end_ellipsis_lines_ratio.is_some(),
            );
            on("alpha_words", false, r.min_alpha_words_ratio.is_some());
            on("stop_words", true, r.min_stop_words.is_some());
            on("dup_para_frac", false, r.dup_para_frac.is_some());
            on("dup_para_char_frac", false, r.dup_para_char_frac.is_some());
            on("dup_line_frac", false, r.dup_line_frac.is_some());
            on("dup_line_char_frac", false, r.dup_line_char_frac.is_some());
            for n in r.top_n_grams.keys() {
                on(&format!("top_{n}_gram"), false, true);
            }
            for n in r.dup_n_grams.keys() {
                on(&format!("dup_{n}_gram"), false, true);
            }
            on("line_punct_ratio", false, r.min_line_punct_ratio.is_some());
            on("short_line_ratio", false, r.max_short_line_ratio.is_some());
            on("char_dup_ratio", false, r.max_char_dup_ratio.is_some());
            on("newline_ratio", false, r.max_newline_ratio.is_some());
            on("char_ngram_rep", false, r.max_char_ngram_rep.is_some());
        }
        out.into_iter()
            .map(|(rule, int)| {
                let key = format!("heuristic_filter.{rule}");
                if int {
                    AttrDecl::int(key)
                } else {
                    AttrDecl::float(key)
                }
            })
            .collect()
    }

    fn rules_for(&self, lang: Option<&str>) -> Option<&LangRules> {
        let lang = lang.unwrap_or(&self.cfg.default_lang);
        if let Some(r) = self.langs.get(lang) {
            return Some(r);
        }
        if is_chinese_lang(lang) {
            return self.langs.get("zh").map(|a| &**a);
        }
        match self.cfg.other_langs {
            OtherLangs::Generic => Some(&self.generic),
            OtherLangs::Pass => None,
        }
    }

    /// Evaluate every enabled rule on a document (segmenting it first if needed).
    /// Returns `None` when the document's language is passed through.
    pub fn evaluate(&self, doc: &mut Document) -> Option<Vec<Outcome>> {
        let lr = self.rules_for(doc.lang.as_deref())?;
        // A document over `max_chars` fails `chars` at once (see `evaluate_rules`): no words.
        if doc.words.is_none() && nchars(&doc.text) <= lr.rules.max_chars {
            doc.words = Some(segment_zh::segment_doc(
                segment_zh::default_jieba(),
                doc,
                self.cfg.hmm,
            ));
        }
        let out = evaluate_rules(lr, doc);
        if doc.text.len() >= crate::stages::normalize::HUGE_DOC_BYTES {
            // Its per-word and per-character tables were just freed.
            crate::stages::normalize::release_freed_memory();
        }
        Some(out)
    }
}

fn evaluate_rules(lr: &LangRules, doc: &Document) -> Vec<Outcome> {
    let r = &lr.rules;
    let text = doc.text.as_str();
    let mut out = Vec::with_capacity(32);
    let n_chars = nchars(text);
    // Words are walked from the spans each time they are needed: a `Vec<&str>` of them
    // cost 16 bytes per word (~3.5 bytes per byte of Chinese text).
    let words = || doc.word_strs().into_iter().flatten();
    let n_words = doc.words.as_ref().map_or(0, |w| w.len());

    // Length.
    let failed = if n_chars < r.min_chars {
        Some(format!("< {}", r.min_chars))
    } else if n_chars > r.max_chars {
        Some(format!("> {}", r.max_chars))
    } else {
        None
    };
    let too_long = n_chars > r.max_chars;
    out.push(Outcome {
        rule: "chars".into(),
        value: n_chars as f64,
        failed,
    });
    if too_long {
        // `chars` is the first rule, so the document is rejected with it whatever the rest
        // say; skipping them keeps working memory bounded by `max_chars`, not by the text.
        return out;
    }

    // CJK share.
    if r.min_cjk_share.is_some() {
        min_rule(&mut out, "cjk_share", cjk_share(text), r.min_cjk_share);
    }

    // Flagged words.
    if let Some(ac) = &lr.flagged {
        if r.max_flagged_ratio.is_some() || r.max_flagged_distinct.is_some() {
            let mut flagged_chars = 0usize;
            let mut distinct = HashSet::new();
            for m in ac.find_iter(text) {
                flagged_chars += nchars(&text[m.start()..m.end()]);
                distinct.insert(m.pattern());
            }
            max_rule(
                &mut out,
                "flagged_ratio",
                ratio(flagged_chars, n_chars),
                r.max_flagged_ratio,
            );
            if let Some(m) = r.max_flagged_distinct {
                // The limit scales with length past `flagged_distinct_chars` (long clean
                // texts collect distinct flagged words by chance; see `LangParams`).
                let m = m * n_chars.div_ceil(r.flagged_distinct_chars.max(1)).max(1);
                let n = distinct.len();
                out.push(Outcome {
                    rule: "flagged_distinct".into(),
                    value: n as f64,
                    failed: (n > m).then(|| format!("> {m}")),
                });
            }
        }
    }

    // Lines (non-empty), shared by C4, Gopher and FineWeb rules.
    let lines: Vec<&str> = text.split('\n').filter(|l| !l.trim().is_empty()).collect();
    let n_lines = lines.len();

    if r.lorem_ipsum {
        let v = has_lorem_ipsum(text) as u8 as f64;
        out.push(Outcome {
            rule: "lorem_ipsum".into(),
            value: v,
            failed: (v > 0.0).then(|| "> 0".to_string()),
        });
    }
    if r.max_c4_bad_line_ratio.is_some() {
        let bad = lines.iter().filter(|l| is_c4_bad_line(l)).count();
        max_rule(
            &mut out,
            "c4_bad_lines",
            ratio(bad, n_lines),
            r.max_c4_bad_line_ratio,
        );
    }

    // Gopher quality.
    let (nn, non_symbol_chars) = words()
        .filter(|w| is_non_symbol_word(w))
        .fold((0usize, 0usize), |(n, c), w| (n + 1, c + nchars(w)));
    if r.min_words.is_some() || r.max_words.is_some() {
        let failed = match (r.min_words, r.max_words) {
            (Some(m), _) if nn < m => Some(format!("< {m}")),
            (_, Some(m)) if nn > m => Some(format!("> {m}")),
            _ => None,
        };
        out.push(Outcome {
            rule: "words".into(),
            value: nn as f64,
            failed,
        });
    }
    if r.min_avg_word_len.is_some() || r.max_avg_word_len.is_some() {
        let avg = ratio(non_symbol_chars, nn);
        let failed = match (r.min_avg_word_len, r.max_avg_word_len) {
            (Some(m), _) if avg < m => Some(format!("< {m}")),
            (_, Some(m)) if avg > m => Some(format!("> {m}")),
            _ => None,
        };
        out.push(Outcome {
            rule: "avg_word_len".into(),
            value: avg,
            failed,
        });
    }
    max_rule(
        &mut out,
        "hash_ratio",
        ratio(text.matches('#').count(), n_words),
        r.max_hash_ratio,
    );
    let ellipses = text.matches("...").count() + text.matches('…').count();
    max_rule(
        &mut out,
        "ellipsis_ratio",
        ratio(ellipses, n_words),
        r.max_ellipsis_ratio,
    );
    let bullets = lines
        .iter()
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with('•') || t.starts_with('-')
        })
        .count();
    let line_rules = n_lines >= r.min_lines_for_line_rules;
    if line_rules {
        max_rule(
            &mut out,
            "bullet_lines",
            ratio(bullets, n_lines),
            r.max_bullet_lines_ratio,
        );
    }
    let end_ell = lines
        .iter()
        .filter(|l| {
            let t = l.trim_end();
            t.ends_with("...") || t.ends_with('…')
        })
        .count();
    if line_rules {
        max_rule(
            &mut out,
            "end_ellipsis_lines",
            ratio(end_ell, n_lines),
            r.max_end_ellipsis_lines_ratio,
        );
    }
    let alpha = words()
        .filter(|w| w.chars().any(char::is_alphabetic))
        .count();
    min_rule(
        &mut out,
        "alpha_words",
        ratio(alpha, n_words),
        r.min_alpha_words_ratio,
    );
    if let Some(m) = r.min_stop_words {
        let n = words().filter(|w| lr.stopwords.contains(*w)).count();
        out.push(Outcome {
            rule: "stop_words".into(),
            value: n as f64,
            failed: (n < m).then(|| format!("< {m}")),
        });
    }

    // Gopher repetition.
    let paragraphs: Vec<&str> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let (pd, pdc) = find_duplicates(paragraphs.iter().copied());
    max_rule(
        &mut out,
        "dup_para_frac",
        ratio(pd, paragraphs.len()),
        r.dup_para_frac,
    );
    max_rule(
        &mut out,
        "dup_para_char_frac",
        ratio(pdc, n_chars),
        r.dup_para_char_frac,
    );
    let (ld, ldc) = find_duplicates(lines.iter().copied());
    max_rule(
        &mut out,
        "dup_line_frac",
        ratio(ld, n_lines),
        r.dup_line_frac,
    );
    max_rule(
        &mut out,
        "dup_line_char_frac",
        ratio(ldc, n_chars),
        r.dup_line_char_frac,
    );
    if !r.top_n_grams.is_empty() || !r.dup_n_grams.is_empty() {
        let ws = WordStats::new(words());
        for (&n, &thr) in &r.top_n_grams {
            if let Some(c) = ws.top_ngram_chars(n) {
                max_rule(
                    &mut out,
                    &format!("top_{n}_gram"),
                    ratio(c, n_chars),
                    Some(thr),
                );
            }
        }
        for (&n, &thr) in &r.dup_n_grams {
            let c = ws.dup_ngram_chars(n);
            max_rule(
                &mut out,
                &format!("dup_{n}_gram"),
                ratio(c, n_chars),
                Some(thr),
            );
        }
    }

    // FineWeb quality.
    if line_rules && n_lines > 0 {
        let punct = lines
            .iter()
            .filter(|l| {
                l.trim_end()
                    .chars()
                    .last()
                    .is_some_and(|c| r.line_end_punct.contains(&c))
            })
            .count();
        min_rule(
            &mut out,
            "line_punct_ratio",
            ratio(punct, n_lines),
            r.min_line_punct_ratio,
        );
        let short = lines
            .iter()
            .filter(|l| nchars(l.trim()) <= r.short_line_chars)
            .count();
        max_rule(
            &mut out,
            "short_line_ratio",
            ratio(short, n_lines),
            r.max_short_line_ratio,
        );
    }
    let non_nl_chars = n_chars - text.matches('\n').count();
    max_rule(
        &mut out,
        "char_dup_ratio",
        ratio(ldc, non_nl_chars),
        r.max_char_dup_ratio,
    );
    max_rule(
        &mut out,
        "newline_ratio",
        ratio(text.matches('\n').count(), n_words),
        r.max_newline_ratio,
    );

    // ChineseWebText character n-gram repetition.
    if r.max_char_ngram_rep.is_some() {
        max_rule(
            &mut out,
            "char_ngram_rep",
            char_ngram_repetition(text, r.char_ngram),
            r.max_char_ngram_rep,
        );
    }
    out
}

impl Transform for HeuristicFilter {
    fn attrs(&self) -> Vec<AttrDecl> {
        self.attr_decls()
    }

    fn process(&self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        for mut doc in batch.docs {
            let Some(outcomes) = self.evaluate(&mut doc) else {
                out.emit(doc);
                continue;
            };
            for o in &outcomes {
                doc.attrs
                    .insert(format!("heuristic_filter.{}", o.rule), o.value);
            }
            let failing: Vec<&Outcome> = outcomes.iter().filter(|o| o.failed.is_some()).collect();
            match failing.first() {
                None => out.emit(doc),
                Some(first) => {
                    let names: Vec<&str> = failing.iter().map(|o| o.rule.as_str()).collect();
                    doc.meta
                        .insert("heuristic_filter.failed".into(), names.join(","));
                    let detail = failing
                        .iter()
                        .map(|o| {
                            format!(
                                "{}={:.4} {}",
                                o.rule,
                                o.value,
                                o.failed.as_deref().unwrap_or("")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    let (reason, score) = (first.rule.clone(), first.value);
                    out.reject(doc, &reason, Some(score), detail);
                }
            }
        }
        Ok(())
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "heuristic_filter",
        doc: "Gopher, FineWeb, C4 and ChineseWebText quality rules over jieba words, per language, Chinese defaults built in.",
        role: Role::Transform,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Transform(Arc::new(HeuristicFilter::new(cfg)?)))
        },
    }
}

#[cfg(test)]
mod tests;
