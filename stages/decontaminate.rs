//! `decontaminate`: remove (or redact) documents that share long n-grams with benchmark
//! sets, so a lab can show its training data does not contain the tests it reports.
//!
//! Each benchmark is JSONL files plus the fields that hold its text (question, passage,
//! choices; a field may be a string or a list of strings). Text from both sides is cut
//! into two kinds of units, and n-grams of each kind are matched separately:
//!
//! * **Chinese: character n-grams** (default 13) over the sequence of CJK ideographs,
//!   ignoring punctuation, spaces and Latin text between them. Character n-grams because
//!   Chinese has no spaces and word segmentation differs between tools.
//! * **English: word n-grams** (default 13) over lowercased alphanumeric words (non-CJK),
//!   ignoring punctuation, as in the GPT-3 and Llama contamination studies.
//!
//! Benchmark entries shorter than n units in both kinds cannot be matched and are counted
//! in `stats.json` (`entries_too_short`). A document is contaminated when it contains at
//! least `min_matches` distinct benchmark n-grams. Then, with `mode: remove` (default), it
//! goes to `rejected` with reason `contaminated`, score = matching n-grams, detail naming
//! the benchmark(s) and the first matching n-gram as it appears in the document. With
//! `mode: redact` every matching span is cut out (replaced by `redact_with`), the text's
//! derived fields (`words`, `tokens`) are cleared, and the document goes on.
//!
//! * Reads: `text`. Writes: `attrs["decontaminate.matches"]` (matched n-grams, only on
//!   matched documents), and `text` in redact mode.
//! * Stats (`stats.json` `extra`): per benchmark `entries`, `ngrams`, `entries_too_short`,
//!   `docs_matched`, `ngram_matches`; totals `docs_scanned`, `docs_removed`, `docs_redacted`.
//! * Memory: the n-gram index, 12 bytes per distinct benchmark n-gram plus hash-map
//!   overhead (about 24 bytes in all); GSM8K test (1,319 questions) gives ~55k n-grams,
//!   ~1.3 MB. Nothing grows with the corpus.
//! * Hashing: xxh3-64 with fixed seeds, separate for the two unit kinds. A 64-bit hash
//!   collision could flag a clean document; at 10^6 index entries the chance per document
//!   n-gram is ~10^-13.
//!
//! ```yaml
//! decont:
//!   kind: decontaminate
//!   inputs: [dedup]
//!   benchmarks:
//!     - name: gsm8k
//!       paths: [samples/benchmarks/gsm8k_test.jsonl]
//!       fields: [question]
//!   zh_ngram: 13
//!   en_ngram: 13
//!   mode: remove        # or redact
//! ```

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::document::DocBatch;
use crate::error::{Error, Result};
use crate::stage::{
    parse_config, BuildCtx, Checks, Emitter, Kind, Node, Role, StageConfig, Transform, OUT_REJECTED,
};

const ZH_SEED: u64 = 0x5A48_4E47_5241_4D31; // "ZHNGRAM1"
const EN_SEED: u64 = 0x454E_4E47_5241_4D31; // "ENNGRAM1"
const WORD_SEED: u64 = 0x574F_5244_5345_4544;

/// One benchmark set.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Benchmark {
    /// Name used in stats and reject details, e.g. `gsm8k`.
    pub name: String,
    /// JSONL files (globs allowed; `.gz`/`.zst` decompressed).
    pub paths: Vec<String>,
    /// Top-level fields whose text is indexed (string or list of strings), e.g. `[question]`.
    pub fields: Vec<String>,
}

/// What to do with a contaminated document.
#[derive(
    Debug, Clone, Copy, Deserialize, Serialize, schemars::JsonSchema, PartialEq, Eq, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Send it to `rejected` (default).
    #[default]
    Remove,
    /// Cut the matching spans out and keep the rest.
    Redact,
}

/// Config for `decontaminate`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Benchmark sets to protect. Required, at least one.
    pub benchmarks: Vec<Benchmark>,
    /// Chinese n-gram length in CJK characters. Default 13.
    #[serde(default = "default_n")]
    pub zh_ngram: usize,
    /// English n-gram length in words. Default 13.
    #[serde(default = "default_n")]
    pub en_ngram: usize,
    /// Distinct matching n-grams that make a document contaminated. Default 1.
    #[serde(default = "default_min_matches")]
    pub min_matches: usize,
    /// `remove` (default) or `redact`.
    #[serde(default)]
    pub mode: Mode,
    /// Replacement for each redacted span (redact mode). Default empty.
    #[serde(default)]
    pub redact_with: String,
}

