//! Charset sniffing and decoding on arbitrary bytes: no panic, valid output.
#![no_main]
#![allow(dead_code)]

#[path = "../../stages/ingest_warc/charset.rs"]
mod charset;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte picks the HTTP header case; the rest is the body.
    let (sel, body) = match data.split_first() {
        Some((s, b)) => (*s, b),
        None => (0, data),
    };
    let ct = match sel % 4 {
        0 => None,
        1 => Some("text/html; charset=gbk"),
        2 => Some("text/html; charset=utf-8"),
        _ => Some("text/html; charset=shift_jis"),
    };
    let d = charset::decode(body, ct, Some("http://example.cn/"), sel & 4 == 0);
    assert!(d.replacement_share() >= 0.0 && d.replacement_share() <= 1.0);
    assert_eq!(d.chars, d.text.chars().count());
    let _ = charset::sniff_meta(body);
    let _ = charset::charset_from_content_type(&String::from_utf8_lossy(body));
    let _ = charset::tld_of_url(&String::from_utf8_lossy(body));
});
