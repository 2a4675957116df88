//! Progress and the done line (issue 23), through the real binary with stderr to a pipe:
//! plain lines, no ANSI, progress measured in bytes of the (compressed) input files, and
//! a done line that counts bad records and names the top reject reasons.

use std::io::Write;

use serde_json::Value;

use crate::common::*;

#[test]
fn done_line_and_plain_progress_on_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    // The bundled Chinese sample, gzipped, with three lines that cannot become documents.
    let good = std::fs::read_to_string(root().join("samples/text/cmrc2018_zh.jsonl")).unwrap();
    let gz = dir.path().join("cmrc.jsonl.gz");
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    for (i, l) in good.lines().enumerate() {
        writeln!(e, "{l}").unwrap();
        match i {
            10 => writeln!(e, "{{\"text\": \"unterminated").unwrap(),
            20 => writeln!(e, "[1, 2, 3]").unwrap(),
            30 => writeln!(e, "{{\"title\": \"no text field\"}}").unwrap(),
            _ => {}
        }
    }
    e.finish().unwrap();
    let cfg = dir.path().join("p.yaml");
    std::fs::write(
        &cfg,
        format!(
            "nodes:
  docs:
    kind: ingest_jsonl
    paths: [{}]
  long:
    kind: length_filter
    inputs: [docs]
    min_chars: 300
    max_chars: 900
  shards:
    kind: parquet_shards
    inputs: [long]
",
            gz.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    // No `--no-progress`: on a pipe, progress is plain log lines (at least the last one).
    let o = bin()
        .args(["run", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains('\u{1b}'), "ANSI escape on a pipe: {err:?}");

    let stats: Value =
        serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap();
    let n = |node: &str, k: &str| stats["nodes"][node][k].as_u64().unwrap();
    let read = n("docs", "docs_in");
    let short = stats["nodes"]["long"]["rejects"]["too_short"]
        .as_u64()
        .unwrap();
    let long = stats["nodes"]["long"]["rejects"]["too_long"]
        .as_u64()
        .unwrap();
    assert!(short > 0 && long > 0 && short != long, "{short} {long}");
    let kept = read - short - long;
    assert_eq!(stats["nodes"]["docs"]["bad_records"]["count"], 3);

    let done = err
        .lines()
        .find(|l| l.contains("done in "))
        .unwrap_or_else(|| panic!("no done line: {err}"));
    let (first, second) = if short > long {
        (("too_short", short), ("too_long", long))
    } else {
        (("too_long", long), ("too_short", short))
    };
    let expect = format!(
        ": {read} in → {kept} kept, {} rejected (long/{} {}, long/{} {}), 3 bad records; 1 shard → {}",
        short + long,
        first.0,
        first.1,
        second.0,
        second.1,
        out.display()
    );
    assert!(done.contains(&expect), "{done}\nexpected …{expect}");

    // The last progress line: all of the compressed input read, per-stage counts.
    let progress = err
        .lines()
        .rfind(|l| l.contains("progress: "))
        .unwrap_or_else(|| panic!("no progress line: {err}"));
    let size = std::fs::metadata(&gz).unwrap().len();
    assert!(
        progress.contains("100% of ") && progress.contains("input read"),
        "{progress} (input {size} bytes)"
    );
    let stages = format!(
        "docs {}  long →{}  shards {}",
        compact(read),
        compact(kept),
        compact(kept)
    );
    assert!(
        progress.ends_with(&stages),
        "{progress}\nexpected …{stages}"
    );
}

/// The runtime's compact count (what the per-stage line prints).
fn compact(n: u64) -> String {
    sluice::runtime::compact(n)
}