fn default_n() -> usize {
    13
}
fn default_min_matches() -> usize {
    1
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        let mut c = Checks::new();
        c.non_empty("benchmarks", self.benchmarks.is_empty());
        c.at_least("zh_ngram", self.zh_ngram, 1);
        c.at_least("en_ngram", self.en_ngram, 1);
        c.at_least("min_matches", self.min_matches, 1);
        let mut names = std::collections::BTreeSet::new();
        for (i, b) in self.benchmarks.iter().enumerate() {
            if b.name.is_empty() || !names.insert(b.name.clone()) {
                c.problem(
                    &format!("benchmarks[{i}].name"),
                    "must be non-empty and unique",
                );
            }
            c.non_empty(&format!("benchmarks[{i}].fields"), b.fields.is_empty());
            c.non_empty(&format!("benchmarks[{i}].paths"), b.paths.is_empty());
            for path in &b.paths {
                if let Err(e) = expand_one(path) {
                    c.problem(&format!("benchmarks[{i}].paths"), e);
                }
            }
        }
        c.into_vec()
    }
}

fn expand_one(p: &str) -> Result<Vec<String>> {
    crate::io::expand_paths(&[p.to_string()])
}

/// Whether a character is a CJK ideograph (the unit of Chinese n-grams).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2EBEF
        | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F | 0x30000..=0x3134F)
}

/// The two unit sequences of a text, each unit with its byte span.
#[derive(Debug, Default)]
pub struct Units {
    /// CJK ideographs (code points).
    pub zh: Vec<(u32, Range<usize>)>,
    /// Lowercased word hashes.
    pub en: Vec<(u64, Range<usize>)>,
}

/// Cut a text into CJK characters and lowercased words.
pub fn units(text: &str) -> Units {
    let mut u = Units::default();
    let mut word = String::new();
    let mut wstart = 0usize;
    let flush = |word: &mut String, wstart: usize, end: usize, u: &mut Units| {
        if !word.is_empty() {
            u.en.push((xxh3_64_with_seed(word.as_bytes(), WORD_SEED), wstart..end));
            word.clear();
        }
    };
    for (i, c) in text.char_indices() {
        if is_cjk(c) {
            flush(&mut word, wstart, i, &mut u);
            u.zh.push((c as u32, i..i + c.len_utf8()));
        } else if c.is_alphanumeric() {
            if word.is_empty() {
                wstart = i;
            }
            if c.is_ascii() {
                word.push(c.to_ascii_lowercase());
            } else {
                word.extend(c.to_lowercase());
            }
        } else {
            flush(&mut word, wstart, i, &mut u);
        }
    }
    flush(&mut word, wstart, text.len(), &mut u);
    u
}

fn zh_hash(w: &[(u32, Range<usize>)], buf: &mut Vec<u8>) -> u64 {
    buf.clear();
    for (c, _) in w {
        buf.extend_from_slice(&c.to_le_bytes());
    }
    xxh3_64_with_seed(buf, ZH_SEED)
}

fn en_hash(w: &[(u64, Range<usize>)], buf: &mut Vec<u8>) -> u64 {
    buf.clear();
    for (h, _) in w {
        buf.extend_from_slice(&h.to_le_bytes());
    }
    xxh3_64_with_seed(buf, EN_SEED)
}

/// Per-benchmark counters.
#[derive(Debug, Clone, Default, Serialize)]
struct BenchStats {
    entries: u64,
    ngrams: u64,
    entries_too_short: u64,
    docs_matched: u64,
    ngram_matches: u64,
}

#[derive(Debug, Default)]
struct Counters {
    docs_scanned: u64,
    docs_removed: u64,
    docs_redacted: u64,
    per: Vec<BenchStats>,
}

/// The `decontaminate` transform.
pub struct Decontaminate {
    cfg: Config,
    /// n-gram hash → benchmark index (first benchmark that has it).
    index: HashMap<u64, u32>,
    counters: Mutex<Counters>,
}

