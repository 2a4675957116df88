//! `segment_zh`: word segmentation, computed once and stored on the document.
//!
//! Chinese has no spaces, so every word-level rule (Gopher repetition, stopword counts,
//! n-gram dedup, classifiers) needs a segmenter. Peers run one inside each filter, or
//! count single characters. sluice segments once here with jieba-rs and stores the words
//! as byte spans in [`Document::words`]; every later stage reuses them (stages that edit
//! `text` drop them through [`Document::set_text`]).
//!
//! * Chinese documents (`lang` is `zh`/`wuu`/`yue`, or no `lang` and at least one Han
//!   character) go through jieba (`cut`, HMM on or off), with optional user dictionaries.
//! * Everything else falls back to Unicode word boundaries (UAX #29, `unicode-segmentation`).
//! * Whitespace-only tokens are dropped; punctuation tokens are kept (as datatrove's word
//!   tokenizers do), so rules can count them.
//!
//! Reads `text`, `lang`. Writes `words` and `attrs["segment_zh.words"]`. Never rejects.
//! Memory: one `Range<u32>` (8 bytes) per word on each document; the jieba dictionary
//! (~30 MB) is built once per node (or once per process for [`default_jieba`]) and shared
//! by all threads.
//!
//! Other stages call the pure function [`segment`] (or [`segment_doc`]) with
//! [`default_jieba`] when a document arrives without words.
//!
//! ```yaml
//! seg:
//!   kind: segment_zh
//!   inputs: [lid]
//!   hmm: true
//!   user_dicts: [samples/dicts/user.txt]   # optional, jieba format: `word [freq] [tag]`
//! ```

use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use jieba_rs::Jieba;
use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;

use crate::document::{DocBatch, Document};
use crate::error::{Error, Result};
use crate::stage::{check_file, parse_config, BuildCtx, Emitter, Kind, Node, Role, StageConfig, Transform, OUT_REJECTED};

/// The process-wide default jieba (bundled dictionary), built on first use and shared.
pub fn default_jieba() -> &'static Jieba {
    static J: OnceLock<Jieba> = OnceLock::new();
    J.get_or_init(Jieba::new)
}

/// Whether a character is a Han ideograph (CJK Unified Ideographs and extensions,
/// compatibility ideographs).
#[inline]
pub fn is_han(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2EBEF
        | 0x30000..=0x3134F | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// Languages segmented with jieba rather than Unicode word boundaries.
pub fn is_chinese_lang(lang: &str) -> bool {
    matches!(lang, "zh" | "wuu" | "yue" | "gan" | "zh-Hans" | "zh-Hant" | "cmn")
}

#[inline]
fn is_blank(s: &str) -> bool {
    s.chars().all(char::is_whitespace)
}

/// Segment Chinese text with jieba. Returns byte spans of the non-whitespace tokens,
/// in order. Pure: same text, dictionary and `hmm` give the same spans.
pub fn segment(jieba: &Jieba, text: &str, hmm: bool) -> Vec<Range<u32>> {
    jieba
        .cut(text, hmm)
        .into_iter()
        .filter(|t| !is_blank(t.word))
        .map(|t| t.byte_start as u32..t.byte_end as u32)
        .collect()
}

/// Segment non-Chinese text on Unicode word boundaries (UAX #29); whitespace dropped.
pub fn segment_unicode(text: &str) -> Vec<Range<u32>> {
    text.split_word_bound_indices()
        .filter(|(_, w)| !is_blank(w))
        .map(|(i, w)| i as u32..(i + w.len()) as u32)
        .collect()
}

/// Whether a document should be segmented with jieba: its `lang` is Chinese, or it has
/// no `lang` and contains a Han character.
pub fn wants_jieba(lang: Option<&str>, text: &str) -> bool {
    match lang {
        Some(l) => is_chinese_lang(l),
        None => text.chars().any(is_han),
    }
}

/// Segment a document's text the way `segment_zh` does (jieba or Unicode fallback).
pub fn segment_doc(jieba: &Jieba, doc: &Document, hmm: bool) -> Vec<Range<u32>> {
    if wants_jieba(doc.lang.as_deref(), &doc.text) {
        segment(jieba, &doc.text, hmm)
    } else {
        segment_unicode(&doc.text)
    }
}

/// Make sure `doc.words` is set, segmenting with the default jieba (HMM on) if absent.
pub fn ensure_words(doc: &mut Document) {
    if doc.words.is_none() {
        doc.words = Some(segment_doc(default_jieba(), doc, true));
    }
}

/// Config for `segment_zh`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Use jieba's HMM to join unknown words (names, new words). Default true.
    #[serde(default = "yes")]
    pub hmm: bool,
    /// User dictionaries in jieba format (one `word [freq] [tag]` per line), loaded on top
    /// of the bundled dictionary in order. Default none.
    #[serde(default)]
    pub user_dicts: Vec<PathBuf>,
    /// Re-segment documents that already carry `words`. Default false (keep them).
    #[serde(default)]
    pub overwrite: bool,
}

