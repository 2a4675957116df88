//! `decontaminate`: remove (or redact) documents that contain a benchmark item, so a lab
//! can show its training data does not contain the tests it reports, without throwing
//! away documents that merely share a phrase or half a question with one.
//!
//! **Matching.** Benchmark items and documents are cut into one token stream (see
//! [`tokens`]): each CJK character (and Greek letter) is a token, each Latin word or
//! number is a token, punctuation, spaces and LaTeX markup are dropped (`\theta` = `θ`,
//! `\tan` = `tan`), and every character is NFKC-folded (full-width = half-width). A
//! Chinese stem with Latin or formula options is therefore one sequence, and n-grams
//! (default 10 tokens) run across the scripts.
//!
//! **Coverage rule.** A benchmark item is one JSONL record (its `fields` joined; a
//! leading question number and score marker such as `12．（4分）` are not part of it).
//! The coverage of an item in a document is the share of the item's n-grams found in
//! the document, each n-gram weighted by the item characters it stands for (its tokens
//! plus the markup after each, at most 8 characters per token), so coverage is close to
//! "the share of the item's text found". A document is contaminated when some item has
//! coverage ≥ `min_coverage` (default 0.8). On the dev set (`docs/quality-decontam.md`)
//! items pasted in seven layouts score ≥ 0.92, the first half of an item ≤ 0.66, shared
//! topic words ≤ 0.01.
//! Items shorter than `ngram` tokens cannot be matched (`entries_too_short` in stats).
//!
//! With `mode: remove` (default) a contaminated document goes to `rejected`, reason
//! `contaminated`, score = the best item's coverage, detail naming the benchmark, the
//! item (`id_field` value and 0-based record index) and its coverage, e.g.
//! `benchmark=gaokao_zh item=gaokao-History_MCQs-0 index=0 coverage=1.000 items=1
//! ngram="…"`. With `mode: redact` the matching spans of the contaminated items are cut
//! out (replaced by `redact_with`), `words`/`tokens` are cleared, and the document goes
//! on.
//!
//! * Reads: `text`. Writes: `attrs["decontaminate.coverage"]` (best item coverage, on
//!   documents with at least one matching n-gram), and `text` in redact mode.
//! * Stats (`stats.json` `extra`): per benchmark `entries`, `ngrams`, `entries_too_short`,
//!   `docs_matched` (contaminated), `docs_partial` (some overlap, below `min_coverage`);
//!   totals `docs_scanned`, `docs_removed`, `docs_redacted`, `index_ngrams`,
//!   `index_bytes`.
//! * Memory: an index of n-gram hash → postings (item, weight): one hash-table slot per
//!   distinct n-gram (16 B + 1 control byte, table 44-88% full) plus 8 B per (n-gram,
//!   item) posting, 27-47 B per benchmark n-gram. Measured: GAOKAO MCQ (1,249 items,
//!   156,133 n-grams) + GSM8K test (1,319 items, 50,288 n-grams) = 203,165 distinct
//!   n-grams in 6.1 MB, 30 B each (`index_bytes` in stats). Per document: its tokens
//!   (32 B each) and its distinct matching n-grams. Nothing grows with the corpus.
//! * Hashing: xxh3-64 with fixed seeds (tokens, n-grams). A 64-bit collision could add
//!   one n-gram's weight to an item; it cannot reach `min_coverage` alone.
//!
//! ```yaml
//! decont:
//!   kind: decontaminate
//!   inputs: [dedup]
//!   benchmarks:
//!     - name: gaokao_zh
//!       paths: [samples/benchmarks/gaokao_mcq_zh.jsonl]
//!       fields: [question]
//!       id_field: id
//!     - name: gsm8k
//!       paths: [samples/benchmarks/gsm8k_test.jsonl]
//!       fields: [question]
//!   ngram: 10             # tokens: CJK characters, Latin words, numbers
//!   min_coverage: 0.8     # share of one item's text found in the document
//!   mode: remove          # or redact
//! ```

