//! Extraction benchmark driver for `benches/extract_eval.py`.
//!
//! `extract_html <pages_dir>... --out <file.json> [--repeat N]`: decodes every `*.html`
//! under the given directories with sluice's charset logic, extracts the main text with
//! `extract_html`'s algorithm, and writes `{"pages": {<file stem>: <text>}, "secs": <time of
//! N repeated extraction passes over all pages, single thread>, "cpu_secs": <the same in thread
//! CPU time>, "repeat": N, "bytes": <HTML
//! bytes per pass>}`. Decoding is not timed (trafilatura gets the same decoded strings).
//! Run it in release: `cargo bench --bench extract_html -- DIR... --out x.json`.

use std::time::Instant;

use sluice::stages::extract_html::{extract, Params};
use sluice::stages::ingest_warc::charset;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut dirs = Vec::new();
    let mut out = None;
    let mut repeat = 5usize;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => out = it.next(),
            "--repeat" => repeat = it.next().ok_or("--repeat N")?.parse()?,
            _ => dirs.push(a),
        }
    }
    let out = out.ok_or("--out FILE is required")?;
    let mut pages = Vec::new();
    for d in &dirs {
        let mut files: Vec<_> = std::fs::read_dir(d)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "html"))
            .collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f)?;
            let dec = charset::decode(&bytes, None, None, true);
            let stem = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            pages.push((stem, dec.text));
        }
    }
    let p = Params::default();
    let mut texts = serde_json::Map::new();
    for (k, html) in &pages {
        texts.insert(k.clone(), extract(html, &p).text.into());
    }
    let bytes: usize = pages.iter().map(|(_, h)| h.len()).sum();
    let t = Instant::now();
    let cpu0 = thread_cpu_secs();
    let mut sink = 0usize;
    for _ in 0..repeat {
        for (_, html) in &pages {
            sink += extract(html, &p).text.len();
        }
    }
    let secs = t.elapsed().as_secs_f64();
    // CPU time of this thread, so other load on a shared machine does not count; wall time
    // where the kernel does not expose it.
    let cpu_secs = match (cpu0, thread_cpu_secs()) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => secs,
    };
    std::hint::black_box(sink);
    let j = serde_json::json!({"pages": texts, "secs": secs, "cpu_secs": cpu_secs, "repeat": repeat, "n": pages.len(), "bytes": bytes});
    std::fs::write(&out, serde_json::to_string(&j)?)?;
    eprintln!(
        "{} pages x {repeat}: {:.3}s wall, {:.3}s CPU, {:.0} pages per CPU-second, {:.1} MB per CPU-second",
        pages.len(),
        secs,
        cpu_secs,
        (pages.len() * repeat) as f64 / cpu_secs,
        (bytes * repeat) as f64 / cpu_secs / 1e6
    );
    Ok(())
}

/// This thread's CPU time in seconds (Linux `schedstat`: first field, nanoseconds on CPU).
fn thread_cpu_secs() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}