impl Decontaminate {
    /// Build: read every benchmark and index its n-grams.
    pub fn new(cfg: Config) -> Result<Self> {
        let mut index: HashMap<u64, u32> = HashMap::new();
        let mut per = vec![BenchStats::default(); cfg.benchmarks.len()];
        let mut buf = Vec::new();
        for (bi, b) in cfg.benchmarks.iter().enumerate() {
            let st = &mut per[bi];
            for pat in &b.paths {
                for path in expand_one(pat)? {
                    let text = read_all(&path)?;
                    for (ln, line) in text.lines().enumerate() {
                        if line.trim().is_empty() {
                            continue;
                        }
                        let rec: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                            Error::msg(format!(
                                "benchmark `{}`: {path}:{}: invalid JSON: {e}",
                                b.name,
                                ln + 1
                            ))
                        })?;
                        for f in &b.fields {
                            let mut texts = Vec::new();
                            match rec.get(f) {
                                Some(serde_json::Value::String(s)) => texts.push(s.as_str()),
                                Some(serde_json::Value::Array(a)) => {
                                    texts.extend(a.iter().filter_map(|x| x.as_str()))
                                }
                                _ => {}
                            }
                            for t in texts {
                                st.entries += 1;
                                let u = units(t);
                                let before = st.ngrams;
                                if u.zh.len() >= cfg.zh_ngram {
                                    for w in u.zh.windows(cfg.zh_ngram) {
                                        index.entry(zh_hash(w, &mut buf)).or_insert(bi as u32);
                                        st.ngrams += 1;
                                    }
                                }
                                if u.en.len() >= cfg.en_ngram {
                                    for w in u.en.windows(cfg.en_ngram) {
                                        index.entry(en_hash(w, &mut buf)).or_insert(bi as u32);
                                        st.ngrams += 1;
                                    }
                                }
                                if st.ngrams == before {
                                    st.entries_too_short += 1;
                                }
                            }
                        }
                    }
                }
            }
            if st.entries == 0 {
                return Err(Error::msg(format!(
                    "benchmark `{}`: no text found in fields {:?}",
                    b.name, b.fields
                )));
            }
        }
        Ok(Decontaminate {
            cfg,
            index,
            counters: Mutex::new(Counters {
                per,
                ..Default::default()
            }),
        })
    }

    /// Distinct n-grams in the index.
    pub fn index_len(&self) -> usize {
        self.index.len()
    }

    /// Matches in a text: (benchmark index, byte span of the matching n-gram), each
    /// distinct n-gram once.
    fn find(&self, text: &str) -> Vec<(u32, Range<usize>)> {
        let u = units(text);
        let mut buf = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut hits = Vec::new();
        if u.zh.len() >= self.cfg.zh_ngram {
            for w in u.zh.windows(self.cfg.zh_ngram) {
                let h = zh_hash(w, &mut buf);
                if let Some(&b) = self.index.get(&h) {
                    if seen.insert(h) {
                        hits.push((b, w[0].1.start..w[w.len() - 1].1.end));
                    }
                }
            }
        }
        if u.en.len() >= self.cfg.en_ngram {
            for w in u.en.windows(self.cfg.en_ngram) {
                let h = en_hash(w, &mut buf);
                if let Some(&b) = self.index.get(&h) {
                    if seen.insert(h) {
                        hits.push((b, w[0].1.start..w[w.len() - 1].1.end));
                    }
                }
            }
        }
        hits
    }
}

fn read_all(path: &str) -> Result<String> {
    let mut s = String::new();
    std::io::Read::read_to_string(&mut crate::io::open_input(path)?, &mut s)
        .map_err(|e| Error::io(path, e))?;
    Ok(s)
}