pub mod tokens;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::attrs::AttrDecl;
use crate::document::DocBatch;
use crate::error::{Error, Result};
use crate::stage::{
    parse_config, BuildCtx, Checks, Emitter, Kind, Node, Role, StageConfig, Transform, OUT_REJECTED,
};
use tokens::{ngram_hash, token_weights, tokens_into, Token};

pub use tokens::is_cjk;

/// Characters of item text one token may stand for (its own plus following markup).
const WEIGHT_CAP: usize = 8;

/// One benchmark set.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Benchmark {
    /// Name used in stats and reject details, e.g. `gaokao_zh`.
    pub name: String,
    /// JSONL files (globs allowed; `.gz`/`.zst` decompressed). One record = one item.
    pub paths: Vec<String>,
    /// Top-level fields whose text makes up the item (string or list of strings), joined
    /// in this order, e.g. `[question]` or `[question, choices]`.
    pub fields: Vec<String>,
    /// Field naming the item in reject details (string or number). Default `id`; records
    /// without it are named by their 0-based index.
    #[serde(default = "default_id_field")]
    pub id_field: String,
}

fn default_id_field() -> String {
    "id".into()
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
    /// N-gram length in tokens (a token is a CJK character, a Latin word or a number).
    /// Default 10.
    #[serde(default = "default_ngram")]
    pub ngram: usize,
    /// Coverage (0-1] at which a document counts as containing an item: the share of the
    /// item's text, by characters, covered by its n-grams found in the document.
    /// Default 0.8.
    #[serde(default = "default_min_coverage")]
    pub min_coverage: f64,
    /// Drop a leading question number and score marker (`12．`, `3、`, `（4分）`) from
    /// each item before indexing, so a reposted item renumbered or without its score
    /// still covers fully. Default true.
    #[serde(default = "default_true")]
    pub strip_numbering: bool,
    /// `remove` (default) or `redact`.
    #[serde(default)]
    pub mode: Mode,
    /// Replacement for each redacted span (redact mode). Default empty.
    #[serde(default)]
    pub redact_with: String,
}

fn default_ngram() -> usize {
    10
}
fn default_min_coverage() -> f64 {
    0.8
}
fn default_true() -> bool {
    true
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        let mut c = Checks::new();
        c.non_empty("benchmarks", self.benchmarks.is_empty());
        c.at_least("ngram", self.ngram, 1);
        c.number("min_coverage", self.min_coverage, (0.0, true), (1.0, false));
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

/// Keys are xxh3 values already: use them as their own hash (item ids are mixed).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    /// Item ids are small integers: spread them over all 64 bits (Fibonacci hashing), as
    /// the table uses both the low and the high bits.
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdBuild = BuildHasherDefault<IdHasher>;

/// One indexed benchmark item.
#[derive(Debug)]
struct Item {
    bench: u32,
    /// `id_field` value, or the record index.
    name: String,
    /// 0-based record index within its benchmark.
    index: u32,
    /// Sum of its n-gram weights.
    total: f64,
    /// Distinct n-grams (all found = coverage exactly 1).
    ngrams: u32,
}

/// Per-benchmark counters.
#[derive(Debug, Clone, Default, Serialize)]
struct BenchStats {
    entries: u64,
    ngrams: u64,
    entries_too_short: u64,
    docs_matched: u64,
    docs_partial: u64,
}

#[derive(Debug, Default)]
struct Counters {
    docs_scanned: u64,
    docs_removed: u64,
    docs_redacted: u64,
    per: Vec<BenchStats>,
}

/// The n-gram index: hash → a run of postings (item, weight).
struct Index {
    map: HashMap<u64, (u32, u32), IdBuild>,
    postings: Vec<(u32, f32)>,
}

impl Index {
    fn get(&self, h: u64) -> Option<&[(u32, f32)]> {
        self.map
            .get(&h)
            .map(|&(s, n)| &self.postings[s as usize..(s + n) as usize])
    }

    /// Approximate heap bytes: table slots (key, value, control byte) and postings.
    fn bytes(&self) -> usize {
        let slots = (self.map.capacity() * 8 / 7).next_power_of_two();
        slots * (std::mem::size_of::<(u64, (u32, u32))>() + 1)
            + self.postings.capacity() * std::mem::size_of::<(u32, f32)>()
    }
}

/// A matching n-gram of a document: its postings and its byte span.
type Hit<'a> = (&'a [(u32, f32)], Range<usize>);

