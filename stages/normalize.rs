//! `normalize`: canonical Unicode and clean whitespace before anything measures the text.
//!
//! Scraped Chinese text arrives with decomposed characters, zero-width joiners inside
//! words, BOMs, full-width Latin letters (`ＡＢＣ１２３`), ideographic-space indents and runs
//! of blank lines. Each of these splits what should be one word or one n-gram, so language
//! ID, segmentation, repetition rules and dedup all see noise. This stage fixes them once.
//!
//! Always, in this order:
//! 1. Unicode NFC (`unicode-normalization`; a quick check skips text already in NFC).
//! 2. `\r\n` and lone `\r` become `\n`; other control characters (Cc) are removed, `\t`
//!    counts as whitespace; zero-width and invisible format characters are removed
//!    (U+200B–U+200D, U+2060, U+FEFF, U+00AD, U+180E, bidi controls U+200E/F, U+202A–E,
//!    U+2066–9).
//! 3. Each run of horizontal whitespace (incl. U+3000 ideographic space and NBSP) becomes
//!    one ASCII space; lines are trimmed; at most `max_blank_lines` blank lines are kept
//!    between paragraphs; leading and trailing blank lines are dropped.
//!
//! Optional:
//! * `fullwidth_ascii`: full-width letters and digits (U+FF10–19, FF21–3A, FF41–5A) become
//!   ASCII. CJK punctuation (，。！？：) is left alone unless `fullwidth_punct` is also set,
//!   which maps the full-width ASCII punctuation block (U+FF01–FF5E) too.
//! * `t2s`: Traditional → Simplified with OpenCC's dictionaries and phrase tables
//!   (`ferrous-opencc`, a pure-Rust OpenCC with the dictionaries bundled). `t2s_variant`
//!   picks the OpenCC config (`t2s`, `tw2s`, `hk2s`, `tw2sp` = Taiwan phrases too). When
//!   the text changed, `meta["normalize.t2s"]` records the config used and
//!   `attrs["normalize.t2s_chars"]` how many characters differed.
//!
//! Reads `text`. Writes `text` (via `set_text`, which drops stale `words`/`tokens`, only if
//! it changed), `attrs["normalize.removed_chars"]`, and the t2s records above.
//! Rejects `empty` when nothing but whitespace/invisible characters is left.
//! Memory: one output string per document beside its input (1× the document; the NFC
//! pass streams into the cleaning pass, no per-line buffer), 2× with `t2s` (OpenCC's
//! output); after a document of 16 MiB or more the freed input goes back to the OS
//! ([`release_freed_memory`]). The OpenCC dictionaries (~5 MB) are loaded once per node
//! and shared by all threads. Measured figures: `docs/memory.md`.
//!
//! ```yaml
//! norm:
//!   kind: normalize
//!   inputs: [wiki]
//!   fullwidth_ascii: true
//!   t2s: true
//!   t2s_variant: t2s
//! ```

use std::sync::Arc;

use ferrous_opencc::config::BuiltinConfig;
use ferrous_opencc::OpenCC;
use serde::{Deserialize, Serialize};
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

use crate::attrs::AttrDecl;
use crate::document::DocBatch;
use crate::error::{Error, Result};
use crate::stage::{
    field_problem, parse_config, BuildCtx, Emitter, Kind, Node, Role, StageConfig, Transform,
    OUT_REJECTED,
};
use crate::stages::segment_zh::is_han;

/// Which OpenCC Traditional → Simplified config to use.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, schemars::JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum T2sVariant {
    /// OpenCC `t2s`: Traditional (OpenCC standard) → Simplified, characters and phrases.
    T2s,
    /// OpenCC `tw2s`: Taiwan standard → Simplified.
    Tw2s,
    /// OpenCC `hk2s`: Hong Kong standard → Simplified.
    Hk2s,
    /// OpenCC `tw2sp`: Taiwan → Simplified, with mainland vocabulary (軟體 → 软件).
    Tw2sp,
}

impl T2sVariant {
    fn builtin(self) -> BuiltinConfig {
        match self {
            T2sVariant::T2s => BuiltinConfig::T2s,
            T2sVariant::Tw2s => BuiltinConfig::Tw2s,
            T2sVariant::Hk2s => BuiltinConfig::Hk2s,
            T2sVariant::Tw2sp => BuiltinConfig::Tw2sp,
        }
    }
    fn name(self) -> &'static str {
        match self {
            T2sVariant::T2s => "t2s",
            T2sVariant::Tw2s => "tw2s",
            T2sVariant::Hk2s => "hk2s",
            T2sVariant::Tw2sp => "tw2sp",
        }
    }
}

