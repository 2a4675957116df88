//! `exact_dedup`: drop documents whose normalized text (or normalized URL) was seen before.
//!
//! The cheapest dedup catches the most common waste: the same page fetched twice, mirrored,
//! or re-crawled with different whitespace or capitalisation. Each document's text is
//! normalized (configurable: case, whitespace, punctuation, digits) and hashed with
//! xxh3-128 (seeded); with `url: true` the normalized `meta["url"]` is checked too. The
//! **first occurrence in input order is kept**; later ones go to `rejected` with reason
//! `duplicate_text` or `duplicate_url`, `detail = "duplicate_of=<first id>"` and
//! `meta["duplicate_of"] = <first id>`.
//!
//! Normalization (each switch independent, applied in one pass):
//! * `lowercase`: Unicode lower-case.
//! * `collapse_whitespace`: runs of whitespace become one space; leading/trailing trimmed.
//! * `strip_punctuation`: Unicode punctuation and symbols removed (ASCII and CJK, e.g. `，。「」`).
//! * `normalize_digits`: every decimal digit becomes `0` (dates, counters, prices).
//!
//! URL normalization: scheme dropped (`http`≡`https`), host lower-cased, leading `www.`
//! and default ports dropped, fragment dropped, `utm_*` query parameters dropped, trailing
//! `/` of the path dropped.
//!
//! * Reads: `text`, `meta["url"]`. Writes: `meta["duplicate_of"]` on rejected documents.
//! * Memory: per distinct kept document, one 16-byte hash in a hash map (≈ 20 B/0.875 load,
//!   up to ≈ 46 B after growth) + a `u32` index + the document id (8 B offset + id bytes),
//!   and the same again per distinct URL when `url: true`. About 60–80 B + id length per
//!   document: 50 M documents ≈ 4–5 GiB.
//!
//! ```yaml
//! exact:
//!   kind: exact_dedup
//!   inputs: [clean]
//!   lowercase: true
//!   collapse_whitespace: true
//!   strip_punctuation: false
//!   normalize_digits: false
//!   url: true
//! ```

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128_with_seed;

use crate::document::DocBatch;
use crate::error::Result;
use crate::stage::{parse_config, Emitter, Kind, Node, Role, Stage, StageConfig, OUT_REJECTED};

/// Config for `exact_dedup`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Lower-case the text before hashing. Default true.
    #[serde(default = "yes")]
    pub lowercase: bool,
    /// Collapse whitespace runs to one space and trim. Default true.
    #[serde(default = "yes")]
    pub collapse_whitespace: bool,
    /// Remove punctuation and symbols before hashing. Default false.
    #[serde(default)]
    pub strip_punctuation: bool,
    /// Replace every digit with `0` before hashing. Default false.
    #[serde(default)]
    pub normalize_digits: bool,
    /// Also drop documents whose normalized `meta["url"]` was seen. Default false.
    #[serde(default)]
    pub url: bool,
    /// Seed of the xxh3-128 hash. Default 0.
    #[serde(default)]
    pub seed: u64,
}

fn yes() -> bool {
    true
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lowercase: true,
            collapse_whitespace: true,
            strip_punctuation: false,
            normalize_digits: false,
            url: false,
            seed: 0,
        }
    }
}

impl StageConfig for Config {}

