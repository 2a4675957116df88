//! Web ingestion on real files: every WARC/WET/ARC sample in `samples/warc/` is read without
//! a crash, with the expected document, reject and bad-record counts; the Chinese spam pages
//! (GBK/GB2312 declared only in `<meta>`) come out as readable Chinese.

use sluice::stages::extract_html::{extract, Params};
use sluice::stages::ingest_warc::{CollectSink, Config, IngestWarc};

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/warc")
}

fn read(file: &str, extra: serde_json::Value) -> (IngestWarc, CollectSink) {
    let mut v = serde_json::json!({"paths": [file]});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    let cfg: Config = serde_json::from_value(v).expect("config");
    let mut src = IngestWarc::new(cfg, "cc");
    let mut sink = CollectSink::default();
    src.read_path(dir().join(file).to_str().expect("utf8 path"), &mut sink)
        .expect("read");
    (src, sink)
}

/// (file, emitted docs, rejected docs, bad records, well-formed records read) with the
/// default config (HTML only, status 200). Notable rows:
/// * `clipped.warc.gz`: the only member is cut off → one `gzip_truncated` bad record.
/// * `cc_net-sample.warc.wet.txt`: every Content-Length counts characters, not bytes →
///   three `content_length_mismatch` bad records, nothing emitted (the reader does not guess).
/// * `warcio/bad.arc`: lengths `-1`/`abc` and a non-HTTP body → four bad records.
/// * `warcio/example-trunc.warc`: the response is cut inside its body → one bad record.
/// * `warcio/example-space-in-url.arc`: the URL has spaces (parsed) but the record is 8
///   bytes short of its declared length → `truncated`.
/// * `warcio/example-digest.warc` holds only `request` records → nothing emitted.
const EXPECTED: &[(&str, usize, usize, usize, u64)] = &[
    ("warcfile.warc.gz", 16, 0, 0, 50),
    ("clipped.warc.gz", 0, 0, 1, 0),
    ("whirlwind.warc", 1, 0, 0, 4),
    ("whirlwind.warc.gz", 1, 0, 0, 4),
    ("whirlwind.warc.wet", 1, 0, 0, 2),
    ("whirlwind.warc.wet.gz", 1, 0, 0, 2),
    ("whirlwind.warc.wat.gz", 0, 0, 0, 2),
    ("dolma-wget-sample-0000.warc.gz", 22, 0, 0, 48),
    ("cc_net-sample.warc.wet.txt", 0, 0, 3, 0),
    ("warcio/bad.arc", 0, 0, 4, 1),
    ("warcio/example-bad-non-chunked.warc.gz", 1, 0, 0, 6),
    ("warcio/example-bad.warc.gz.bad", 1, 0, 0, 6),
    ("warcio/example-digest.warc", 0, 0, 0, 4),
    ("warcio/example-iana.org-chunked.warc", 1, 0, 0, 3),
    ("warcio/example-resource.warc.gz", 1, 0, 0, 3),
    ("warcio/example-space-in-target-uri.warc.gz", 0, 0, 0, 2),
    ("warcio/example-space-in-url.arc", 0, 0, 1, 1),
    ("warcio/example-trunc.warc", 0, 0, 1, 3),
    ("warcio/example-wget-bad-target-uri.warc.gz", 1, 0, 0, 6),
    ("warcio/example-wrong-chunks.warc.gz", 1, 0, 0, 2),
    ("warcio/example.arc", 1, 0, 0, 2),
    ("warcio/example.arc.gz", 1, 0, 0, 2),
    ("warcio/example.warc", 1, 0, 0, 6),
    ("warcio/example.warc.gz", 1, 0, 0, 6),
    ("warcio/post-test.warc.gz", 0, 0, 0, 6),
];