/// The coverage result for one document.
#[derive(Debug, Default)]
pub struct Scan {
    /// Items at or above `min_coverage`: (item, coverage), best first.
    pub flagged: Vec<(u32, f64)>,
    /// Best coverage of any item (0 when nothing matched).
    pub best: f64,
    /// Item with the best coverage.
    pub best_item: Option<u32>,
    /// Spans of matching n-grams of flagged items (for redaction and details).
    pub spans: Vec<Range<usize>>,
    /// Benchmarks with some overlap below `min_coverage`.
    partial: Vec<u32>,
}

/// The `decontaminate` transform.
pub struct Decontaminate {
    cfg: Config,
    index: Index,
    items: Vec<Item>,
    counters: Mutex<Counters>,
}

/// Leading question number and score marker of an exam item.
struct Numbering {
    number: Regex,
    score: Regex,
}

impl Numbering {
    fn new() -> Result<Self> {
        let re = |p: &str| Regex::new(p).map_err(|e| Error::msg(format!("decontaminate: {e}")));
        Ok(Numbering {
            number: re(r"^\s*\d{1,3}\s*[.．、]")?,
            score: re(r"^\s*[（(]\s*\d+(?:\.\d+)?\s*分\s*[)）]")?,
        })
    }

    /// `12．（4分）已知…` → `已知…`; `10.41万人…` is left alone (a number, not a label).
    fn strip<'a>(&self, text: &'a str) -> &'a str {
        let mut s = text;
        if let Some(m) = self.number.find(s) {
            if !s[m.end()..].starts_with(|c: char| c.is_ascii_digit()) {
                s = &s[m.end()..];
            }
        }
        if let Some(m) = self.score.find(s) {
            s = &s[m.end()..];
        }
        s
    }
}

/// An item's text: its `fields` (strings or lists of strings) joined by line breaks.
fn item_text(rec: &serde_json::Value, fields: &[String]) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for f in fields {
        match rec.get(f) {
            Some(serde_json::Value::String(s)) => parts.push(s),
            Some(serde_json::Value::Array(a)) => parts.extend(a.iter().filter_map(|x| x.as_str())),
            _ => {}
        }
    }
    parts.join("\n")
}

fn item_name(rec: &serde_json::Value, id_field: &str, index: usize) -> String {
    match rec.get(id_field) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => index.to_string(),
    }
}

