//! The HTML report of a packed run (issue 23): the flagship config (`configs/zh_pretrain.yaml`,
//! ending in `pack`) run on the bundled samples, its report checked as HTML, then opened in
//! headless Chromium: the DOM holds the Chinese sample text, the screenshot is not blank,
//! and Chinese glyphs really render (not tofu boxes).
//!
//! Chromium and a CJK font are components: absent, the test skips, unless
//! `SLUICE_REQUIRE=all` (or `chromium` / `cjk-font`) makes it fail.
//! `SLUICE_REPORT_SCREENSHOT=path.png` keeps the screenshot (that is how `docs/img/report.png`
//! is made).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{bin, skip};
use sluice::audit::report::FONT_STACK;

fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(o) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
        {
            let p = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if o.status.success() && !p.is_empty() {
                return Some(PathBuf::from(p));
            }
        }
    }
    None
}

/// Headless Chromium on a file, with extra arguments; its stdout.
fn headless(chrome: &Path, profile: &Path, page: &Path, args: &[String]) -> String {
    let o = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        o.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Decode an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes) to RGB pixels.
fn decode_png(bytes: &[u8]) -> (usize, usize, Vec<[u8; 3]>) {
    use std::io::Read;
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut w, mut h, mut channels) = (0usize, 0usize, 0usize);
    let mut idat = Vec::new();
    let mut i = 8;
    while i + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
        let kind = &bytes[i + 4..i + 8];
        let data = &bytes[i + 8..i + 8 + len];
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
                h = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
                assert_eq!(data[8], 8, "bit depth");
                assert_eq!(data[12], 0, "interlaced");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    t => panic!("PNG colour type {t}"),
                };
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        i += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .unwrap();
    let stride = w * channels;
    let mut prev = vec![0u8; stride];
    let mut px = Vec::with_capacity(w * h);
    for y in 0..h {
        let line = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
        let mut cur = line[1..].to_vec();
        for x in 0..stride {
            let a = if x >= channels {
                cur[x - channels] as i32
            } else {
                0
            };
            let b = prev[x] as i32;
            let c = if x >= channels {
                prev[x - channels] as i32
            } else {
                0
            };
            let add = match line[0] {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("PNG filter {f}"),
            };
            cur[x] = cur[x].wrapping_add(add as u8);
        }
        for p in cur.chunks(channels) {
            px.push([p[0], p[1], p[2]]);
        }
        prev = cur;
    }
    (w, h, px)
}

/// The first run of at least `n` CJK ideographs in `s`.
fn cjk_run(s: &str, n: usize) -> Option<String> {
    let mut run = String::new();
    for c in s.chars() {
        if ('\u{4E00}'..='\u{9FFF}').contains(&c) {
            run.push(c);
            if run.chars().count() >= n {
                return Some(run);
            }
        } else {
            run.clear();
        }
    }
    None
}

/// The HTML of one `<section id=...>`.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<section id=\"{id}\">"))
        .unwrap_or_else(|| panic!("section {id} missing"));
    let end = html[start..].find("</section>").unwrap() + start;
    &html[start..end]
}

/// Checks on the HTML alone (no browser).
fn check_html(html: &str, out: &Path) {
    assert!(
        !html.contains("No data in this run"),
        "a section says only \"No data\""
    );
    // Document-level sections are populated from the pack stage's document index.
    for id in [
        "funnel",
        "rejects",
        "lengths",
        "scores",
        "languages",
        "dedup",
        "mixture",
        "tokens",
        "samples",
    ] {
        let s = section(html, id);
        assert!(!s.contains("class=\"empty\""), "section {id} is empty: {s}");
    }
    assert!(section(html, "languages").contains("<td>zh</td>"));
    assert!(section(html, "dedup").contains("<td class=\"n\">1</td>"));
    assert!(section(html, "lengths").contains("docs_index"));
    // Funnel rows in the config graph's order (the flagship's config order is topological).
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let funnel = section(html, "funnel");
    let table = &funnel[funnel.find("<tbody>").unwrap()..];
    let mut at = 0;
    for n in manifest["config"]["nodes"].as_array().unwrap() {
        let cell = format!("<tr><td>{}</td>", n["name"].as_str().unwrap());
        let p = table[at..]
            .find(&cell)
            .unwrap_or_else(|| panic!("funnel row {cell} missing or out of order"));
        at += p + cell.len();
    }
    // The quality threshold from the config is drawn on its score's histogram.
    let scores = section(html, "scores");
    assert!(scores.contains("class=\"threshold\""));
    assert!(scores.contains("quality_zh threshold 0.5"), "{scores}");
    assert!(scores.contains("lid keep zh ≥ 0.5"));
    // Count axis ticks on the length histogram.
    assert!(section(html, "lengths").contains("class=\"grid\""));
    // Numbers are rounded: no 7+ decimals outside the sample texts.
    let before_samples = &html[..html.find("<section id=\"samples\">").unwrap()];
    let b = before_samples.as_bytes();
    for i in 0..b.len().saturating_sub(8) {
        if b[i] == b'.' && b[i + 1..i + 8].iter().all(u8::is_ascii_digit) {
            panic!(
                "unrounded number near {:?}",
                &before_samples[i.saturating_sub(20)..i + 10]
            );
        }
    }
    assert!(html.contains("Noto Sans CJK SC"), "CJK font stack");
}

