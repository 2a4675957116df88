//! Charset decoding for web pages: pure functions, tested directly.
//!
//! Evidence is weighed in the order browsers use, with one extra check that browsers do not
//! need but a corpus does: **plausibility**.
//!
//! 1. A byte-order mark (it overrides everything, as in the HTML standard).
//! 2. The HTTP `Content-Type: …; charset=` parameter.
//! 3. `<meta charset>` or `<meta http-equiv="Content-Type" content="…; charset=…">` in the
//!    first [`META_SCAN_BYTES`] bytes.
//! 4. Statistical detection with `chardetng` (the detector Firefox uses), with the URL's
//!    top-level domain as a hint.
//!
//! GB2312 and GBK labels decode as GB18030, the superset (real "GB2312" pages use GBK
//! characters all the time). Declarations lie in real crawls, so a declared legacy charset is
//! overridden when the bytes are valid UTF-8 that contain non-ASCII (a GBK or Big5 text of any
//! length is practically never valid UTF-8), and a declared charset that produces replacement
//! characters is compared with the detector's guess; the reading with fewer errors wins.
//! A declared **single-byte** charset (windows-1252/ISO-8859-1 above all, the default of
//! many CMSs and servers) decodes any byte string without a replacement character, so the
//! error count can never catch it: when the detector reads the bytes as a CJK multi-byte
//! encoding (GB18030, Big5, Shift_JIS, EUC-JP, EUC-KR), that reading has no errors and
//! its non-ASCII text is overwhelmingly CJK, the detector wins over the label
//! ([`Evidence::DetectedOverLabel`]). Real Latin text has too few high bytes in a row to
//! pass all three tests, and chardetng does not guess a CJK encoding for it.
//! `encoding_rs` does all decoding, so the output is always valid UTF-8; undecodable bytes
//! become U+FFFD and are counted so the caller can reject pages above a share.

use encoding_rs::{
    Encoding, GB18030, GBK, UTF_16BE, UTF_16LE, UTF_8, WINDOWS_1252, X_USER_DEFINED,
};

/// Bytes of the document searched for `<meta charset>` declarations. The HTML standard
/// prescans 1024 bytes; real Chinese pages often put long `<script>`/`<link>` blocks first,
/// so we look further.
pub const META_SCAN_BYTES: usize = 8192;

/// Bytes fed to the statistical detector. chardetng is confident long before this.
pub const DETECT_BYTES: usize = 64 * 1024;

/// Where the charset used for decoding came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// A byte-order mark.
    Bom,
    /// The HTTP Content-Type header.
    Http,
    /// A `<meta>` declaration in the page.
    Meta,
    /// chardetng's guess (nothing declared).
    Detected,
    /// A declaration was overridden because the bytes are valid UTF-8.
    Utf8Override,
    /// A declaration was overridden by the detector (fewer replacement characters).
    DetectedOverride,
    /// A declared single-byte charset was overridden by the detector's multi-byte CJK
    /// reading (valid, plausible CJK text; see the module doc).
    DetectedOverLabel,
    /// Nothing to decode (pure ASCII / empty) with no declaration.
    Default,
}

impl Evidence {
    /// Short name stored in `meta.charset_source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::Bom => "bom",
            Evidence::Http => "http",
            Evidence::Meta => "meta",
            Evidence::Detected => "detected",
            Evidence::Utf8Override => "utf8_override",
            Evidence::DetectedOverride => "detected_override",
            Evidence::DetectedOverLabel => "detected_over_label",
            Evidence::Default => "default",
        }
    }
}

/// A decoded page.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The text, always valid UTF-8.
    pub text: String,
    /// The encoding actually used.
    pub encoding: &'static Encoding,
    /// Where it came from.
    pub evidence: Evidence,
    /// Number of U+FFFD characters produced by decoding (malformed input sequences).
    pub replacements: usize,
    /// Number of characters in `text`.
    pub chars: usize,
}

