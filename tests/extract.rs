//! HTML extraction and charset decoding on a real page (`samples/html/`, a people.com.cn
//! health article from the magic-html benchmark): omitted end tags and an unclosed `<head>`
//! give the same text as the page as published, and the same page re-encoded in GBK or
//! GB18030 under a wrong single-byte label decodes to the same text. (Big5, Shift_JIS and
//! EUC-JP under a wrong label are unit tests in `charset.rs`: the shared data has no real
//! Traditional-Chinese or Japanese page, and simplified text in those encodings is not a
//! page anyone publishes.)

use encoding_rs::Encoding;
use sluice::stages::extract_html::{extract, Params};
use sluice::stages::ingest_warc::charset::{self, Evidence};
use sluice::stages::ingest_warc::{CollectSink, Config, IngestWarc};

const URL: &str = "http://health.people.com.cn/n1/2024/0517/c14739-40237861.html";

fn page() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples/html/people-health-20240517.html");
    let bytes = std::fs::read(path).expect("sample page");
    // The page declares GB2312 but its bytes are UTF-8 (the "meta lies" case).
    let d = charset::decode(&bytes, None, Some(URL), true);
    assert_eq!(d.evidence, Evidence::Utf8Override);
    d.text
}

fn text(html: &str) -> String {
    extract(html, &Params::default()).text
}

/// Remove every occurrence of each tag (case-insensitive; start tags with attributes too).
fn strip_tags(html: &str, tags: &[&str]) -> String {
    let mut out = String::with_capacity(html.len());
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    'outer: while i < html.len() {
        for t in tags {
            if lower[i..].starts_with(t) {
                let after = i + t.len();
                if t.ends_with('>') {
                    i = after;
                    continue 'outer;
                }
                // `<body` + attributes: only when followed by space or '>'.
                if matches!(lower.as_bytes().get(after), Some(b' ' | b'>')) {
                    i = after + lower[after..].find('>').map_or(0, |e| e + 1);
                    continue 'outer;
                }
            }
        }
        let c = html[i..].chars().next().expect("in bounds");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

#[test]
fn omitted_end_tags_and_unclosed_head_give_the_same_text() {
    let html = page();
    let base = text(&html);
    assert!(
        base.contains("“心成长”青少年心理健康服务项目在北京市青年宫正式启动"),
        "{base}"
    );
    assert!(!base.contains("人民网版权所有"), "{base}");
    // `<head>` never closed, no `<body>`: browsers close the head implicitly.
    let no_head_end = strip_tags(&html, &["</head>", "<body"]);
    assert!(!no_head_end.contains("</head>"));
    assert_eq!(text(&no_head_end), base);
    // Optional end tags omitted, as HTML allows.
    let stripped = strip_tags(
        &html,
        &[
            "</p>",
            "</li>",
            "</td>",
            "</tr>",
            "</th>",
            "</dd>",
            "</dt>",
            "</option>",
        ],
    );
    assert!(stripped.len() < html.len() && !stripped.contains("</p>"));
    assert_eq!(text(&stripped), base);
}

/// The page re-encoded in `enc` with its `<meta>` claiming ISO-8859-1.
fn mislabelled(html: &str, enc: &'static Encoding) -> Vec<u8> {
    let relabelled = html.replacen("charset=GB2312", "charset=iso-8859-1", 2);
    assert_ne!(relabelled, html);
    let (bytes, _, _) = enc.encode(&relabelled);
    bytes.into_owned()
}

#[test]
fn mislabelled_cjk_pages_decode_to_the_same_text() {
    let html = page();
    let base = text(&html);
    for enc in [encoding_rs::GB18030, encoding_rs::GBK] {
        let bytes = mislabelled(&html, enc);
        // Before the fix the label won: windows-1252 mojibake, no replacement characters.
        let (latin, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(&bytes);
        assert!(!text(&latin).contains("心成长"));
        for http in [Some("text/html; charset=ISO-8859-1"), None] {
            let d = charset::decode(&bytes, http, Some(URL), true);
            assert_eq!(
                d.evidence,
                Evidence::DetectedOverLabel,
                "{} {http:?}",
                enc.name()
            );
            assert_eq!(d.replacements, 0);
            assert_eq!(d.encoding, encoding_rs::GB18030);
            assert_eq!(text(&d.text), base, "{} {http:?}", enc.name());
        }
    }
}

/// One WARC response record with the given HTTP Content-Type and body.
fn warc_record(content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut http = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n\r\n").into_bytes();
    http.extend_from_slice(body);
    let mut rec = format!(
        "WARC/1.0\r\nWARC-Type: response\r\nWARC-Date: 2024-05-17T00:00:00Z\r\n\
         WARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-000000000001>\r\n\
         WARC-Target-URI: {URL}\r\nContent-Type: application/http; msgtype=response\r\n\
         Content-Length: {}\r\n\r\n",
        http.len()
    )
    .into_bytes();
    rec.extend_from_slice(&http);
    rec.extend_from_slice(b"\r\n\r\n");
    rec
}

/// Read one WARC file with `ingest_warc`'s default config.
fn ingest(path: &std::path::Path) -> CollectSink {
    let path = path.to_str().expect("utf8 path");
    let cfg: Config =
        serde_json::from_value(serde_json::json!({ "paths": [path] })).expect("config");
    let mut src = IngestWarc::new(cfg, "cc");
    let mut sink = CollectSink::default();
    src.read_path(path, &mut sink).expect("read");
    sink
}

#[test]
fn ingest_records_detected_over_label() {
    let html = page();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mislabelled.warc");
    let mut warc = warc_record(
        "text/html; charset=iso-8859-1",
        &mislabelled(&html, encoding_rs::GBK),
    );
    warc.extend(warc_record(
        "text/html; charset=windows-1252",
        &mislabelled(&html, encoding_rs::GB18030),
    ));
    std::fs::write(&path, warc).expect("write");
    let sink = ingest(&path);
    assert_eq!(sink.docs.len(), 2);
    let base = text(&html);
    for d in &sink.docs {
        assert_eq!(d.meta["charset_source"], "detected_over_label");
        assert_eq!(d.meta["charset"], "gb18030");
        assert_eq!(text(&d.text), base);
    }
    // Real Latin-1 pages keep their label: the German and Dutch pages of the CC sample.
    let sink = ingest(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/warc/warcfile.warc.gz"),
    );
    assert!(sink
        .docs
        .iter()
        .any(|d| d.meta["charset"] == "windows-1252"));
    assert!(sink
        .docs
        .iter()
        .all(|d| d.meta["charset_source"] != "detected_over_label"));
}