/// Config for `normalize`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Map full-width letters and digits (ＡＢＣ１２３) to ASCII. Default false.
    #[serde(default)]
    pub fullwidth_ascii: bool,
    /// Also map full-width ASCII punctuation (U+FF01–FF5E, e.g. `，` `！` `：`) to ASCII.
    /// Changes how Chinese text reads; default false.
    #[serde(default)]
    pub fullwidth_punct: bool,
    /// Convert Traditional to Simplified Chinese with OpenCC. Default false.
    #[serde(default)]
    pub t2s: bool,
    /// OpenCC config for `t2s`: `t2s`, `tw2s`, `hk2s` or `tw2sp`. Default `t2s`.
    #[serde(default = "default_variant")]
    pub t2s_variant: T2sVariant,
    /// Blank lines kept between paragraphs (runs longer than this are shortened). Default 1.
    #[serde(default = "default_blank")]
    pub max_blank_lines: usize,
}

fn default_variant() -> T2sVariant {
    T2sVariant::T2s
}
fn default_blank() -> usize {
    1
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fullwidth_ascii: false,
            fullwidth_punct: false,
            t2s: false,
            t2s_variant: default_variant(),
            max_blank_lines: default_blank(),
        }
    }
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        let mut p = Vec::new();
        if self.fullwidth_punct && !self.fullwidth_ascii {
            p.push(field_problem(
                "fullwidth_punct",
                "requires `fullwidth_ascii: true`",
            ));
        }
        p
    }
}

/// Documents at least this big give their freed memory back to the OS at once.
pub const HUGE_DOC_BYTES: usize = 16 << 20;

/// Return the heap's free pages to the OS (glibc `malloc_trim`; a no-op elsewhere).
///
/// The runtime keeps freed memory in the process ([`crate::runtime::tune_allocator`]),
/// which is right for the many equal batches of ordinary documents but wrong after a huge
/// one: the copies a stage frees (a line buffer, the text before normalization, a parse
/// scratch) would stay resident as holes the next, bigger allocation does not fit in, so
/// peak RSS would be the sum of a document's transient copies instead of their maximum.
/// Stages call this after freeing a buffer of at least [`HUGE_DOC_BYTES`]; it walks the
/// free lists once (microseconds to milliseconds), so never per ordinary document.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the OS; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Invisible characters removed outright.
#[inline]
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}' | '\u{180E}'
        | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Horizontal whitespace: collapsed to one space.
#[inline]
fn is_hspace(c: char) -> bool {
    c != '\n' && c.is_whitespace()
}

/// Map a full-width character to ASCII under the config, or return it unchanged.
#[inline]
fn fold_width(c: char, letters: bool, punct: bool) -> char {
    let u = c as u32;
    if !(0xFF01..=0xFF5E).contains(&u) {
        return c;
    }
    let ascii = char::from_u32(u - 0xFEE0).unwrap_or(c);
    if ascii.is_ascii_alphanumeric() {
        if letters {
            ascii
        } else {
            c
        }
    } else if punct {
        ascii
    } else {
        c
    }
}

/// The whitespace / control / width pass over NFC text. Pure.
pub fn clean(
    text: &str,
    fullwidth_ascii: bool,
    fullwidth_punct: bool,
    max_blank_lines: usize,
) -> String {
    clean_chars(
        text.chars(),
        text.len(),
        fullwidth_ascii,
        fullwidth_punct,
        max_blank_lines,
    )
}