impl Decoded {
    /// Share of characters that are replacement characters (0 for empty text).
    pub fn replacement_share(&self) -> f64 {
        if self.chars == 0 {
            0.0
        } else {
            self.replacements as f64 / self.chars as f64
        }
    }
    /// Lower-case charset name for `meta.charset` (e.g. `gb18030`, `utf-8`).
    pub fn charset_name(&self) -> String {
        self.encoding.name().to_ascii_lowercase()
    }
}

/// Map a label to an encoding, applying the corpus rules: GB2312/GBK → GB18030,
/// UTF-16 declared inside a byte stream → UTF-8 (as the HTML standard says for `<meta>`),
/// `x-user-defined` → windows-1252.
pub fn encoding_for_label(label: &str) -> Option<&'static Encoding> {
    let label = label.trim().trim_matches(|c| c == '"' || c == '\'');
    let enc = Encoding::for_label(label.as_bytes())?;
    Some(normalize(enc))
}

/// GBK is a subset of GB18030; decode the superset. (`encoding_rs`'s GBK decoder already
/// accepts four-byte GB18030 sequences, but we also want the reported charset to say so.)
pub fn normalize(enc: &'static Encoding) -> &'static Encoding {
    if enc == GBK {
        GB18030
    } else if enc == X_USER_DEFINED {
        WINDOWS_1252
    } else {
        enc
    }
}

/// The `charset=` parameter of a Content-Type header value, if any and known.
pub fn charset_from_content_type(ct: &str) -> Option<&'static Encoding> {
    let lower = ct.to_ascii_lowercase();
    let i = lower.find("charset")?;
    let rest = lower[i + 7..].trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let val: String = rest
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| !matches!(c, ';' | '"' | '\'' | ',' | ' ' | '\t'))
        .collect();
    encoding_for_label(&val)
}

/// A byte-order mark at the start: the encoding and the BOM length.
pub fn sniff_bom(bytes: &[u8]) -> Option<(&'static Encoding, usize)> {
    Encoding::for_bom(bytes)
}

/// The charset declared by a `<meta>` tag in the first [`META_SCAN_BYTES`] bytes.
///
/// Handles `<meta charset="gbk">`, `<meta charset=gbk>` and
/// `<meta http-equiv="Content-Type" content="text/html; charset=gb2312">`, in any case,
/// and skips `<!-- … -->` comments. UTF-16 declared in a `<meta>` means UTF-8 (the bytes
/// we are reading are ASCII-compatible, or we would not have found the tag).
pub fn sniff_meta(bytes: &[u8]) -> Option<&'static Encoding> {
    let hay = &bytes[..bytes.len().min(META_SCAN_BYTES)];
    let mut i = 0;
    while i < hay.len() {
        let rel = memchr::memchr(b'<', &hay[i..])?;
        i += rel;
        let rest = &hay[i..];
        if rest.starts_with(b"<!--") {
            match memchr::memmem::find(&rest[4..], b"-->") {
                Some(e) => {
                    i += 4 + e + 3;
                    continue;
                }
                None => return None,
            }
        }
        if rest.len() > 5
            && rest[..5].eq_ignore_ascii_case(b"<meta")
            && matches!(rest[5], b' ' | b'\t' | b'\n' | b'\r' | b'/')
        {
            let end = memchr::memchr(b'>', rest).unwrap_or(rest.len());
            let tag = &rest[..end];
            if let Some(enc) = charset_in_meta_tag(tag) {
                let enc = if enc == UTF_16LE || enc == UTF_16BE {
                    UTF_8
                } else {
                    enc
                };
                return Some(enc);
            }
            i += end.max(1);
        } else {
            i += 1;
        }
    }
    None
}

fn charset_in_meta_tag(tag: &[u8]) -> Option<&'static Encoding> {
    let lower: Vec<u8> = tag.iter().map(|b| b.to_ascii_lowercase()).collect();
    let pos = memchr::memmem::find(&lower, b"charset")?;
    let mut j = pos + 7;
    while j < lower.len() && lower[j].is_ascii_whitespace() {
        j += 1;
    }
    if j >= lower.len() || lower[j] != b'=' {
        return None;
    }
    j += 1;
    while j < lower.len()
        && (lower[j].is_ascii_whitespace() || lower[j] == b'"' || lower[j] == b'\'')
    {
        j += 1;
    }
    let start = j;
    while j < lower.len()
        && !matches!(
            lower[j],
            b'"' | b'\'' | b';' | b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>'
        )
    {
        j += 1;
    }
    let label = std::str::from_utf8(&lower[start..j]).ok()?;
    encoding_for_label(label)
}

