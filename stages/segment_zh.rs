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
//!
//! Memory: one `Range<u32>` (8 bytes) per word on each document, which is the stage's
//! O(document) cost: measured ~2.3 bytes per byte of Chinese web text (`docs/memory.md`),
//! up to 8/2 = 4 bytes per byte for single-letter ASCII words. jieba sees the text
//! in pieces of at most 64 KiB cut where it restarts anyway ([`jieba_pieces`]: same words
//! as one call), so its own tables (~50 bytes per character of the piece) stay at a few
//! MB per thread; documents over 1 MiB are segmented twice (count, then fill an exactly
//! sized vector) so the word list has no growth copy. The jieba dictionary (~30 MB) is
//! built once per node (or once per process for [`default_jieba`]) and shared by all
//! threads. Measured figures: `docs/memory.md`.
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

use crate::attrs::AttrDecl;
use crate::document::{DocBatch, Document};
use crate::error::{Error, Result};
use crate::stage::{
    check_file, parse_config, BuildCtx, Emitter, Kind, Node, Role, StageConfig, Transform,
    OUT_REJECTED,
};

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
    matches!(
        lang,
        "zh" | "wuu" | "yue" | "gan" | "zh-Hans" | "zh-Hant" | "cmn"
    )
}

#[inline]
fn is_blank(s: &str) -> bool {
    s.chars().all(char::is_whitespace)
}

/// Largest piece of text handed to jieba in one call, in bytes. jieba's working memory is
/// ~50 bytes per character of the piece (its DAG, route and character tables), so one
/// giant call on a whitespace-free document grew to tens of bytes per document byte.
pub const JIEBA_PIECE_BYTES: usize = 64 << 10;

/// Documents above this many bytes are segmented in two passes (count, then fill a vector
/// of exactly that size), so the word list never has a growth copy or slack capacity.
const TWO_PASS_BYTES: usize = 1 << 20;

/// Whether jieba never joins `c` with the next character: `c` is outside jieba's `re_han`
/// class (CJK ideographs, ASCII alphanumerics and `+#&._%-`; [`is_han`] covers a superset
/// of its ideograph ranges), so jieba emits it as a token of its own and starts afresh
/// after it. `\r` is excluded so a `\r\n` pair stays whole.
#[inline]
fn jieba_breaks_after(c: char) -> bool {
    let joins = c.is_ascii_alphanumeric()
        || matches!(c, '+' | '#' | '&' | '.' | '_' | '%' | '-' | '\r')
        || is_han(c);
    !joins
}

/// Split `text` into pieces of at most `max` bytes for jieba, each ending just after a
/// character jieba breaks after, so segmenting the pieces one by one gives exactly the
/// tokens of segmenting the whole. Only a run of more than `max` bytes with no such
/// character (no punctuation, space or newline in 20,000+ ideographs) is cut at a plain
/// character boundary; a word straddling that cut becomes two.
pub fn jieba_pieces(text: &str, max: usize) -> impl Iterator<Item = (usize, &str)> {
    let max = max.max(4);
    let mut start = 0usize;
    std::iter::from_fn(move || {
        if start >= text.len() {
            return None;
        }
        let rest = &text[start..];
        let end = if rest.len() <= max {
            rest.len()
        } else {
            let mut cap = max;
            while !rest.is_char_boundary(cap) {
                cap -= 1;
            }
            rest[..cap]
                .char_indices()
                .rev()
                .find(|(_, c)| jieba_breaks_after(*c))
                .map_or(cap, |(i, c)| i + c.len_utf8())
        };
        let piece = (start, &rest[..end]);
        start += end;
        Some(piece)
    })
}

/// Collect spans from a producer, in two passes for big texts (see [`TWO_PASS_BYTES`]).
fn collect_spans(len: usize, produce: impl Fn(&mut dyn FnMut(Range<u32>))) -> Vec<Range<u32>> {
    if len <= TWO_PASS_BYTES {
        let mut v = Vec::new();
        produce(&mut |r| v.push(r));
        return v;
    }
    let mut n = 0usize;
    produce(&mut |_| n += 1);
    let mut v = Vec::with_capacity(n);
    produce(&mut |r| v.push(r));
    v
}

