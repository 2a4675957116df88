//! `heuristic_filter`: the published web-text quality heuristics, per language, with
//! Chinese defaults built in and computed over jieba words.
//!
//! Why one stage: every rule needs the same lines, paragraphs and words. Peers run each
//! filter separately (datatrove re-tokenizes in Gopher quality, Gopher repetition and
//! FineWeb quality). Here the words come from [`Document::words`] (set once by
//! `segment_zh`; segmented here with the default jieba only when absent) and every rule
//! shares one pass over lines.
//!
//! Each rule is one row of [`table::RULES`]: name, thresholds (the `languages.<lang>`
//! field that overrides each, zh and other-language defaults) and the measuring function;
//! overrides, `disable`, validation and evaluation all read that table. Rules, in
//! evaluation order (`attrs` key `heuristic_filter.<rule>`, reject reason = rule):
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
pub mod table;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::{Deserialize, Serialize};

use params::check_lang_params;
pub use params::{rule_names, LangParams, Rules};
use rules::nchars;
use table::{Cmp, Ctx, Value, RULES};

use crate::attrs::AttrDecl;
use crate::document::{DocBatch, Document};
use crate::error::{Error, Result};
use crate::stage::{
    check_file, field_problem, parse_config, BuildCtx, Emitter, Kind, Node, Role, StageConfig,
    Transform, OUT_REJECTED,
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

    /// Every attribute some language's rules may set: `heuristic_filter.<rule>` for each
    /// rule of the table enabled for some language (per-n rules: each configured n), an
    /// integer for counts, a float for ratios.
    fn attr_decls(&self) -> Vec<AttrDecl> {
        let mut out: BTreeMap<String, bool> = BTreeMap::new();
        let all = self.langs.values().chain(std::iter::once(&self.generic));
        for r in all.map(|lr| &lr.rules) {
            for (_, rule) in RULES.iter().enumerate().filter(|(i, _)| r.enabled(*i)) {
                let names: Vec<String> = match rule.name {
                    "top_n_gram" => r
                        .top_n_grams
                        .keys()
                        .map(|n| format!("top_{n}_gram"))
                        .collect(),
                    "dup_n_gram" => r
                        .dup_n_grams
                        .keys()
                        .map(|n| format!("dup_{n}_gram"))
                        .collect(),
                    name => vec![name.to_string()],
                };
                out.extend(names.into_iter().map(|n| (n, rule.count)));
            }
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
        if doc.words.is_none() && nchars(&doc.text) <= lr.rules.max_chars() {
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

/// Run the rule table over one document, in order.
fn evaluate_rules(lr: &LangRules, doc: &Document) -> Vec<Outcome> {
    let r = &lr.rules;
    let mut ctx = Ctx::new(lr, doc);
    let line_rules = |ctx: &mut Ctx| ctx.lines().len() >= r.min_lines_for_line_rules;
    let mut out = Vec::with_capacity(32);
    for (i, rule) in RULES.iter().enumerate() {
        if !r.enabled(i) || rule.line_share && !line_rules(&mut ctx) {
            continue;
        }
        let (value, scale) = match (rule.eval)(&mut ctx) {
            Value::Skip => continue,
            Value::One(v) => (v, 1.0),
            Value::Scaled(v, k) => (v, k),
            Value::PerN(vals) => {
                let name = |n: usize| rule.name.replace("_n_", &format!("_{n}_"));
                out.extend(vals.into_iter().map(|(n, value, max)| Outcome {
                    rule: name(n),
                    value,
                    failed: (value > max).then(|| format!("> {max}")),
                }));
                continue;
            }
        };
        let failed = rule.limits.iter().zip(&r.limits[i]).find_map(|(l, lim)| {
            let m = (*lim)? * scale;
            match l.cmp {
                Cmp::Min => (value < m).then(|| format!("< {m}")),
                Cmp::Max => (value > m).then(|| format!("> {m}")),
            }
        });
        out.push(Outcome {
            rule: rule.name.to_string(),
            value,
            failed,
        });
        if i == 0 && ctx.n_chars > r.max_chars() {
            // `chars` is the first rule, so the document is rejected with it whatever the
            // rest say; skipping them keeps working memory bounded by `max_chars`.
            break;
        }
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