/// chardetng's guess for the bytes, using the URL's top-level domain as a hint.
pub fn detect(bytes: &[u8], tld: Option<&str>) -> &'static Encoding {
    let mut det = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
    let n = bytes.len().min(DETECT_BYTES);
    det.feed(&bytes[..n], n == bytes.len());
    let tld = tld.filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric()));
    normalize(det.guess(tld.map(|t| t.as_bytes()), chardetng::Utf8Detection::Allow))
}

/// The top-level domain of a URL (`https://a.b.cn/x` → `cn`), for the detector hint.
pub fn tld_of_url(url: &str) -> Option<&str> {
    let after = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host = after.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host);
    let host = host.split(':').next()?;
    let tld = host.rsplit('.').next()?;
    if tld.is_empty() || tld.bytes().all(|b| b.is_ascii_digit()) {
        None
    } else {
        Some(tld)
    }
}

/// Whether decoded text looks like human text: no C1 control characters, and at least 80%
/// of its non-ASCII characters are letters or common punctuation (binary junk decoded as
/// windows-1252 is full of symbols and controls).
pub fn plausible_text(text: &str) -> bool {
    let (mut non_ascii, mut good) = (0usize, 0usize);
    for c in text.chars() {
        if c.is_ascii() {
            continue;
        }
        if ('\u{80}'..='\u{9f}').contains(&c) {
            return false;
        }
        non_ascii += 1;
        if c.is_alphabetic()
            || matches!(c, '\u{3000}'..='\u{303f}' | '\u{ff00}'..='\u{ffef}' | '\u{2010}'..='\u{2027}' | '\u{a0}')
        {
            good += 1;
        }
    }
    non_ascii == 0 || good * 5 >= non_ascii * 4
}

/// The multi-byte CJK encodings that may override a declared single-byte label.
fn is_cjk_multibyte(enc: &'static Encoding) -> bool {
    [
        GB18030,
        encoding_rs::BIG5,
        encoding_rs::SHIFT_JIS,
        encoding_rs::EUC_JP,
        encoding_rs::EUC_KR,
    ]
    .contains(&enc)
}

/// Minimum CJK characters (Han, kana, Hangul) in a multi-byte reading before it may beat a
/// declared single-byte label: a few stray high bytes are not evidence.
pub const MIN_CJK_OVER_LABEL: usize = 20;

/// Whether `text`, decoded from bytes a single-byte label claimed, reads as CJK text: at
/// least [`MIN_CJK_OVER_LABEL`] CJK characters (Han, kana, Hangul), making up ≥ 90% of its
/// non-ASCII letters. Punctuation and symbols (`“”`, `·`, `—`, `©`) are neutral: Chinese
/// text uses them, and they say nothing about the script.
pub fn plausible_cjk(text: &str) -> bool {
    let (mut letters, mut cjk) = (0usize, 0usize);
    for c in text.chars() {
        if c.is_ascii() {
            continue;
        }
        if matches!(c as u32,
            0x3040..=0x30ff | 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xac00..=0xd7af
            | 0xf900..=0xfaff | 0x1100..=0x11ff | 0x3130..=0x318f | 0x20000..=0x2ffff)
        {
            cjk += 1;
            letters += 1;
        } else if c.is_alphabetic() {
            letters += 1;
        }
    }
    cjk >= MIN_CJK_OVER_LABEL && cjk * 10 >= letters * 9
}

fn decode_with(bytes: &[u8], enc: &'static Encoding) -> (String, usize) {
    let (cow, _) = enc.decode_without_bom_handling(bytes);
    let text = cow.into_owned();
    let repl = text.chars().filter(|&c| c == '\u{FFFD}').count();
    (text, repl)
}