#[test]
fn every_sample_reads_with_expected_counts() {
    let mut listed: Vec<String> = EXPECTED.iter().map(|e| e.0.to_string()).collect();
    listed.sort();
    let mut on_disk = Vec::new();
    for sub in ["", "warcio/"] {
        for e in std::fs::read_dir(dir().join(sub)).expect("samples/warc") {
            let name = e.expect("entry").file_name().to_string_lossy().into_owned();
            if !name.starts_with("LICENSE")
                && !name.ends_with(".md")
                && dir().join(sub).join(&name).is_file()
            {
                on_disk.push(format!("{sub}{name}"));
            }
        }
    }
    on_disk.sort();
    assert_eq!(
        listed, on_disk,
        "every sample file must have an expectation"
    );
    let mut report = Vec::new();
    for &(file, docs, rej, bad, records) in EXPECTED {
        let (src, sink) = read(file, serde_json::json!({}));
        let total: u64 = src.stats.records.values().sum();
        let got = (sink.docs.len(), sink.rejected.len(), sink.bad.len(), total);
        if got != (docs, rej, bad, records) {
            report.push(format!(
                "{file}: got (docs, rejected, bad, records) = {got:?}, want {:?}; bad = {:?}",
                (docs, rej, bad, records),
                sink.bad
            ));
        }
        for d in &sink.docs {
            assert!(
                d.id.starts_with(&format!("cc:{}:", file.rsplit('/').next().unwrap_or(file))),
                "{}",
                d.id
            );
            for k in [
                "warc_file",
                "warc_offset",
                "warc_type",
                "charset",
                "content_type",
            ] {
                assert!(d.meta.contains_key(k), "{file}: {} lacks meta.{k}", d.id);
            }
        }
    }
    assert!(report.is_empty(), "\n{}", report.join("\n"));
}

/// Mojibake markers: GBK bytes read as latin-1/windows-1252 or UTF-8 read as GBK.
fn has_mojibake(t: &str) -> bool {
    let latin1_runs = t
        .chars()
        .collect::<Vec<_>>()
        .windows(3)
        .filter(|w| w.iter().all(|c| ('\u{80}'..='\u{ff}').contains(c)))
        .count();
    latin1_runs > 3
        || t.contains('\u{FFFD}')
        || t.contains("锟斤拷")
        || t.contains("鍙")
        || t.contains("鐨")
}

#[test]
fn chinese_spam_pages_decode_to_readable_chinese() {
    let (src, sink) = read("warcfile.warc.gz", serde_json::json!({}));
    let zh: Vec<_> = sink
        .docs
        .iter()
        .filter(|d| d.meta["charset"] == "gb18030")
        .collect();
    // Six pages declare gb2312/gbk in <meta> only (the HTTP header says plain text/html).
    assert_eq!(zh.len(), 6, "GB18030 pages: {:?}", src.stats.charsets);
    let cjk_pages = sink
        .docs
        .iter()
        .filter(|d| {
            d.text
                .chars()
                .filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c))
                .count()
                >= 100
        })
        .count();
    assert!(cjk_pages >= 10, "pages with Chinese text: {cjk_pages}");
    for d in &sink.docs {
        assert!(
            !has_mojibake(&d.text),
            "{} ({}) looks like mojibake",
            d.id,
            d.meta["charset"]
        );
    }
    // GBK declared only in <meta>: the evidence must say so.
    assert!(zh.iter().any(|d| d.meta["charset_source"] == "meta"));
    let all: String = sink.docs.iter().map(|d| d.text.as_str()).collect();
    for phrase in ["香港最快开奖现场直", "二肖", "藏宝图"] {
        assert!(all.contains(phrase), "missing {phrase}");
    }
    // Extraction of the same pages gives readable Chinese, with the title from entities.
    let p = Params::default();
    let mut titles = 0;
    for d in &zh {
        let ex = extract(&d.text, &p);
        assert!(!has_mojibake(&ex.text));
        if ex
            .title
            .chars()
            .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
        {
            titles += 1;
        }
    }
    assert!(titles >= 5, "Chinese titles: {titles}");
    // Non-Chinese pages keep their own charsets.
    assert!(sink
        .docs
        .iter()
        .any(|d| d.meta["charset"] == "windows-1251" && d.text.contains("а")));
}