fn yes() -> bool {
    true
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        self.user_dicts
            .iter()
            .filter_map(|p| check_file("user_dicts", p))
            .collect()
    }
}

/// The `segment_zh` transform.
pub struct SegmentZh {
    cfg: Config,
    /// A private jieba when user dictionaries are configured; else the shared default.
    custom: Option<Arc<Jieba>>,
}

impl SegmentZh {
    /// Build from a config, loading user dictionaries.
    pub fn new(cfg: Config) -> Result<Self> {
        let custom = if cfg.user_dicts.is_empty() {
            None
        } else {
            let mut j = Jieba::new();
            for p in &cfg.user_dicts {
                let f = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
                j.load_dict(&mut std::io::BufReader::new(f))
                    .map_err(|e| Error::msg(format!("user_dicts: {}: {e}", p.display())))?;
            }
            Some(Arc::new(j))
        };
        Ok(SegmentZh { cfg, custom })
    }

    /// The jieba instance this node uses.
    pub fn jieba(&self) -> &Jieba {
        match &self.custom {
            Some(j) => j,
            None => default_jieba(),
        }
    }

    /// Segment one document in place.
    pub fn apply(&self, doc: &mut Document) {
        if doc.words.is_none() || self.cfg.overwrite {
            doc.words = Some(segment_doc(self.jieba(), doc, self.cfg.hmm));
        }
        let n = doc.words.as_ref().map_or(0, |w| w.len());
        doc.attrs.insert("segment_zh.words".into(), n as f64);
    }
}

impl Transform for SegmentZh {
    fn process(&self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        for mut doc in batch.docs {
            self.apply(&mut doc);
            out.emit(doc);
        }
        Ok(())
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "segment_zh",
        doc: "Segment words once (jieba for Chinese, Unicode word boundaries otherwise) into Document.words.",
        role: Role::Transform,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            if ctx.validate_only {
                // Building the dictionary costs ~0.3 s; validation only needs the checks.
                return Ok(Node::Transform(Arc::new(SegmentZh { cfg, custom: None })));
            }
            Ok(Node::Transform(Arc::new(SegmentZh::new(cfg)?)))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{docs, run_transform_docs};

    fn words(text: &str, spans: &[Range<u32>]) -> Vec<String> {
        spans
            .iter()
            .map(|r| text[r.start as usize..r.end as usize].to_string())
            .collect()
    }

    #[test]
    fn jieba_spans_are_byte_offsets_without_whitespace() {
        let t = "我来到北京清华大学。 今天天气很好";
        let w = words(t, &segment(default_jieba(), t, false));
        assert_eq!(w, ["我", "来到", "北京", "清华大学", "。", "今天天气", "很", "好"]);
    }

    #[test]
    fn hmm_joins_unknown_words() {
        let t = "他来到了网易杭研大厦";
        let on = words(t, &segment(default_jieba(), t, true));
        let off = words(t, &segment(default_jieba(), t, false));
        assert!(on.contains(&"杭研".to_string()), "{on:?}");
        assert!(!off.contains(&"杭研".to_string()), "{off:?}");
    }

    #[test]
    fn non_chinese_uses_unicode_words() {
        let t = "Hello, world! It's 3.5 km.";
        let w = words(t, &segment_unicode(t));
        assert_eq!(w, ["Hello", ",", "world", "!", "It's", "3.5", "km", "."]);
        let mut d = Document::new("a", "s", t);
        d.lang = Some("en".into());
        assert_eq!(segment_doc(default_jieba(), &d, true), segment_unicode(t));
    }

    #[test]
    fn user_dict_changes_segmentation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("user.txt");
        std::fs::write(&p, "杭研大厦 1000 n\n").unwrap();
        let s = SegmentZh::new(Config {
            hmm: false,
            user_dicts: vec![p],
            overwrite: false,
        })
        .unwrap();
        let (out, rej) = run_transform_docs(&s, docs(&["他来到了网易杭研大厦"]), 1);
        assert!(rej.is_empty());
        let w: Vec<&str> = out[0].word_strs().unwrap().collect();
        assert!(w.contains(&"杭研大厦"), "{w:?}");
    }

    #[test]
    fn stage_sets_words_once_at_any_batch_size() {
        let s = SegmentZh::new(Config {
            hmm: true,
            user_dicts: vec![],
            overwrite: false,
        })
        .unwrap();
        let texts = ["中文维基百科是维基百科的中文版本。", "Plain English text.", ""];
        let mut prev: Option<Vec<Document>> = None;
        for bs in [1, 3, 1000] {
            let (out, _) = run_transform_docs(&s, docs(&texts), bs);
            assert_eq!(out.len(), 3);
            let w0: Vec<&str> = out[0].word_strs().unwrap().collect();
            assert_eq!(w0, ["中文", "维基百科", "是", "维基百科", "的", "中文版", "本", "。"]);
            assert_eq!(out[2].words.as_deref(), Some(&[][..]));
            assert_eq!(out[1].attrs["segment_zh.words"], 4.0);
            if let Some(p) = &prev {
                assert_eq!(p, &out);
            }
            prev = Some(out);
        }
    }
}
