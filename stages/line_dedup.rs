//! `line_dedup`: remove lines (or paragraphs) repeated across the corpus, CCNet style.
//!
//! Site boilerplate — navigation bars, cookie notices, "版权所有 © …", "责任编辑：…" — repeats
//! verbatim across thousands of pages and survives HTML extraction. CCNet removes every
//! line whose normalized hash occurs more than once in a shard. This stage does the same,
//! streaming:
//!
//! * Each line (or blank-line-separated paragraph with `unit: paragraph`) is normalized
//!   (trim, lower-case, whitespace collapsed, digits → `0`, as in CCNet) and hashed with
//!   seeded xxh3-64. Lines shorter than `min_line_chars` are never counted or removed.
//! * **Online counting with a lookahead window.** A document's lines are counted when it
//!   arrives; the document is held until `window_docs` more documents have arrived (or the
//!   input ends) and only then are its lines judged: a line is removed when its count —
//!   over every document before it *and* the window after it — exceeds `max_occurrences`.
//!   Hence the first copies of a boilerplate line are removed as well, as long as the repeats
//!   come within the window (site pages usually arrive together in crawl order); a line seen
//!   once never is. This gives CCNet's two-pass result for repeats within the window
//!   without a second pass over the data, and is deterministic for a given input order.
//!   (Counts are per document: a line repeated inside one page counts once.)
//! * A document whose remaining text has fewer than `min_chars` characters goes to
//!   `rejected` with reason `too_short_after_line_dedup` (score = remaining chars).
//!   Otherwise its text is replaced (`words`/`tokens` invalidated) and it gets
//!   `attrs["line_dedup.removed_lines"]` and `attrs["line_dedup.removed_frac"]` (removed
//!   share of characters).
//!
//! * Reads: `text`. Writes: `text`, the two attributes above.
//! * Memory: a hashed counter of 12 bytes per slot (`u64` hash + `u32` count), at most 7/8
//!   full, so 13.7–27.4 bytes per distinct line; it stops admitting new lines at
//!   `max_distinct_lines` (default 100 M ≈ 1.5–3 GiB), after which unseen lines are treated
//!   as unique and counted in stats (`lines_not_admitted`). Plus the held window of
//!   `window_docs` documents.
//!
//! ```yaml
//! boilerplate:
//!   kind: line_dedup
//!   inputs: [exact]
//!   unit: line              # or paragraph
//!   max_occurrences: 1      # remove lines seen more than once
//!   window_docs: 1000
//!   min_line_chars: 1
//!   min_chars: 50
//! ```

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::attrs::AttrDecl;
use crate::document::{DocBatch, Document};
use crate::error::Result;
use crate::stage::{
    parse_config, BuildCtx, Checks, Emitter, Kind, Node, Role, Stage, StageConfig, OUT_REJECTED,
};

/// What counts as one unit of deduplication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// One `\n`-terminated line.
    Line,
    /// A paragraph: lines up to a blank line.
    Paragraph,
}

/// Config for `line_dedup`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Unit of deduplication: `line` or `paragraph`. Default `line`.
    #[serde(default = "default_unit")]
    pub unit: Unit,
    /// A unit is removed when it occurs in more than this many documents. Default 1.
    #[serde(default = "default_max_occurrences")]
    pub max_occurrences: u32,
    /// Lookahead window in documents (see the module docs). Default 1000.
    #[serde(default = "default_window")]
    pub window_docs: usize,
    /// Units shorter than this (in characters, after normalization) are never removed. Default 1.
    #[serde(default = "default_min_line_chars")]
    pub min_line_chars: usize,
    /// Documents with fewer characters left are rejected. Default 50.
    #[serde(default = "default_min_chars")]
    pub min_chars: usize,
    /// Cap on distinct units held by the counter. Default 100000000.
    #[serde(default = "default_max_distinct")]
    pub max_distinct_lines: usize,
    /// Seed of the xxh3 hash. Default 0.
    #[serde(default)]
    pub seed: u64,
}

fn default_unit() -> Unit {
    Unit::Line
}
fn default_max_occurrences() -> u32 {
    1
}
fn default_window() -> usize {
    1000
}
fn default_min_line_chars() -> usize {
    1
}
fn default_min_chars() -> usize {
    50
}
fn default_max_distinct() -> usize {
    100_000_000
}