#[test]
fn packed_flagship_report_renders_chinese_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = bin()
        .args(["run", "configs/zh_pretrain.yaml", "--no-progress", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("docs_index").is_dir(), "pack wrote no docs_index/");
    let (page, html) = render_report(&out, tmp.path(), 4);
    check_html(&html, &out);
    crate::audit::assert_only_safe_markup(&html);
    let kept = section(&html, "samples");
    let kept = &kept[kept.find("class=\"sample kept\"").expect("a kept sample")..];
    let zh = cjk_run(kept, 6).expect("Chinese text in the kept samples");

    let Some(chrome) = chromium() else {
        skip(
            "chromium",
            "no chromium/chromium-browser/google-chrome on PATH",
        );
        return;
    };
    let fonts = Command::new("fc-list")
        .args([":lang=zh", "family"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if fonts.is_empty() {
        skip(
            "cjk-font",
            "no font covers Chinese (fc-list :lang=zh); install fonts-noto-cjk",
        );
        return;
    }
    let profile = tmp.path().join("chromium-profile");

    // The DOM Chromium built holds the Chinese sample text and every section.
    let dom = headless(&chrome, &profile, &page, &["--dump-dom".into()]);
    assert!(dom.contains(&zh), "DOM lacks the sample text {zh}");
    assert!(dom.contains("<section id=\"dedup\">"));

    // The screenshot: a full page, not blank.
    let shot = std::env::var("SLUICE_REPORT_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| tmp.path().join("report.png"));
    headless(
        &chrome,
        &profile,
        &page,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,9000".into(),
        ],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.len() > 100_000, "screenshot only {} bytes", png.len());
    let (w, h, px) = decode_png(&png);
    assert_eq!((w, h), (1200, 9000));
    let bg = px[0];
    let ink = px
        .iter()
        .filter(|p| (0..3).any(|k| p[k].abs_diff(bg[k]) > 40))
        .count();
    let frac = ink as f64 / px.len() as f64;
    assert!(
        frac > 0.03,
        "screenshot mostly blank: {:.1}% ink",
        frac * 100.0
    );
    let mut colors: Vec<[u8; 3]> = px.iter().step_by(7).copied().collect();
    colors.sort();
    colors.dedup();
    assert!(colors.len() > 100, "only {} colours", colors.len());

    // Chinese glyphs render: 龍 (16 strokes) has far more ink than 一 (one stroke) in the
    // report's font stack; tofu boxes would have the same ink.
    let glyphs = tmp.path().join("glyphs.html");
    std::fs::write(
        &glyphs,
        format!(
            "<!DOCTYPE html><meta charset=utf-8><body style=\"margin:0;background:#fff\">\
             <div style=\"font:120px {};line-height:1;color:#000\">\
             <span style=\"position:absolute;left:20px;top:20px\">一</span>\
             <span style=\"position:absolute;left:220px;top:20px\">龍</span></div>",
            FONT_STACK.replace('"', "'")
        ),
    )
    .unwrap();
    let gshot = tmp.path().join("glyphs.png");
    headless(
        &chrome,
        &profile,
        &glyphs,
        &[
            format!("--screenshot={}", gshot.display()),
            "--window-size=400,200".into(),
        ],
    );
    let (gw, _, gpx) = decode_png(&std::fs::read(&gshot).unwrap());
    let dark = |x0: usize, x1: usize| {
        gpx.iter()
            .enumerate()
            .filter(|(i, p)| (x0..x1).contains(&(i % gw)) && p[0] < 128)
            .count()
    };
    let (one, dragon) = (dark(0, 200), dark(200, 400));
    eprintln!(
        "ink: 一 {one} px, 龍 {dragon} px; fonts: {}",
        fonts.lines().next().unwrap_or("")
    );
    assert!(one > 50, "一 did not render ({one} dark pixels)");
    assert!(
        dragon > 3 * one,
        "Chinese renders as boxes: 龍 {dragon} vs 一 {one} dark pixels"
    );
}

/// A packed run whose documents carry `<script>alert(1)</script>` in text, URL and source
/// name: the kept samples (from the document index) show it escaped, every tag is one the
/// report writes, and the length_filter bounds are drawn on the length histogram.
#[test]
fn packed_report_escapes_hostile_index_samples_and_draws_length_bounds() {
    const XSS: &str = "<script>alert(1)</script>";
    let tmp = tempfile::tempdir().unwrap();
    let inp = tmp.path().join("in.jsonl");
    let mut lines = String::new();
    for i in 0..6 {
        let text = format!(
            "{XSS} 第{i}个网页：{}",
            "这是一个包含脚本的网页。".repeat(5 + i)
        );
        let url = format!("https://evil.example/{i}/{XSS}");
        lines.push_str(
            &serde_json::json!({"id": format!("x{i}"), "text": text, "url": url}).to_string(),
        );
        lines.push('\n');
    }
    lines.push_str(&serde_json::json!({"id": "short", "text": "短"}).to_string());
    lines.push('\n');
    std::fs::write(&inp, lines).unwrap();
    let cfg = tmp.path().join("packed.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"
nodes:
  web:
    kind: ingest_jsonl
    paths: ["{}"]
    id_field: id
    source: "{XSS}"
  keep:
    kind: length_filter
    inputs: [web]
    min_chars: 20
    max_chars: 100000
  tok:
    kind: tokenize
    inputs: [keep]
    tokenizer: samples/tokenizers/qwen2/tokenizer.json
  pack:
    kind: pack
    inputs: [tok]
    seq_len: 256
    eos_id: 0
  shards:
    kind: parquet_shards
    inputs: [pack]
"#,
            inp.display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("run");
    let o = bin()
        .arg("run")
        .arg(&cfg)
        .args(["--no-progress", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, html) = render_report(&out, tmp.path(), 50);
    crate::audit::assert_only_safe_markup(&html);
    let esc = "&lt;script&gt;alert(1)&lt;/script&gt;";
    let samples = section(&html, "samples");
    let kept = &samples[..samples.find("Rejected documents").unwrap()];
    // Six kept documents: text, URL and source each escaped in every one.
    assert_eq!(kept.matches("class=\"sample kept\"").count(), 6, "{kept}");
    assert!(kept.matches(esc).count() >= 18, "{kept}");
    assert!(kept.contains(&format!("evil.example/0/{esc}")));
    let lengths = section(&html, "lengths");
    assert!(lengths.contains("keep min_chars 20"), "{lengths}");
    assert!(lengths.contains("keep max_chars 100,000"), "{lengths}");
    assert!(!section(&html, "lengths").contains("class=\"empty\""));
    // Explained once, with the reason: this run has no dedup, mix or langid node.
    for (id, why) in [
        ("dedup", "No dedup node in this run."),
        ("mixture", "No mix node in this run"),
        ("languages", "no langid node in this run"),
    ] {
        let s = section(&html, id);
        assert_eq!(s.matches("class=\"empty\"").count(), 1, "{s}");
        assert!(s.contains(why), "{s}");
    }
}

/// `sluice report RUN -o DIR/report.html --samples N`: the page's path and its HTML.
fn render_report(run: &Path, dir: &Path, samples: usize) -> (PathBuf, String) {
    let page = dir.join("report.html");
    let o = bin()
        .arg("report")
        .arg(run)
        .arg("-o")
        .arg(&page)
        .args(["--samples", &samples.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    (page, html)
}
