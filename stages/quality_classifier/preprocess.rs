//! The one text-to-fastText-line function shared by training (`sluice classifier train`,
//! `sluice classifier eval`) and inference (the `quality_classifier` stage).
//!
//! A classifier only generalises if it sees at inference exactly the token stream it was
//! trained on, so there is deliberately one function, [`line_into`], and both sides call it.
//!
//! Rules, in order:
//! 1. Chinese text (`segment_zh::wants_jieba`: a Chinese `lang`, or no `lang` and at least one
//!    Han character) is cut into jieba words: the document's `words` spans when `segment_zh`
//!    has set them (computed once upstream, reused here), otherwise `segment_zh`'s own jieba
//!    (same dictionary) with the caller's `hmm` setting, so a raw JSONL used for training
//!    gives the same tokens as the pipeline at inference.
//! 2. Any other text is split on whitespace; its `words` (Unicode word boundaries from
//!    `segment_zh`) are ignored, so an English line is the same with or without them.
//!
//! Every token is then split again on whitespace and NUL (fastText's own delimiters, so no
//! token can smuggle a separator in), lowercased, and the tokens are joined with single
//! spaces. Newlines therefore never reach fastText (a newline would end its line early).

use std::ops::Range;

use crate::stages::segment_zh;

fn is_delim(c: char) -> bool {
    c.is_whitespace() || c == '\0'
}

/// Append one token (lowercased, split on delimiters) to `out`, space-separated.
fn push_token(out: &mut String, token: &str) {
    for piece in token.split(is_delim).filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        if piece.is_ascii() {
            // Fast path: most tokens in mixed text; avoids the char-by-char Unicode tables.
            let start = out.len();
            out.push_str(piece);
            out[start..].make_ascii_lowercase();
        } else {
            for c in piece.chars() {
                if ('\u{3000}'..='\u{9FFF}').contains(&c) {
                    // CJK symbols, kana, CJK ideographs: no case mappings (fast path).
                    out.push(c);
                } else {
                    out.extend(c.to_lowercase());
                }
            }
        }
    }
}

/// Build the fastText input line for a text into `out` (cleared first).
///
/// `words` are byte spans into `text` (from `segment_zh`); spans that fall outside the text
/// or off a char boundary are skipped rather than trusted.
pub fn line_into(
    text: &str,
    words: Option<&[Range<u32>]>,
    lang: Option<&str>,
    hmm: bool,
    out: &mut String,
) {
    out.clear();
    if !segment_zh::wants_jieba(lang, text) {
        push_token(out, text);
    } else if let Some(words) = words {
        for r in words {
            if let Some(w) = text.get(r.start as usize..r.end as usize) {
                push_token(out, w);
            }
        }
    } else {
        for tok in segment_zh::default_jieba().cut(text, hmm) {
            push_token(out, tok.word);
        }
    }
}

/// Convenience form of [`line_into`] returning a new string.
pub fn line(text: &str, words: Option<&[Range<u32>]>, lang: Option<&str>, hmm: bool) -> String {
    let mut s = String::with_capacity(text.len() + text.len() / 2);
    line_into(text, words, lang, hmm, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cjk_fast_path_agrees_with_unicode_lowercase() {
        for c in ('\u{3000}'..='\u{9FFF}').filter(|c| !is_delim(*c)) {
            let mut out = String::new();
            push_token(&mut out, &format!("{c}Ä"));
            assert_eq!(out, format!("{c}Ä").to_lowercase(), "{c:?}");
        }
    }

    #[test]
    fn chinese_is_segmented_and_newlines_vanish() {
        let l = line("北京大学\n的学生在图书馆 学习。", None, None, true);
        assert!(!l.contains('\n'));
        assert!(l.contains("北京大学"), "{l}");
        assert!(!l.contains("  "));
        assert_eq!(
            l,
            line("北京大学\n的学生在图书馆 学习。", None, Some("zh"), true)
        );
    }

    #[test]
    fn words_spans_are_used_as_given() {
        let text = "中文Wiki 百科";
        // 中文 | Wiki | " " | 百科
        let words = vec![0..6, 6..10, 10..11, 11..17];
        assert_eq!(line(text, Some(&words), Some("zh"), true), "中文 wiki 百科");
        // a span off a char boundary is skipped, not a panic
        let bad = vec![0..2, 3..6];
        assert_eq!(line(text, Some(&bad), None, true), "文");
        // non-Chinese text ignores word spans: same line with or without them
        let en = "Hello, World";
        assert_eq!(
            line(en, Some(&[0..5, 5..6, 7..12]), Some("en"), true),
            "hello, world"
        );
    }

    #[test]
    fn other_languages_use_whitespace_and_lowercase() {
        assert_eq!(
            line("Hello  WORLD\tÉcole\r\n\0x", None, Some("en"), true),
            "hello world école x"
        );
        assert_eq!(line("", None, None, true), "");
        assert_eq!(line(" \n ", None, None, true), "");
    }
}