impl Default for Config {
    fn default() -> Self {
        Config {
            unit: default_unit(),
            max_occurrences: default_max_occurrences(),
            window_docs: default_window(),
            min_line_chars: default_min_line_chars(),
            min_chars: default_min_chars(),
            max_distinct_lines: default_max_distinct(),
            seed: 0,
        }
    }
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        let mut c = Checks::new();
        c.at_least("max_occurrences", self.max_occurrences, 1);
        c.at_least("max_distinct_lines", self.max_distinct_lines, 1);
        c.into_vec()
    }
}

/// Open-addressing counter `u64 → u32` (12 bytes per slot), capped in distinct keys.
#[derive(Debug)]
pub struct LineCounter {
    keys: Vec<u64>,
    counts: Vec<u32>,
    len: usize,
    cap: usize,
}

impl LineCounter {
    /// An empty counter admitting at most `cap` distinct keys.
    pub fn new(cap: usize) -> Self {
        LineCounter {
            keys: vec![0; 1024],
            counts: vec![0; 1024],
            len: 0,
            cap,
        }
    }

    fn slot(&self, key: u64) -> (usize, bool) {
        let mask = self.keys.len() - 1;
        let mut i = (key as usize) & mask;
        loop {
            let k = self.keys[i];
            if k == key {
                return (i, true);
            }
            if k == 0 {
                return (i, false);
            }
            i = (i + 1) & mask;
        }
    }

    /// Add one to `key`'s count; return false if the key is new and the cap is reached.
    pub fn incr(&mut self, key: u64) -> bool {
        let key = key.max(1);
        let (i, found) = self.slot(key);
        if found {
            self.counts[i] = self.counts[i].saturating_add(1);
            return true;
        }
        if self.len >= self.cap {
            return false;
        }
        if (self.len + 1) * 8 > self.keys.len() * 7 {
            self.grow();
            return self.incr(key);
        }
        self.keys[i] = key;
        self.counts[i] = 1;
        self.len += 1;
        true
    }

    /// The count of `key` (0 if absent).
    pub fn get(&self, key: u64) -> u32 {
        let (i, found) = self.slot(key.max(1));
        if found {
            self.counts[i]
        } else {
            0
        }
    }

    /// Distinct keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() * 8 + self.counts.capacity() * 4
    }

    fn grow(&mut self) {
        let n = self.keys.len() * 2;
        let keys = std::mem::replace(&mut self.keys, vec![0; n]);
        let counts = std::mem::replace(&mut self.counts, vec![0; n]);
        for (k, c) in keys.into_iter().zip(counts) {
            if k != 0 {
                let (i, _) = self.slot(k);
                self.keys[i] = k;
                self.counts[i] = c;
            }
        }
    }
}

/// Split text into units, each keeping its trailing separator, so that concatenating the
/// kept units reproduces the original layout.
pub fn split_units(text: &str, unit: Unit) -> Vec<&str> {
    match unit {
        Unit::Line => text.split_inclusive('\n').collect(),
        Unit::Paragraph => {
            let mut out = Vec::new();
            let mut start = 0;
            let b = text.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'\n' {
                    // A paragraph ends at a newline followed by a blank line (only whitespace).
                    let mut j = i + 1;
                    let mut blank = false;
                    while j < b.len()
                        && (b[j] == b' ' || b[j] == b'\t' || b[j] == b'\r' || b[j] == b'\n')
                    {
                        if b[j] == b'\n' {
                            blank = true;
                        }
                        j += 1;
                    }
                    if blank {
                        out.push(&text[start..j]);
                        start = j;
                        i = j;
                        continue;
                    }
                }
                i += 1;
            }
            if start < text.len() {
                out.push(&text[start..]);
            }
            out
        }
    }
}