impl Decontaminate {
    /// Build: read every benchmark and index its items' n-grams.
    pub fn new(cfg: Config) -> Result<Self> {
        let numbering = Numbering::new()?;
        let n = cfg.ngram;
        // (hash, item, weight), one per distinct n-gram of each item.
        let mut entries: Vec<(u64, u32, f32)> = Vec::new();
        let mut items: Vec<Item> = Vec::new();
        let mut per = vec![BenchStats::default(); cfg.benchmarks.len()];
        let (mut buf, mut toks) = (Vec::new(), Vec::new());
        let mut seen: HashMap<u64, f64, IdBuild> = HashMap::default();
        for (bi, b) in cfg.benchmarks.iter().enumerate() {
            let st = &mut per[bi];
            let mut index = 0usize;
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
                        let raw = item_text(&rec, &b.fields);
                        let i = index;
                        index += 1;
                        if raw.trim().is_empty() {
                            continue;
                        }
                        st.entries += 1;
                        let body = if cfg.strip_numbering {
                            numbering.strip(&raw)
                        } else {
                            &raw
                        };
                        tokens_into(body, &mut toks);
                        if toks.len() < n {
                            st.entries_too_short += 1;
                            continue;
                        }
                        let w = token_weights(body, &toks, WEIGHT_CAP);
                        // An n-gram repeated inside the item counts once, with its
                        // largest weight.
                        seen.clear();
                        let mut wsum: f64 = w[..n].iter().sum();
                        for (j, win) in toks.windows(n).enumerate() {
                            if j > 0 {
                                wsum += w[j + n - 1] - w[j - 1];
                            }
                            let e = seen.entry(ngram_hash(win, &mut buf)).or_insert(0.0);
                            *e = e.max(wsum / n as f64);
                        }
                        let id = items.len() as u32;
                        let mut total = 0.0;
                        let mut grams: Vec<(u64, f64)> =
                            seen.iter().map(|(&h, &v)| (h, v)).collect();
                        grams.sort_by_key(|g| g.0);
                        for (h, v) in grams {
                            total += f64::from(v as f32);
                            entries.push((h, id, v as f32));
                        }
                        st.ngrams += seen.len() as u64;
                        items.push(Item {
                            bench: bi as u32,
                            name: item_name(&rec, &b.id_field, i),
                            index: i as u32,
                            total,
                            ngrams: seen.len() as u32,
                        });
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
        entries.sort_unstable_by_key(|e| (e.0, e.1));
        let distinct = entries
            .iter()
            .zip(entries.iter().skip(1))
            .filter(|(a, b)| a.0 != b.0)
            .count()
            + usize::from(!entries.is_empty());
        let mut map: HashMap<u64, (u32, u32), IdBuild> =
            HashMap::with_capacity_and_hasher(distinct, IdBuild::default());
        let mut postings = Vec::with_capacity(entries.len());
        for (k, (h, item, w)) in entries.iter().enumerate() {
            if k == 0 || entries[k - 1].0 != *h {
                map.insert(*h, (postings.len() as u32, 0));
            }
            if let Some(v) = map.get_mut(h) {
                v.1 += 1;
            }
            postings.push((*item, *w));
        }
        Ok(Decontaminate {
            cfg,
            index: Index { map, postings },
            items,
            counters: Mutex::new(Counters {
                per,
                ..Default::default()
            }),
        })
    }

    /// Distinct n-grams in the index.
    pub fn index_len(&self) -> usize {
        self.index.map.len()
    }

    /// Approximate heap bytes of the index.
    pub fn index_bytes(&self) -> usize {
        self.index.bytes()
    }

    /// Benchmark name, item name and record index of an item.
    pub fn item(&self, item: u32) -> (&str, &str, u32) {
        let it = &self.items[item as usize];
        (
            &self.cfg.benchmarks[it.bench as usize].name,
            &it.name,
            it.index,
        )
    }

    /// Coverage of every benchmark item in a text.
    pub fn scan(&self, text: &str) -> Scan {
        let n = self.cfg.ngram;
        let mut toks: Vec<Token> = Vec::new();
        tokens_into(text, &mut toks);
        let mut scan = Scan::default();
        if toks.len() < n {
            return scan;
        }
        let mut buf = Vec::with_capacity(8 * n);
        let mut seen: HashSet<u64, IdBuild> = HashSet::default();
        // Per touched item: summed weight. Hits: (postings, span) of each distinct n-gram.
        let mut acc: HashMap<u32, (f64, u32), IdBuild> = HashMap::default();
        let mut hits: Vec<Hit> = Vec::new();
        for win in toks.windows(n) {
            let h = ngram_hash(win, &mut buf);
            if let Some(post) = self.index.get(h) {
                if seen.insert(h) {
                    for &(item, w) in post {
                        let a = acc.entry(item).or_insert((0.0, 0));
                        a.0 += f64::from(w);
                        a.1 += 1;
                    }
                    hits.push((post, win[0].span.start..win[n - 1].span.end));
                }
            }
        }
        let mut covs: Vec<(u32, f64)> = acc
            .into_iter()
            .map(|(item, (w, k))| {
                let it = &self.items[item as usize];
                // Summation order differs from the index's: all found is exactly 1.
                let c = if k >= it.ngrams {
                    1.0
                } else {
                    (w / it.total).min(1.0)
                };
                (item, c)
            })
            .collect();
        // Best first; ties by item order, so the result does not depend on hash order.
        covs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(&(item, c)) = covs.first() {
            scan.best = c;
            scan.best_item = Some(item);
        }
        let min = self.cfg.min_coverage;
        scan.flagged = covs.iter().copied().filter(|c| c.1 >= min).collect();
        let mut partial: Vec<u32> = covs
            .iter()
            .filter(|c| c.1 < min)
            .map(|c| self.items[c.0 as usize].bench)
            .collect();
        partial.sort_unstable();
        partial.dedup();
        scan.partial = partial;
        if !scan.flagged.is_empty() {
            let flagged: HashSet<u32, IdBuild> = scan.flagged.iter().map(|c| c.0).collect();
            scan.spans = hits
                .into_iter()
                .filter(|(post, _)| post.iter().any(|p| flagged.contains(&p.0)))
                .map(|(_, span)| span)
                .collect();
        }
        scan
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
    fn attrs(&self) -> Vec<AttrDecl> {
        vec![AttrDecl::float("decontaminate.coverage")]
    }

    fn process(&self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        let nb = self.cfg.benchmarks.len();
        let mut docs_matched = vec![0u64; nb];
        let mut docs_partial = vec![0u64; nb];
        let (mut scanned, mut removed, mut redacted) = (0u64, 0u64, 0u64);
        for mut doc in batch.docs {
            scanned += 1;
            let scan = self.scan(&doc.text);
            for b in &scan.partial {
                docs_partial[*b as usize] += 1;
            }
            if scan.best_item.is_some() {
                doc.attrs.insert("decontaminate.coverage".into(), scan.best);
            }
            let Some(&(best, cov)) = scan.flagged.first() else {
                out.emit(doc);
                continue;
            };
            let mut benches: Vec<u32> = scan
                .flagged
                .iter()
                .map(|c| self.items[c.0 as usize].bench)
                .collect();
            benches.sort_unstable();
            benches.dedup();
            for b in benches {
                docs_matched[b as usize] += 1;
            }
            match self.cfg.mode {
                Mode::Remove => {
                    removed += 1;
                    let (bench, name, index) = self.item(best);
                    let ngram = scan
                        .spans
                        .first()
                        .map_or(String::new(), |s| doc.text[s.clone()].replace('"', "'"));
                    let detail = format!(
                        "benchmark={bench} item={name} index={index} coverage={cov:.3} items={} ngram=\"{ngram}\"",
                        scan.flagged.len()
                    );
                    out.reject(doc, "contaminated", Some(cov), detail);
                }
                Mode::Redact => {
                    redacted += 1;
                    let t = redact(&doc.text, &scan.spans, &self.cfg.redact_with);
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
            c.per[b].docs_partial += docs_partial[b];
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
            "index_ngrams": self.index_len(),
            "index_bytes": self.index_bytes(),
            "ngram": self.cfg.ngram,
            "min_coverage": self.cfg.min_coverage,
            "benchmarks": per,
        }))
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "decontaminate",
        doc: "Remove or redact documents containing a benchmark item: coverage of each item's n-grams (CJK chars + Latin words, NFKC, punctuation-blind) in the document.",
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
                {"name": "gaokao_zh", "paths": ["samples/benchmarks/gaokao_mcq_zh.jsonl"], "fields": ["question"]}
            ]
        });
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        let ctx = BuildCtx::for_tests("decont", "/tmp");
        Decontaminate::new(parse_config(&p, &ctx).unwrap()).unwrap()
    }

    /// Change every `every`-th word so that no 10-word window survives intact.
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
            texts.push(perturb(q, 9)); // near miss: a word changed every 9 words
            let t = tokens::tokens(q);
            texts.push(q[..t[t.len() / 2].span.end].to_string()); // the first half
        }
        texts.push("北京是中华人民共和国的首都，也是全国的政治和文化中心。".into());
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        for bs in [1, 3, 1000] {
            let (out, rej) = run_transform_docs(&d, docs(&refs), bs);
            assert_eq!(rej.len(), n_planted, "batch size {bs}");
            assert_eq!(out.len(), texts.len() - n_planted);
            for (r, q) in rej.iter().zip(&planted) {
                let ri = r.reject.as_ref().unwrap();
                assert_eq!(ri.reason, "contaminated");
                let idx = qs.iter().position(|x| x == *q).unwrap();
                assert!(
                    ri.detail.starts_with(&format!(
                        "benchmark=gsm8k item={idx} index={idx} coverage=1.000"
                    )),
                    "{}",
                    ri.detail
                );
                assert_eq!(ri.score, Some(1.0));
            }
        }
        let st = d.stats().unwrap();
        assert_eq!(
            st["benchmarks"]["gsm8k"]["docs_matched"],
            3 * n_planted as u64
        );
        // The half questions overlap (below min_coverage), in each of the three runs.
        assert_eq!(
            st["benchmarks"]["gsm8k"]["docs_partial"],
            3 * n_planted as u64
        );
        assert_eq!(st["benchmarks"]["gsm8k"]["entries"], 1319);
        assert_eq!(st["benchmarks"]["gaokao_zh"]["entries"], 1249);
        assert_eq!(st["benchmarks"]["gaokao_zh"]["entries_too_short"], 0);
        assert_eq!(st["benchmarks"]["gaokao_zh"]["docs_matched"], 0);
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
        assert_eq!(out[0].attrs["decontaminate.coverage"], 1.0);
        assert_eq!(d.stats().unwrap()["docs_redacted"], 1);
    }

    #[test]
    fn min_coverage_and_ngram_are_configurable() {
        let q = &gsm8k_questions()[1];
        let t = tokens::tokens(q);
        // Three quarters of the question: kept by default, caught at min_coverage 0.5.
        let part = &q[..t[t.len() * 3 / 4].span.end];
        let (out, _) = run_transform_docs(&build(serde_json::json!({})), docs(&[part]), 1);
        assert_eq!(out.len(), 1);
        assert!(out[0].attrs["decontaminate.coverage"] > 0.5);
        let loose = build(serde_json::json!({"min_coverage": 0.5}));
        let (_, rej) = run_transform_docs(&loose, docs(&[part]), 1);
        assert_eq!(rej.len(), 1);
        // n-grams longer than every item: nothing is indexed.
        let long = build(serde_json::json!({"ngram": 1000}));
        let st = long.stats().unwrap();
        assert_eq!(st["index_ngrams"], 0);
        assert_eq!(st["benchmarks"]["gsm8k"]["entries_too_short"], 1319);
    }

    #[test]
    fn numbering_is_stripped_from_items_only_when_it_is_a_label() {
        let nb = Numbering::new().unwrap();
        assert_eq!(nb.strip("12．（ 4分）西周分封制"), "西周分封制");
        assert_eq!(nb.strip("2.(6 分) 四联苯"), " 四联苯");
        assert_eq!(nb.strip("3、下列说法"), "下列说法");
        assert_eq!(nb.strip("10.41万人"), "10.41万人");
        assert_eq!(nb.strip("Janet has 3 ducks."), "Janet has 3 ducks.");
    }

    #[test]
    fn redact_helper_merges_overlapping_spans() {
        assert_eq!(redact("abcdef", &[3..5, 1..2, 4..6], "_"), "a_c_");
    }

    #[test]
    fn bad_config_reports_all_problems() {
        let ctx = BuildCtx::for_tests("x", "/tmp");
        let e = parse_config::<Config>(
            &serde_json::json!({"benchmarks": [{"name": "a", "paths": ["missing.jsonl"], "fields": []}],
                "ngram": 0, "min_coverage": 1.5}),
            &ctx,
        )
        .unwrap_err();
        assert_eq!(e.len(), 4, "{e:?}");
    }
}