#[test]
fn wet_text_and_lineage_match_the_warc() {
    let (_, wet) = read("whirlwind.warc.wet.gz", serde_json::json!({}));
    let (_, warc) = read("whirlwind.warc.gz", serde_json::json!({}));
    let (w, h) = (&wet.docs[0], &warc.docs[0]);
    assert_eq!(w.meta["url"], "https://an.wikipedia.org/wiki/Escopete");
    assert_eq!(w.meta["url"], h.meta["url"]);
    assert_eq!(w.meta["domain"], "an.wikipedia.org");
    assert_eq!(w.meta["warc_type"], "conversion");
    assert!(w.text.contains("Escopete"));
    assert!(!w.text.contains('<'));
    assert!(h.text.contains("<html") || h.text.contains("<!DOCTYPE"));
    assert!(h.meta["warc_record_id"].starts_with("<urn:uuid:"));
    assert!(h.meta["warc_date"].starts_with("2024-05-18"));
    // Gzip offsets are member offsets (seekable), plain offsets are byte offsets.
    let (_, plain) = read("whirlwind.warc", serde_json::json!({}));
    let off: u64 = plain.docs[0].meta["warc_offset"].parse().expect("number");
    let bytes = std::fs::read(dir().join("whirlwind.warc")).expect("read");
    assert!(bytes[off as usize..].starts_with(b"WARC/1."));
}

#[test]
fn filters_are_counted_not_bad() {
    let (src, sink) = read(
        "dolma-wget-sample-0000.warc.gz",
        serde_json::json!({"mime_types": ["*"], "statuses": [200, 301, 302, 404]}),
    );
    let (src2, sink2) = read("dolma-wget-sample-0000.warc.gz", serde_json::json!({}));
    assert!(sink.docs.len() >= sink2.docs.len());
    assert!(sink.bad.is_empty() && sink2.bad.is_empty());
    let filtered2: u64 = src2.stats.filtered_mime.values().sum::<u64>()
        + src2.stats.filtered_status.values().sum::<u64>();
    let filtered: u64 = src.stats.filtered_mime.values().sum::<u64>()
        + src.stats.filtered_status.values().sum::<u64>();
    assert_eq!(
        sink2.docs.len() as u64 + filtered2,
        sink.docs.len() as u64 + filtered
    );
    // wget writes `<uri>`: the brackets are stripped.
    assert!(sink2.docs.iter().all(|d| d.meta["url"].starts_with("http")));
}

#[test]
fn tiny_cap_rejects_as_too_large() {
    let (src, sink) = read(
        "warcfile.warc.gz",
        serde_json::json!({"max_record_bytes": 2000}),
    );
    assert!(sink.docs.is_empty());
    assert_eq!(sink.rejected.len(), 16);
    assert!(sink
        .rejected
        .iter()
        .all(|(d, r)| r == "too_large" && d.text.is_empty() && d.meta.contains_key("url")));
    assert_eq!(src.stats.rejected["too_large"], 16);
}

/// `configs/cc_warc.yaml` end to end through the real binary: WARC → extract → url_filter →
/// length filter → Qwen2 tokens → Parquet. Counts are pinned, bad records are visible in
/// `stats.json`, and the output is byte-identical at 1 and 3 threads.
#[test]
fn cc_warc_config_end_to_end() {
    use crate::common::{bin, files, read_doc_rows};
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut outs = Vec::new();
    for threads in ["1", "3"] {
        let out = tmp.path().join(format!("t{threads}"));
        let st = bin()
            .args(["run", "configs/cc_warc.yaml", "--out"])
            .arg(&out)
            .args(["--threads", threads])
            .status()
            .expect("run sluice");
        assert!(st.success());
        outs.push(out);
    }
    assert_eq!(
        files(&outs[0], "shards"),
        files(&outs[1], "shards"),
        "shards differ across thread counts"
    );
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(outs[0].join("stats.json")).expect("stats"))
            .expect("json");
    let n = &stats["nodes"];
    assert_eq!(n["cc"]["ports"]["out"]["docs"], 41);
    assert_eq!(n["cc"]["bad_records"]["count"], 7);
    assert_eq!(n["cc"]["bad_records"]["by_reason"]["gzip_truncated"], 1);
    assert_eq!(n["wet"]["ports"]["out"]["docs"], 1);
    assert_eq!(n["urls"]["rejects"]["blocked_domain"], 1);
    let rows = read_doc_rows(&outs[0]);
    assert_eq!(
        rows.len() as u64,
        n["tok"]["ports"]["out"]["docs"].as_u64().expect("count")
    );
    let all: String = rows.iter().map(|r| r.2.as_str()).collect();
    assert!(all.contains("香港最快开奖现场直"));
    assert!(all.contains("Escopete"));
    assert!(!has_mojibake(&all));
    assert!(rows.iter().all(|r| !r.1.is_empty()));
}