/// Normalize text per the config (see the module docs).
pub fn normalize_text(text: &str, cfg: &Config) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        if cfg.collapse_whitespace && c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if cfg.strip_punctuation && is_punct_or_symbol(c) {
            // Punctuation separates like whitespace: "年，Peking" ≡ "年。 Peking".
            if cfg.collapse_whitespace {
                pending_space = !out.is_empty();
            }
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        if cfg.normalize_digits && c.is_ascii_digit() {
            out.push('0');
        } else if cfg.lowercase && !c.is_lowercase() {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Unicode punctuation and symbols (ASCII punctuation, General Punctuation, CJK Symbols and
/// Punctuation, full-width forms) — no Unicode tables needed for the ranges that matter.
pub fn is_punct_or_symbol(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    matches!(c as u32,
        0x00A1..=0x00BF | 0x00D7 | 0x00F7 | 0x2000..=0x206F | 0x20A0..=0x20CF | 0x2100..=0x214F
        | 0x2190..=0x23FF | 0x2500..=0x27BF | 0x2E00..=0x2E7F | 0x3000..=0x303F | 0x30FB
        | 0xFE10..=0xFE1F | 0xFE30..=0xFE4F | 0xFE50..=0xFE6F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20
        | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65 | 0xFFE0..=0xFFEE)
}

/// Normalize a URL for duplicate detection (see the module docs).
pub fn normalize_url(url: &str) -> String {
    let u = url.trim();
    let u = u.split('#').next().unwrap_or(u);
    let rest = match u.find("://") {
        Some(i) => &u[i + 3..],
        None => u,
    };
    let (authority, path_query) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let mut host = authority.to_ascii_lowercase();
    if let Some(h) = host.strip_prefix("www.") {
        host = h.to_string();
    }
    for port in [":80", ":443"] {
        if let Some(h) = host.strip_suffix(port) {
            host = h.to_string();
        }
    }
    let (path, query) = match path_query.find('?') {
        Some(i) => (&path_query[..i], &path_query[i + 1..]),
        None => (path_query, ""),
    };
    let path = path.trim_end_matches('/');
    let params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.to_ascii_lowercase().starts_with("utm_"))
        .collect();
    let mut out = host;
    out.push_str(path);
    if !params.is_empty() {
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[derive(Debug, Default, Serialize)]
struct Counters {
    docs: u64,
    kept: u64,
    duplicate_text: u64,
    duplicate_url: u64,
}

/// The `exact_dedup` stage.
pub struct ExactDedup {
    cfg: Config,
    texts: HashMap<[u64; 2], u32>,
    urls: HashMap<[u64; 2], u32>,
    id_bytes: Vec<u8>,
    id_ends: Vec<u64>,
    counters: Counters,
}

impl ExactDedup {
    /// Build from a config.
    pub fn new(cfg: Config) -> Self {
        ExactDedup {
            cfg,
            texts: HashMap::new(),
            urls: HashMap::new(),
            id_bytes: Vec::new(),
            id_ends: Vec::new(),
            counters: Counters::default(),
        }
    }

    fn hash(&self, s: &str) -> [u64; 2] {
        let h = xxh3_128_with_seed(s.as_bytes(), self.cfg.seed);
        [h as u64, (h >> 64) as u64]
    }

    fn id_of(&self, i: u32) -> &str {
        let end = self.id_ends[i as usize] as usize;
        let start = if i == 0 {
            0
        } else {
            self.id_ends[i as usize - 1] as usize
        };
        std::str::from_utf8(&self.id_bytes[start..end]).unwrap_or("")
    }

    /// Resident bytes of the state (hash maps approximated by capacity × slot size).
    pub fn state_bytes(&self) -> usize {
        (self.texts.capacity() + self.urls.capacity()) * (20 + 1)
            + self.id_bytes.capacity()
            + self.id_ends.capacity() * 8
    }
}

impl Stage for ExactDedup {
    fn process(&mut self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        for mut doc in batch.docs {
            self.counters.docs += 1;
            let th = self.hash(&normalize_text(&doc.text, &self.cfg));
            if let Some(&first) = self.texts.get(&th) {
                let id = self.id_of(first).to_string();
                self.counters.duplicate_text += 1;
                doc.meta.insert("duplicate_of".into(), id.clone());
                out.reject(doc, "duplicate_text", None, format!("duplicate_of={id}"));
                continue;
            }
            let uh = if self.cfg.url {
                doc.meta
                    .get("url")
                    .filter(|u| !u.trim().is_empty())
                    .map(|u| self.hash(&normalize_url(u)))
            } else {
                None
            };
            if let Some(uh) = uh {
                if let Some(&first) = self.urls.get(&uh) {
                    let id = self.id_of(first).to_string();
                    self.counters.duplicate_url += 1;
                    doc.meta.insert("duplicate_of".into(), id.clone());
                    out.reject(doc, "duplicate_url", None, format!("duplicate_of={id}"));
                    continue;
                }
            }
            let n = self.id_ends.len() as u32;
            self.id_bytes.extend_from_slice(doc.id.as_bytes());
            self.id_ends.push(self.id_bytes.len() as u64);
            self.texts.insert(th, n);
            if let Some(uh) = uh {
                self.urls.insert(uh, n);
            }
            self.counters.kept += 1;
            out.emit(doc);
        }
        Ok(())
    }

    fn stats(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "counters": self.counters,
            "distinct_texts": self.texts.len(),
            "distinct_urls": self.urls.len(),
            "state_bytes": self.state_bytes(),
        }))
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "exact_dedup",
        doc: "Drop documents whose normalized text (xxh3-128) or normalized URL was seen before; keep the first.",
        role: Role::Stage,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Stage(Box::new(ExactDedup::new(cfg))))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Document;
    use crate::testing::{docs, run_stage_docs};

    #[test]
    fn normalization_switches() {
        let all = Config {
            strip_punctuation: true,
            normalize_digits: true,
            ..Config::default()
        };
        assert_eq!(
            normalize_text("  Hello,\n\tWORLD 2024! ", &Config::default()),
            "hello, world 2024!"
        );
        assert_eq!(
            normalize_text("  Hello,\n\tWORLD 2024! ", &all),
            "hello world 0000"
        );
        assert_eq!(
            normalize_text("北京，2008年「奥运会」。", &all),
            "北京 0000年 奥运会"
        );
        let none = Config {
            lowercase: false,
            collapse_whitespace: false,
            ..Config::default()
        };
        assert_eq!(normalize_text(" A  b ", &none), " A  b ");
    }

    #[test]
    fn keeps_first_occurrence_under_normalization() {
        let texts = [
            "北京大学创办于1898年。  Peking University",
            "北京大学创办于1898年。 peking   university\n",
            "北京大学创办于1898年，Peking University",
            "完全不同的文本",
        ];
        for bs in [1, 3, 1000] {
            let mut s = ExactDedup::new(Config::default());
            let (out, rej) = run_stage_docs(&mut s, docs(&texts), bs);
            assert_eq!(
                out.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
                vec!["t0", "t2", "t3"]
            );
            assert_eq!(rej.len(), 1);
            assert_eq!(rej[0].id, "t1");
            let r = rej[0].reject.as_ref().unwrap();
            assert_eq!(
                (r.reason.as_str(), r.detail.as_str()),
                ("duplicate_text", "duplicate_of=t0")
            );
            assert_eq!(rej[0].meta["duplicate_of"], "t0");
        }
        // With punctuation stripped, the full-width comma variant is a duplicate too.
        let mut s = ExactDedup::new(Config {
            strip_punctuation: true,
            ..Config::default()
        });
        let (out, rej) = run_stage_docs(&mut s, docs(&texts), 2);
        assert_eq!(out.len(), 2);
        assert_eq!(
            rej.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec!["t1", "t2"]
        );
    }

    #[test]
    fn url_dedup_on_normalized_urls() {
        assert_eq!(
            normalize_url("HTTPS://www.Example.com:443/a/b/?utm_source=x&id=3#frag"),
            "example.com/a/b?id=3"
        );
        assert_eq!(normalize_url("http://example.com"), "example.com");
        let mut d = docs(&["one text", "another text", "third text", "fourth"]);
        let urls = [
            "http://example.com/a",
            "https://www.example.com/a/",
            "http://example.com/b",
            "",
        ];
        for (doc, u) in d.iter_mut().zip(urls) {
            doc.meta.insert("url".into(), u.into());
        }
        d.push(Document::new("t4", "test", "no url at all"));
        let mut s = ExactDedup::new(Config {
            url: true,
            ..Config::default()
        });
        let (out, rej) = run_stage_docs(&mut s, d, 3);
        assert_eq!(
            out.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec!["t0", "t2", "t3", "t4"]
        );
        assert_eq!(rej[0].reject.as_ref().unwrap().reason, "duplicate_url");
        assert_eq!(rej[0].meta["duplicate_of"], "t0");
        let st = s.stats().unwrap();
        assert_eq!(st["counters"]["duplicate_url"], 1);
    }
}