/// [`clean`] over a stream of characters (e.g. an NFC iterator, so no NFC copy of the
/// document is ever held); `len` is the expected output size in bytes.
fn clean_chars(
    text: impl Iterator<Item = char>,
    len: usize,
    fullwidth_ascii: bool,
    fullwidth_punct: bool,
    max_blank_lines: usize,
) -> String {
    // Written straight into `out` (no per-line buffer, which held a whole newline-free
    // document a second time): a line's separators are written when its first visible
    // character arrives, and its one collapsed trailing space is popped when it ends.
    struct State {
        out: String,
        blank_run: usize, // blank lines seen since the last non-blank line
        seen_content: bool,
        in_line: bool, // the current line has visible content in `out`
    }
    fn end_line(st: &mut State) {
        if st.in_line {
            if st.out.ends_with(' ') {
                st.out.pop();
            }
            st.seen_content = true;
            st.blank_run = 0;
        } else {
            st.blank_run += 1;
        }
        st.in_line = false;
    }
    let mut st = State {
        out: String::with_capacity(len),
        blank_run: 0,
        seen_content: false,
        in_line: false,
    };
    let mut chars = text.peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                end_line(&mut st);
            }
            '\n' | '\u{2028}' | '\u{2029}' | '\u{0085}' => end_line(&mut st),
            c if is_hspace(c) => {
                if st.in_line && !st.out.ends_with(' ') {
                    st.out.push(' ');
                }
            }
            c if c.is_control() || is_invisible(c) => {}
            c => {
                if !st.in_line {
                    if st.seen_content {
                        for _ in 0..=st.blank_run.min(max_blank_lines) {
                            st.out.push('\n');
                        }
                    }
                    st.in_line = true;
                }
                st.out.push(fold_width(c, fullwidth_ascii, fullwidth_punct));
            }
        }
    }
    end_line(&mut st);
    st.out
}

/// The `normalize` transform.
pub struct Normalize {
    cfg: Config,
    opencc: Option<OpenCC>,
}

impl Normalize {
    /// Build from a config (loads the OpenCC dictionaries when `t2s` is on).
    pub fn new(cfg: Config) -> Result<Self> {
        let opencc = if cfg.t2s {
            Some(
                OpenCC::from_config(cfg.t2s_variant.builtin())
                    .map_err(|e| Error::msg(format!("opencc: {e}")))?,
            )
        } else {
            None
        };
        Ok(Normalize { cfg, opencc })
    }

    /// Normalize a text; returns the new text and, when t2s changed something, the number
    /// of characters that differ.
    pub fn normalize_text(&self, text: &str) -> (String, Option<usize>) {
        let is_nfc = is_nfc_quick(text.chars()) == IsNormalized::Yes;
        if self.opencc.is_none() {
            // Without t2s, NFC streams straight into the cleaning pass: no NFC copy.
            let (cfg, len) = (&self.cfg, text.len());
            let (a, p, b) = (
                cfg.fullwidth_ascii,
                cfg.fullwidth_punct,
                cfg.max_blank_lines,
            );
            let out = if is_nfc {
                clean_chars(text.chars(), len, a, p, b)
            } else {
                clean_chars(text.nfc(), len, a, p, b)
            };
            return (out, None);
        }
        let nfc: std::borrow::Cow<str> = match is_nfc {
            true => text.into(),
            false => {
                let mut s = String::with_capacity(text.len());
                s.extend(text.nfc());
                s.into()
            }
        };
        let mut t2s_changed = None;
        let converted: std::borrow::Cow<str> = match &self.opencc {
            Some(cc) if nfc.chars().any(is_han) => {
                let s = cc.convert(&nfc);
                if s != *nfc {
                    // Counted on the fly: two `Vec<char>` copies cost 8 bytes per character.
                    let (na, nb) = (nfc.chars().count(), s.chars().count());
                    let diff = if na == nb {
                        nfc.chars().zip(s.chars()).filter(|(x, y)| x != y).count()
                    } else {
                        na.abs_diff(nb).max(1)
                    };
                    t2s_changed = Some(diff);
                    s.into()
                } else {
                    nfc
                }
            }
            _ => nfc,
        };
        let out = clean(
            &converted,
            self.cfg.fullwidth_ascii,
            self.cfg.fullwidth_punct,
            self.cfg.max_blank_lines,
        );
        (out, t2s_changed)
    }
}

impl Transform for Normalize {
    fn attrs(&self) -> Vec<AttrDecl> {
        vec![
            AttrDecl::int("normalize.removed_chars"),
            AttrDecl::int("normalize.t2s_chars"),
        ]
    }