/// Segment Chinese text with jieba. Returns byte spans of the non-whitespace tokens,
/// in order. Pure: same text, dictionary and `hmm` give the same spans. The text goes to
/// jieba in pieces of at most [`JIEBA_PIECE_BYTES`] cut where jieba itself restarts (see
/// [`jieba_pieces`]), so working memory is bounded per piece and the spans are the same as
/// one call's. Spans are `u32`: a text over 4 GiB is cut at 4 GiB (`run.max_doc_bytes`
/// keeps documents far below that).
pub fn segment(jieba: &Jieba, text: &str, hmm: bool) -> Vec<Range<u32>> {
    let text = &text[..floor_boundary(text, u32::MAX as usize)];
    collect_spans(text.len(), |f| {
        for (base, piece) in jieba_pieces(text, JIEBA_PIECE_BYTES) {
            for t in jieba.cut(piece, hmm) {
                if !is_blank(t.word) {
                    f((base + t.byte_start) as u32..(base + t.byte_end) as u32);
                }
            }
        }
    })
}

/// The largest char boundary of `s` at or below `i`.
pub(crate) fn floor_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    let mut i = i;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Segment non-Chinese text on Unicode word boundaries (UAX #29); whitespace dropped.
pub fn segment_unicode(text: &str) -> Vec<Range<u32>> {
    let text = &text[..floor_boundary(text, u32::MAX as usize)];
    collect_spans(text.len(), |f| {
        text.split_word_bound_indices()
            .filter(|(_, w)| !is_blank(w))
            .for_each(|(i, w)| f(i as u32..(i + w.len()) as u32))
    })
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
            // Load the shared dictionary (~0.1 CPU-s) now, beside the rest of the graph's
            // build (tokenizers, models), rather than on the first batch, where every
            // worker would wait for it.
            std::thread::spawn(default_jieba);
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
    fn attrs(&self) -> Vec<AttrDecl> {
        vec![AttrDecl::int("segment_zh.words")]
    }

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
        assert_eq!(
            w,
            [
                "我",
                "来到",
                "北京",
                "清华大学",
                "。",
                "今天天气",
                "很",
                "好"
            ]
        );
    }

    #[test]
    fn pieces_give_the_same_words_as_one_call() {
        let base =
            "我来到北京清华大学。今天天气很好，他来到了网易杭研大厦! abc_def 3.5km\r\n第二行";
        let text = base.repeat(40);
        for hmm in [false, true] {
            let whole: Vec<Range<u32>> = default_jieba()
                .cut(&text, hmm)
                .into_iter()
                .filter(|t| !is_blank(t.word))
                .map(|t| t.byte_start as u32..t.byte_end as u32)
                .collect();
            // The longest run without a break is 36 bytes (`第二行我来到北京清华大学`).
            for max in [40, 64, 300] {
                let mut got = Vec::new();
                let mut joined = String::new();
                for (b, p) in jieba_pieces(&text, max) {
                    assert_eq!(b, joined.len());
                    joined.push_str(p);
                    assert!(p.len() <= max, "{max}: {p:?}");
                    for t in default_jieba().cut(p, hmm) {
                        if !is_blank(t.word) {
                            got.push((b + t.byte_start) as u32..(b + t.byte_end) as u32);
                        }
                    }
                }
                assert_eq!(joined, text);
                assert_eq!(got, whole, "hmm {hmm} max {max}");
            }
            assert_eq!(segment(default_jieba(), &text, hmm), whole);
        }
        // A run with nowhere to break is cut at a char boundary within the cap.
        let run = "中".repeat(10);
        let p: Vec<&str> = jieba_pieces(&run, 7).map(|(_, p)| p).collect();
        assert_eq!(p.concat(), run);
        assert!(p.iter().all(|x| x.len() <= 7));
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
        let texts = [
            "中文维基百科是维基百科的中文版本。",
            "Plain English text.",
            "",
        ];
        let mut prev: Option<Vec<Document>> = None;
        for bs in [1, 3, 1000] {
            let (out, _) = run_transform_docs(&s, docs(&texts), bs);
            assert_eq!(out.len(), 3);
            let w0: Vec<&str> = out[0].word_strs().unwrap().collect();
            assert_eq!(
                w0,
                [
                    "中文",
                    "维基百科",
                    "是",
                    "维基百科",
                    "的",
                    "中文",
                    "版本",
                    "。"
                ]
            );
            assert_eq!(out[2].words.as_deref(), Some(&[][..]));
            assert_eq!(out[1].attrs["segment_zh.words"], 4.0);
            if let Some(p) = &prev {
                assert_eq!(p, &out);
            }
            prev = Some(out);
        }
    }
}