/// Cut `spans` (any order, may overlap) out of `text`, inserting `with` for each merged span.
pub fn redact(text: &str, spans: &[Range<usize>], with: &str) -> String {
    let mut s: Vec<Range<usize>> = spans.to_vec();
    s.sort_by_key(|r| (r.start, r.end));
    let mut merged: Vec<Range<usize>> = Vec::new();
    for r in s {
        match merged.last_mut() {
            Some(m) if r.start <= m.end => m.end = m.end.max(r.end),
            _ => merged.push(r),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for r in merged {
        out.push_str(&text[pos..r.start]);
        out.push_str(with);
        pos = r.end;
    }
    out.push_str(&text[pos..]);
    out
}

impl Transform for Decontaminate {
    fn process(&self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        let nb = self.cfg.benchmarks.len();
        let mut docs_matched = vec![0u64; nb];
        let mut ngram_matches = vec![0u64; nb];
        let (mut scanned, mut removed, mut redacted) = (0u64, 0u64, 0u64);
        for mut doc in batch.docs {
            scanned += 1;
            let hits = self.find(&doc.text);
            if hits.len() < self.cfg.min_matches {
                out.emit(doc);
                continue;
            }
            let mut per: BTreeMap<u32, u64> = BTreeMap::new();
            for (b, _) in &hits {
                *per.entry(*b).or_default() += 1;
            }
            for (b, n) in &per {
                docs_matched[*b as usize] += 1;
                ngram_matches[*b as usize] += n;
            }
            doc.attrs
                .insert("decontaminate.matches".into(), hits.len() as f64);
            match self.cfg.mode {
                Mode::Remove => {
                    removed += 1;
                    let (b0, span) = &hits[0];
                    let list: Vec<String> = per
                        .iter()
                        .map(|(b, n)| format!("{}:{n}", self.cfg.benchmarks[*b as usize].name))
                        .collect();
                    let detail = format!(
                        "benchmark={} matches={} ngram=\"{}\"",
                        if per.len() == 1 {
                            self.cfg.benchmarks[*b0 as usize].name.clone()
                        } else {
                            list.join(",")
                        },
                        hits.len(),
                        doc.text[span.clone()].replace('"', "'")
                    );
                    out.reject(doc, "contaminated", Some(hits.len() as f64), detail);
                }
                Mode::Redact => {
                    redacted += 1;
                    let spans: Vec<Range<usize>> = hits.into_iter().map(|(_, r)| r).collect();
                    let t = redact(&doc.text, &spans, &self.cfg.redact_with);
                    doc.set_text(t);
                    out.emit(doc);
                }
            }
        }
        let mut c = self
            .counters
            .lock()
            .map_err(|_| Error::msg("decontaminate: counters poisoned"))?;
        c.docs_scanned += scanned;
        c.docs_removed += removed;
        c.docs_redacted += redacted;
        for b in 0..nb {
            c.per[b].docs_matched += docs_matched[b];
            c.per[b].ngram_matches += ngram_matches[b];
        }
        Ok(())
    }

    fn stats(&self) -> Option<serde_json::Value> {
        let c = self.counters.lock().ok()?;
        let per: BTreeMap<String, &BenchStats> = self
            .cfg
            .benchmarks
            .iter()
            .zip(&c.per)
            .map(|(b, s)| (b.name.clone(), s))
            .collect();
        Some(serde_json::json!({
            "docs_scanned": c.docs_scanned,
            "docs_removed": c.docs_removed,
            "docs_redacted": c.docs_redacted,
            "index_ngrams": self.index.len(),
            "zh_ngram": self.cfg.zh_ngram,
            "en_ngram": self.cfg.en_ngram,
            "benchmarks": per,
        }))
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "decontaminate",
        doc: "Remove or redact documents sharing n-grams (zh char 13-grams, en word 13-grams) with benchmark sets.",
        role: Role::Transform,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Transform(Arc::new(Decontaminate::new(cfg)?)))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{docs, run_transform_docs};

    fn gsm8k_questions() -> Vec<String> {
        std::fs::read_to_string("samples/benchmarks/gsm8k_test.jsonl")
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["question"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    fn build(extra: serde_json::Value) -> Decontaminate {
        let mut p = serde_json::json!({
            "benchmarks": [
                {"name": "gsm8k", "paths": ["samples/benchmarks/gsm8k_test.jsonl"], "fields": ["question"]},
                {"name": "zh_bench", "paths": ["samples/text/cmrc2018_zh.jsonl"], "fields": ["text"]}
            ]
        });
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        let ctx = BuildCtx::for_tests("decont", "/tmp");
        Decontaminate::new(parse_config(&p, &ctx).unwrap()).unwrap()
    }

    /// Change every `every`-th word so that no 13-word window survives intact.
    fn perturb(q: &str, every: usize) -> String {
        q.split(' ')
            .enumerate()
            .map(|(i, w)| if i % every == every - 1 { "banana" } else { w })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn catches_planted_gsm8k_and_leaves_near_misses() {
        let d = build(serde_json::json!({}));
        let qs = gsm8k_questions();
        let planted: Vec<&String> = qs.iter().step_by(97).take(12).collect();
        let mut texts: Vec<String> = Vec::new();
        for q in &planted {
            // Planted inside Chinese web text, with different case and punctuation.
            texts.push(format!(
                "今天的数学练习题如下。{}  请写出解题过程。",
                q.to_uppercase().replace(',', " ,")
            ));
        }
        let n_planted = texts.len();
        for q in &planted {
            texts.push(perturb(q, 10)); // near miss: a word changed every 10 words
            let u = units(q);
            texts.push(q[..u.en[11].1.end].to_string()); // only the first 12 words
        }
        texts.push("北京是中华人民共和国的首都，也是全国的政治和文化中心。".into());
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        for bs in [1, 3, 1000] {
            let (out, rej) = run_transform_docs(&d, docs(&refs), bs);
            assert_eq!(rej.len(), n_planted, "batch size {bs}");
            assert_eq!(out.len(), texts.len() - n_planted);
            for r in &rej {
                let ri = r.reject.as_ref().unwrap();
                assert_eq!(ri.reason, "contaminated");
                assert!(
                    ri.detail.starts_with("benchmark=gsm8k matches="),
                    "{}",
                    ri.detail
                );
                assert!(ri.detail.contains("ngram=\""), "{}", ri.detail);
                assert!(ri.score.unwrap() >= 1.0);
            }
        }
        let st = d.stats().unwrap();
        assert_eq!(
            st["benchmarks"]["gsm8k"]["docs_matched"],
            3 * n_planted as u64
        );
        assert_eq!(st["benchmarks"]["gsm8k"]["entries"], 1319);
        assert_eq!(st["benchmarks"]["zh_bench"]["docs_matched"], 0);
    }

    #[test]
    fn chinese_char_ngrams_match_across_punctuation_changes() {
        let d = build(serde_json::json!({}));
        let wiki = std::fs::read_to_string("samples/text/cmrc2018_zh.jsonl").unwrap();
        let para: serde_json::Value = serde_json::from_str(wiki.lines().nth(5).unwrap()).unwrap();
        let p = para["text"].as_str().unwrap();
        let chars: Vec<char> = p.chars().filter(|c| is_cjk(*c)).collect();
        // 13 consecutive ideographs with punctuation and spaces inserted: still a match.
        let frag: String = chars[20..33].iter().map(|c| format!("{c} ，")).collect();
        // 12 ideographs: too short to match.
        let short: String = chars[20..32].iter().collect();
        let (out, rej) =
            run_transform_docs(&d, docs(&[&format!("无关的开头。{frag}结尾"), &short]), 1);
        assert_eq!(rej.len(), 1);
        assert!(rej[0]
            .reject
            .as_ref()
            .unwrap()
            .detail
            .starts_with("benchmark=zh_bench"));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn redact_mode_cuts_only_the_matching_span() {
        let d = build(serde_json::json!({"mode": "redact", "redact_with": "[R]"}));
        let q = &gsm8k_questions()[0];
        let text = format!("Intro line.\n{q}\nOutro line.");
        let (out, rej) = run_transform_docs(&d, docs(&[&text]), 1);
        assert!(rej.is_empty());
        // The span runs from the first to the last matching word; the final `?` stays.
        assert_eq!(out[0].text, "Intro line.\n[R]?\nOutro line.");
        assert!(out[0].attrs["decontaminate.matches"] > 10.0);
        assert_eq!(d.stats().unwrap()["docs_redacted"], 1);
    }

    #[test]
    fn min_matches_and_ngram_size_are_configurable() {
        let q = &gsm8k_questions()[1]; // "A robe takes 2 bolts of blue fiber and half that much white fiber. ..."
        let n_words = units(q).en.len();
        let strict = build(serde_json::json!({"min_matches": n_words}));
        let (out, _) = run_transform_docs(&strict, docs(&[q]), 1);
        assert_eq!(
            out.len(),
            1,
            "{n_words} words give fewer than {n_words} 13-grams"
        );
        let small = build(serde_json::json!({"en_ngram": 5}));
        let (_, rej) = run_transform_docs(
            &small,
            docs(&[&q.split(' ').take(6).collect::<Vec<_>>().join(" ")]),
            1,
        );
        assert_eq!(rej.len(), 1);
    }

    #[test]
    fn units_and_redact_helpers() {
        let u = units("Janet’s ducks, 16 个鸡蛋 lay!");
        assert_eq!(u.en.len(), 5); // janet s ducks 16 lay
        assert_eq!(u.zh.len(), 3); // 个 鸡 蛋
        assert_eq!(redact("abcdef", &[3..5, 1..2, 4..6], "_"), "a_c_");
    }

    #[test]
    fn bad_config_reports_all_problems() {
        let ctx = BuildCtx::for_tests("x", "/tmp");
        let e = parse_config::<Config>(
            &serde_json::json!({"benchmarks": [{"name": "a", "paths": ["missing.jsonl"], "fields": []}], "zh_ngram": 0}),
            &ctx,
        )
        .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
    }
}