    fn process(&self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        for mut doc in batch.docs {
            let (text, t2s) = self.normalize_text(&doc.text);
            let before = doc.text.chars().count();
            let after = text.chars().count();
            doc.attrs.insert(
                "normalize.removed_chars".into(),
                before.saturating_sub(after) as f64,
            );
            if let Some(n) = t2s {
                doc.meta.insert(
                    "normalize.t2s".into(),
                    self.cfg.t2s_variant.name().to_string(),
                );
                doc.attrs.insert("normalize.t2s_chars".into(), n as f64);
            }
            if text != doc.text {
                let old = doc.text.len();
                doc.set_text(text);
                if old >= HUGE_DOC_BYTES {
                    release_freed_memory();
                }
            }
            if doc.text.is_empty() {
                out.reject(doc, "empty", Some(0.0), "nothing left after normalization");
            } else {
                out.emit(doc);
            }
        }
        Ok(())
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "normalize",
        doc: "Unicode NFC, invisible/control removal, whitespace cleanup; optional full-width folding and OpenCC Traditional→Simplified.",
        role: Role::Transform,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Transform(Arc::new(Normalize::new(cfg)?)))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::run_transform;

    fn n(cfg: Config, t: &str) -> String {
        Normalize::new(cfg).unwrap().normalize_text(t).0
    }

    #[test]
    fn nfc_composes() {
        // "é" as e + combining acute → precomposed.
        assert_eq!(n(Config::default(), "Cafe\u{301} 咖啡"), "Caf\u{e9} 咖啡");
    }

    #[test]
    fn removes_invisible_and_control_chars() {
        let t = "\u{FEFF}中\u{200B}文\u{200D}维基\u{0007}百科\u{00AD}";
        assert_eq!(n(Config::default(), t), "中文维基百科");
    }

    #[test]
    fn whitespace_and_blank_lines() {
        let t = "\r\n\r\n　　第一段，\t有  空格。  \r\n\r\n\r\n\r\n第二段。\u{3000}\n\n";
        assert_eq!(n(Config::default(), t), "第一段， 有 空格。\n\n第二段。");
        let cfg = Config {
            max_blank_lines: 0,
            ..Config::default()
        };
        assert_eq!(n(cfg, "甲\n\n\n乙"), "甲\n乙");
    }

    #[test]
    fn fullwidth_letters_and_digits_only_by_default() {
        let t = "ＡＢＣ１２３，ｉＰｈｏｎｅ！";
        assert_eq!(n(Config::default(), t), t);
        let cfg = Config {
            fullwidth_ascii: true,
            ..Config::default()
        };
        assert_eq!(n(cfg.clone(), t), "ABC123，iPhone！");
        let cfg = Config {
            fullwidth_punct: true,
            ..cfg
        };
        assert_eq!(n(cfg, t), "ABC123,iPhone!");
        // CJK punctuation outside the full-width ASCII block is never touched.
        assert_eq!(
            n(
                Config {
                    fullwidth_ascii: true,
                    fullwidth_punct: true,
                    ..Config::default()
                },
                "好。「引号」、"
            ),
            "好。「引号」、"
        );
    }

    #[test]
    fn t2s_uses_opencc_phrases_and_records_meta() {
        let cfg = Config {
            t2s: true,
            ..Config::default()
        };
        let f = Normalize::new(cfg).unwrap();
        let (out, rej) = run_transform(
            &f,
            &[
                "這是一個繁體中文句子，頭髮很長。",
                "这已经是简体。",
                "English only.",
            ],
            2,
        );
        assert!(rej.is_empty());
        // 頭髮 → 头发 (not 头髮/头发 by chance): phrase-level conversion.
        assert_eq!(out[0].text, "这是一个繁体中文句子，头发很长。");
        assert_eq!(
            out[0].meta.get("normalize.t2s").map(String::as_str),
            Some("t2s")
        );
        assert_eq!(out[0].attrs["normalize.t2s_chars"], 6.0);
        assert!(!out[1].meta.contains_key("normalize.t2s"));
        assert!(!out[2].meta.contains_key("normalize.t2s"));

        let tw = Normalize::new(Config {
            t2s: true,
            t2s_variant: T2sVariant::Tw2sp,
            ..Config::default()
        })
        .unwrap();
        assert_eq!(tw.normalize_text("軟體和滑鼠").0, "软件和鼠标");
    }

    #[test]
    fn empty_after_cleanup_is_rejected_and_words_dropped() {
        let f = Normalize::new(Config::default()).unwrap();
        for bs in [1, 3, 1000] {
            let (out, rej) = run_transform(&f, &["\u{200B}\u{3000}\n\n", "好 好", "  好"], bs);
            assert_eq!(rej.len(), 1);
            assert_eq!(rej[0].reject.as_ref().unwrap().reason, "empty");
            assert_eq!(
                out.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
                ["好 好", "好"]
            );
            assert_eq!(out[1].attrs["normalize.removed_chars"], 2.0);
        }
    }
}