fn finish(
    text: String,
    encoding: &'static Encoding,
    evidence: Evidence,
    replacements: usize,
) -> Decoded {
    let chars = text.chars().count();
    Decoded {
        text,
        encoding,
        evidence,
        replacements,
        chars,
    }
}

/// Decode a page body. `http_content_type` is the HTTP `Content-Type` value (if any),
/// `url` the target URI (for the detector's TLD hint). `is_html` enables `<meta>` sniffing.
pub fn decode(
    bytes: &[u8],
    http_content_type: Option<&str>,
    url: Option<&str>,
    is_html: bool,
) -> Decoded {
    if let Some((enc, bom_len)) = sniff_bom(bytes) {
        let (text, repl) = decode_with(&bytes[bom_len..], enc);
        return finish(text, enc, Evidence::Bom, repl);
    }
    let declared = http_content_type
        .and_then(charset_from_content_type)
        .map(|e| (e, Evidence::Http))
        .or_else(|| {
            if is_html {
                sniff_meta(bytes).map(|e| (e, Evidence::Meta))
            } else {
                None
            }
        });
    // A UTF-16 declaration over bytes without a BOM: trust the bytes, not the label.
    let declared = declared.filter(|(e, _)| *e != UTF_16LE && *e != UTF_16BE);
    let is_ascii = bytes.is_ascii();
    let valid_utf8 = !is_ascii && std::str::from_utf8(bytes).is_ok();
    match declared {
        Some((enc, ev)) => {
            if valid_utf8 && enc != UTF_8 {
                // Plausibility: long valid UTF-8 with non-ASCII bytes is UTF-8, whatever the label.
                let text = String::from_utf8_lossy(bytes).into_owned();
                let repl = text.chars().filter(|&c| c == '\u{FFFD}').count();
                return finish(text, UTF_8, Evidence::Utf8Override, repl);
            }
            let (text, repl) = decode_with(bytes, enc);
            if enc.is_single_byte() && !is_ascii {
                // A single-byte reading never fails, so compare with the detector instead.
                let guess = detect(bytes, url.and_then(tld_of_url));
                if is_cjk_multibyte(guess) {
                    let (t2, r2) = decode_with(bytes, guess);
                    if r2 == 0 && plausible_cjk(&t2) {
                        return finish(t2, guess, Evidence::DetectedOverLabel, 0);
                    }
                }
            }
            if repl == 0 {
                return finish(text, enc, ev, 0);
            }
            let guess = detect(bytes, url.and_then(tld_of_url));
            if guess != enc {
                let (t2, r2) = decode_with(bytes, guess);
                // A single-byte guess decodes anything without errors, binary junk included;
                // take the detector's reading only when it looks like text.
                if r2 < repl && plausible_text(&t2) {
                    return finish(t2, guess, Evidence::DetectedOverride, r2);
                }
            }
            finish(text, enc, ev, repl)
        }
        None => {
            if is_ascii {
                return finish(
                    String::from_utf8_lossy(bytes).into_owned(),
                    UTF_8,
                    Evidence::Default,
                    0,
                );
            }
            if valid_utf8 {
                return finish(
                    String::from_utf8_lossy(bytes).into_owned(),
                    UTF_8,
                    Evidence::Detected,
                    0,
                );
            }
            let guess = detect(bytes, url.and_then(tld_of_url));
            let (text, repl) = decode_with(bytes, guess);
            finish(text, guess, Evidence::Detected, repl)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_normalize_to_gb18030() {
        assert_eq!(encoding_for_label("gb2312"), Some(GB18030));
        assert_eq!(encoding_for_label("GBK"), Some(GB18030));
        assert_eq!(encoding_for_label(" \"gb18030\" "), Some(GB18030));
        assert_eq!(encoding_for_label("big5").map(|e| e.name()), Some("Big5"));
        assert_eq!(encoding_for_label("nonsense"), None);
    }

    #[test]
    fn content_type_charset() {
        assert_eq!(
            charset_from_content_type("text/html; charset=GBK"),
            Some(GB18030)
        );
        assert_eq!(
            charset_from_content_type("text/html;charset=\"utf-8\""),
            Some(UTF_8)
        );
        assert_eq!(charset_from_content_type("text/html"), None);
        assert_eq!(charset_from_content_type("text/html; charset="), None);
    }

    #[test]
    fn meta_forms() {
        assert_eq!(
            sniff_meta(b"<html><head><meta charset=\"gb2312\"></head>"),
            Some(GB18030)
        );
        assert_eq!(
            sniff_meta(b"<META CHARSET=big5>").map(|e| e.name()),
            Some("Big5")
        );
        assert_eq!(
            sniff_meta(
                b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=shift_jis\" />"
            )
            .map(|e| e.name()),
            Some("Shift_JIS")
        );
        assert_eq!(
            sniff_meta(b"<!-- <meta charset=gbk> --><meta charset=euc-kr>").map(|e| e.name()),
            Some("EUC-KR")
        );
        assert_eq!(sniff_meta(b"<meta charset=utf-16le>"), Some(UTF_8));
        assert_eq!(sniff_meta(b"<metadata charset=gbk>"), None);
        assert_eq!(sniff_meta(b"<meta name=x"), None);
        assert_eq!(sniff_meta(b""), None);
    }

    #[test]
    fn gbk_declared_in_meta_only() {
        let (bytes, _, _) = GBK.encode("<html><head><meta charset=gb2312><title>香港最快开奖</title></head><body>中文内容</body></html>");
        let d = decode(&bytes, Some("text/html"), Some("http://x.cn/"), true);
        assert_eq!(d.encoding, GB18030);
        assert_eq!(d.evidence, Evidence::Meta);
        assert!(d.text.contains("香港最快开奖"));
        assert_eq!(d.replacements, 0);
    }

    #[test]
    fn declared_gb2312_but_utf8_is_overridden() {
        let html = "<meta charset=gb2312><p>人民日报评论：中文网页</p>";
        let d = decode(html.as_bytes(), None, None, true);
        assert_eq!(d.encoding, UTF_8);
        assert_eq!(d.evidence, Evidence::Utf8Override);
        assert_eq!(d.text, html);
    }

    #[test]
    fn declared_utf8_but_gbk_is_detected() {
        let text = "这是一个用简体中文写成的网页，声明是统一码，但其实是国标扩展编码。我们应该能够正确识别它。".repeat(3);
        let (bytes, _, _) = GBK.encode(&text);
        let d = decode(&bytes, Some("text/html; charset=utf-8"), None, true);
        assert_eq!(d.evidence, Evidence::DetectedOverride);
        assert_eq!(d.encoding, GB18030);
        assert_eq!(d.text, text);
    }

    #[test]
    fn legacy_encodings_round_trip_via_detection() {
        let cases: [(&'static Encoding, &str, &str); 4] = [
            (
                encoding_rs::BIG5,
                "這是一個繁體中文網頁，我們應該正確地識別它的編碼並且解碼成統一碼文字。",
                "tw",
            ),
            (
                encoding_rs::SHIFT_JIS,
                "これは日本語のウェブページです。文字コードを正しく判定して復号できるはずです。",
                "jp",
            ),
            (
                encoding_rs::EUC_KR,
                "이것은 한국어 웹 페이지입니다. 문자 인코딩을 올바르게 감지해야 합니다.",
                "kr",
            ),
            (
                encoding_rs::WINDOWS_1251,
                "Это русская веб-страница в кодировке windows-1251, которую нужно распознать.",
                "ru",
            ),
        ];
        for (enc, text, tld) in cases {
            let (bytes, _, _) = enc.encode(text);
            let d = decode(&bytes, None, Some(&format!("http://example.{tld}/")), true);
            assert_eq!(d.encoding, enc, "{text}");
            assert_eq!(d.text, text);
        }
    }

    #[test]
    fn single_byte_label_loses_to_cjk_bytes() {
        let zh = "据中国地震台网正式测定，5月20日13时10分在新疆克孜勒苏州阿图什市发生5.2级地震，震源深度19公里。";
        let tw = "這是一個繁體中文網頁，我們應該正確地識別它的編碼並且解碼成統一碼文字。";
        let ja = "これは日本語のウェブページです。文字コードを正しく判定して復号できるはずです。";
        let cases: [(&'static Encoding, &str); 5] = [
            (GB18030, zh),
            (encoding_rs::BIG5, tw),
            (encoding_rs::SHIFT_JIS, ja),
            (encoding_rs::EUC_JP, ja),
            (GBK, zh),
        ];
        for (enc, text) in cases {
            let page =
                format!("<html><head><title>x</title></head><body><p>{text}</p></body></html>");
            let (bytes, _, _) = enc.encode(&page);
            for (http, meta) in [(Some("text/html; charset=iso-8859-1"), false), (None, true)] {
                let b = if meta {
                    let mut v = b"<meta charset=windows-1252>".to_vec();
                    v.extend_from_slice(&bytes);
                    v
                } else {
                    bytes.to_vec()
                };
                let d = decode(&b, http, Some("http://example.com/"), true);
                assert_eq!(
                    d.evidence,
                    Evidence::DetectedOverLabel,
                    "{} {text}",
                    enc.name()
                );
                assert_eq!(d.encoding, normalize(enc));
                assert!(d.text.contains(text), "{}", d.text);
                assert_eq!(d.evidence.as_str(), "detected_over_label");
            }
        }
    }

    #[test]
    fn latin_text_keeps_its_single_byte_label() {
        // "ö" "ß" are F6 DF in windows-1252: a valid GBK pair, so only the detector's
        // guess and the CJK share keep this German text Latin.
        let text = "Die Größe der Straße ist übermäßig; Grüße aus München, schöne Füße, Öl und Äpfel. Très élégant, déjà vu — señor, niño, café crème.";
        let (bytes, _, _) = WINDOWS_1252.encode(text);
        let d = decode(
            &bytes,
            Some("text/html; charset=iso-8859-1"),
            Some("http://x.de/"),
            true,
        );
        assert_eq!(d.evidence, Evidence::Http);
        assert_eq!(d.encoding, WINDOWS_1252);
        assert_eq!(d.text, text);
        // Too little CJK to overturn a label.
        assert!(!plausible_cjk("中文"));
        assert!(plausible_cjk(&"中文，标点。".repeat(5)));
        assert!(!plausible_cjk(&format!(
            "{}{}",
            "中文".repeat(10),
            "äöüßéèàç".repeat(5)
        )));
    }

    #[test]
    fn bom_wins_and_is_stripped() {
        let mut b = vec![0xEF, 0xBB, 0xBF];
        b.extend_from_slice("<meta charset=gbk>中文".as_bytes());
        let d = decode(&b, Some("text/html; charset=big5"), None, true);
        assert_eq!(d.evidence, Evidence::Bom);
        assert_eq!(d.text, "<meta charset=gbk>中文");
    }

    #[test]
    fn replacement_share_counts_garbage() {
        let junk: Vec<u8> = (0..400u32).map(|i| (0x80 + (i * 7) % 0x40) as u8).collect();
        let d = decode(&junk, Some("text/html; charset=utf-8"), None, false);
        assert!(d.replacements > 0);
        assert!(d.replacement_share() > 0.0 && d.replacement_share() <= 1.0);
        let d = decode(b"", None, None, true);
        assert_eq!(d.replacement_share(), 0.0);
    }

    #[test]
    fn plausibility() {
        assert!(plausible_text("Это русский текст"));
        assert!(plausible_text("中文，标点。"));
        assert!(!plausible_text("€‡Ž•œ£ª±¸¿†\u{8d}”›¢©°"));
    }

    #[test]
    fn tld_hint() {
        assert_eq!(
            tld_of_url("https://user@www.example.com.cn:8080/a?b"),
            Some("cn")
        );
        assert_eq!(tld_of_url("http://127.0.0.1/"), None);
        assert_eq!(tld_of_url(""), None);
    }
}