/// CCNet-style normalization of one unit: trim, lower-case, collapse whitespace, digits → 0.
pub fn normalize_unit(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.trim().chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        if c.is_ascii_digit() {
            out.push('0');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[derive(Debug, Default, Serialize)]
struct Counters {
    docs: u64,
    docs_changed: u64,
    rejected_too_short: u64,
    units_seen: u64,
    units_removed: u64,
    chars_removed: u64,
    lines_not_admitted: u64,
}

struct Held {
    doc: Document,
    /// Per unit: its hash, or None when it is too short to judge.
    hashes: Vec<Option<u64>>,
}

/// The `line_dedup` stage.
pub struct LineDedup {
    cfg: Config,
    counter: LineCounter,
    held: VecDeque<Held>,
    counters: Counters,
}

impl LineDedup {
    /// Build from a config.
    pub fn new(cfg: Config) -> Self {
        let counter = LineCounter::new(cfg.max_distinct_lines);
        LineDedup {
            cfg,
            counter,
            held: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    fn admit(&mut self, doc: Document) {
        let mut hashes = Vec::new();
        let mut in_doc: Vec<u64> = Vec::new();
        for u in split_units(&doc.text, self.cfg.unit) {
            let norm = normalize_unit(u);
            if norm.chars().count() < self.cfg.min_line_chars || norm.is_empty() {
                hashes.push(None);
                continue;
            }
            let h = xxh3_64_with_seed(norm.as_bytes(), self.cfg.seed);
            hashes.push(Some(h));
            in_doc.push(h);
        }
        in_doc.sort_unstable();
        in_doc.dedup();
        for h in in_doc {
            self.counters.units_seen += 1;
            if !self.counter.incr(h) {
                self.counters.lines_not_admitted += 1;
            }
        }
        self.held.push_back(Held { doc, hashes });
    }

    fn judge(&mut self, h: Held, out: &mut Emitter) {
        let Held { mut doc, hashes } = h;
        self.counters.docs += 1;
        let units = split_units(&doc.text, self.cfg.unit);
        let mut kept = String::with_capacity(doc.text.len());
        let (mut removed, mut removed_chars, mut total_chars) = (0u64, 0usize, 0usize);
        for (u, h) in units.iter().zip(&hashes) {
            let n = u.chars().count();
            total_chars += n;
            let drop = h.is_some_and(|h| self.counter.get(h) > self.cfg.max_occurrences);
            if drop {
                removed += 1;
                removed_chars += n;
            } else {
                kept.push_str(u);
            }
        }
        self.counters.units_removed += removed;
        self.counters.chars_removed += removed_chars as u64;
        if removed > 0 {
            self.counters.docs_changed += 1;
            let kept = kept.trim_end().to_string();
            doc.set_text(kept);
        }
        let frac = if total_chars == 0 {
            0.0
        } else {
            removed_chars as f64 / total_chars as f64
        };
        doc.attrs
            .insert("line_dedup.removed_lines".into(), removed as f64);
        doc.attrs.insert("line_dedup.removed_frac".into(), frac);
        let left = doc.text.chars().count();
        if left < self.cfg.min_chars {
            self.counters.rejected_too_short += 1;
            out.reject(
                doc,
                "too_short_after_line_dedup",
                Some(left as f64),
                format!("removed_lines={removed} min_chars={}", self.cfg.min_chars),
            );
        } else {
            out.emit(doc);
        }
    }
}

impl Stage for LineDedup {
    fn attrs(&self) -> Vec<AttrDecl> {
        vec![
            AttrDecl::int("line_dedup.removed_lines"),
            AttrDecl::float("line_dedup.removed_frac"),
        ]
    }

    fn process(&mut self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        for doc in batch.docs {
            self.admit(doc);
            while self.held.len() > self.cfg.window_docs {
                if let Some(h) = self.held.pop_front() {
                    self.judge(h, out);
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<()> {
        while let Some(h) = self.held.pop_front() {
            self.judge(h, out);
        }
        Ok(())
    }

    fn stats(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "counters": self.counters,
            "distinct_units": self.counter.len(),
            "counter_bytes": self.counter.heap_bytes(),
        }))
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "line_dedup",
        doc: "Remove lines/paragraphs repeated across documents (CCNet style, lookahead window); reject docs left too short.",
        role: Role::Stage,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Stage(Box::new(LineDedup::new(cfg))))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{docs, run_stage_docs};

    const HEADER: &str = "首页 | 新闻 | 体育 | 娱乐 | 财经\n";
    const FOOTER: &str = "版权所有 © 2008-2024 某某网 京ICP备12345678号\n责任编辑：张三\n";

    fn page(body: &str, year: &str) -> String {
        format!("{HEADER}{body}\n{}", FOOTER.replace("2024", year))
    }

    #[test]
    fn site_boilerplate_is_removed_from_every_page() {
        let bodies = [
            "北京大学创办于1898年，初名京师大学堂，是中国近代第一所国立综合性大学。",
            "长江是亚洲第一长河和世界第三长河，全长约6300公里，流域面积约180万平方公里。",
            "上海是中华人民共和国直辖市，国家中心城市，超大城市，也是国际经济、金融、贸易中心。",
        ];
        let pages: Vec<String> = bodies
            .iter()
            .zip(["2024", "2023", "2022"])
            .map(|(b, y)| page(b, y))
            .collect();
        let mut texts: Vec<&str> = pages.iter().map(|s| s.as_str()).collect();
        // A page that is nothing but boilerplate, and an unrelated page.
        let only_chrome = format!("{HEADER}{FOOTER}");
        texts.push(&only_chrome);
        let other = "这是一篇与众不同的文章，没有任何网站模板。\n第二行也是独一无二的内容，足够长以便通过长度检查。";
        texts.push(other);
        for bs in [1, 3, 1000] {
            let mut s = LineDedup::new(Config {
                min_chars: 20,
                ..Config::default()
            });
            let (out, rej) = run_stage_docs(&mut s, docs(&texts), bs);
            let got: Vec<&str> = out.iter().map(|d| d.text.as_str()).collect();
            // The footer year differs per page but digits normalize to 0, so it still matches.
            assert_eq!(got, vec![bodies[0], bodies[1], bodies[2], other], "bs={bs}");
            assert_eq!(out[0].attrs["line_dedup.removed_lines"], 3.0);
            assert_eq!(out[3].attrs["line_dedup.removed_lines"], 0.0);
            assert_eq!(rej.len(), 1);
            assert_eq!(
                rej[0].reject.as_ref().unwrap().reason,
                "too_short_after_line_dedup"
            );
            assert_eq!(rej[0].reject.as_ref().unwrap().score, Some(0.0));
        }
    }

    #[test]
    fn window_bounds_lookahead_but_history_always_counts() {
        let texts = [
            "boilerplate line\nunique one",
            "x\nunique two",
            "boilerplate line\nunique three",
        ];
        // Window 0: the first copy is judged before the second arrives and survives;
        // the second is removed (count 2 > 1).
        let mut s = LineDedup::new(Config {
            window_docs: 0,
            min_chars: 0,
            ..Config::default()
        });
        let (out, _) = run_stage_docs(&mut s, docs(&texts), 1);
        assert_eq!(out[0].text, "boilerplate line\nunique one");
        assert_eq!(out[2].text, "unique three");
        // Window 2: both copies are removed.
        let mut s = LineDedup::new(Config {
            window_docs: 2,
            min_chars: 0,
            ..Config::default()
        });
        let (out, _) = run_stage_docs(&mut s, docs(&texts), 1);
        assert_eq!(out[0].text, "unique one");
        assert_eq!(out[2].text, "unique three");
    }

    #[test]
    fn paragraph_units_and_max_occurrences() {
        let para = "Cookie notice: we use cookies.\nClick to accept.\n\n";
        // Digits normalize to 0, so the bodies differ by words, not numbers.
        let texts: Vec<String> = ["alpha", "beta", "gamma"]
            .iter()
            .map(|w| format!("{para}Body {w} is unique."))
            .collect();
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        assert_eq!(split_units(&texts[0], Unit::Paragraph).len(), 2);
        let mut s = LineDedup::new(Config {
            unit: Unit::Paragraph,
            max_occurrences: 2,
            min_chars: 0,
            ..Config::default()
        });
        let (out, _) = run_stage_docs(&mut s, docs(&refs), 3);
        assert!(
            out.iter().all(|d| d.text.starts_with("Body ")),
            "3 copies > 2 allowed: {:?}",
            out.iter().map(|d| &d.text).collect::<Vec<_>>()
        );
        let mut s = LineDedup::new(Config {
            unit: Unit::Paragraph,
            max_occurrences: 3,
            min_chars: 0,
            ..Config::default()
        });
        let (out, _) = run_stage_docs(&mut s, docs(&refs), 3);
        assert!(out.iter().all(|d| d.text.starts_with("Cookie")));
    }

    #[test]
    fn counter_cap_is_respected() {
        let mut c = LineCounter::new(3);
        for k in 1..=3 {
            assert!(c.incr(k));
        }
        assert!(!c.incr(4));
        assert!(c.incr(2));
        assert_eq!(c.get(2), 2);
        assert_eq!(c.get(4), 0);
        let mut big = LineCounter::new(usize::MAX);
        for k in 1..5000u64 {
            big.incr(k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        assert_eq!(big.len(), 4999);
        assert_eq!(big.get(7u64.wrapping_mul(0x9E37_79B9_7F4A_7C15)), 1);
    }
}
