//! `sluice validate` and `sluice run` report every problem of a config in one run, each
//! with its node and field (issue 17). The fixture `tests/golden/validate_all/pipeline.yaml`
//! has problems in `run:` and in every node; `expected.txt` beside it is the whole report
//! (`UPDATE_GOLDEN=1` rewrites it).

use crate::common::{bin, root};

const FIXTURE: &str = "tests/golden/validate_all/pipeline.yaml";

fn expected_report() -> String {
    std::fs::read_to_string(root().join("tests/golden/validate_all/expected.txt")).unwrap()
}

/// Each kind of problem in the fixture, as it must read.
const EVERY_KIND: &[&str] = &[
    // `run:`: every bad field, named
    r#"run: field "batch_size": expected an integer >= 1, got 0"#,
    r#"run: field "queue_batches": invalid type: string "many", expected an integer"#,
    r#"run: field "max_bad_records": invalid value: integer `-5`, expected a non-negative integer"#,
    r#"run: unknown field "batch_sise" (did you mean "batch_size"?)"#,
    // type error, unknown field
    r#"node "src" (ingest_jsonl): field "max_line_bytes": invalid type: string "three hundred", expected an integer"#,
    r#"node "src" (ingest_jsonl): unknown field "text_feild" (did you mean "text_field"?)"#,
    // unknown kind (and the nodes after it are still checked)
    r#"node "clean": unknown kind "normalise" (did you mean "normalize"?); `sluice stages` lists them"#,
    // two type errors in one node
    r#"node "filter" #3 (length_filter): field "min_chars": invalid type: string "lots", expected an integer"#,
    r#"node "filter" #3 (length_filter): field "max_chars": invalid type: floating point `1.5`, expected an integer"#,
    // duplicate node name, min > max
    r#"node "filter" #4 (length_filter): duplicate node name: node #3 is also named "filter"; names must be unique"#,
    r#"node "filter" #4 (length_filter): field "min_chars": expected at most "max_chars" (10), got 100"#,
    // a key written twice, a threshold outside its range, zero counts and sizes
    r#"node "dedup" (minhash_dedup): field "threshold": given 2 times; a key may appear once (the first is used)"#,
    r#"node "dedup" (minhash_dedup): field "threshold": expected a number in (0, 1], got 1.5"#,
    r#"node "dedup" (minhash_dedup): field "num_perm": expected an integer in [1, 4096], got 0"#,
    r#"node "lines" (line_dedup): field "max_occurrences": expected an integer >= 1, got 0"#,
    // unknown input, zero sizes, unknown enum value
    r#"node "out" (parquet_shards): field "inputs": unknown node "srcc" (did you mean "src"?)"#,
    r#"node "out" (parquet_shards): field "row_group_bytes": expected an integer >= 1, got 0"#,
    r#"node "out" (parquet_shards): field "shard_size_bytes": expected an integer >= 1, got 0"#,
    r#"node "out" (parquet_shards): field "compression": unknown value "zstdd" (did you mean "zstd"?); expected one of: zstd, snappy, none"#,
    // the cycle, exactly (not `out`, which only reads from it)
    "cycle: dedup -> exact -> lines -> dedup (a node cannot read its own output, even through others)",
];

#[test]
fn validate_reports_every_problem_in_one_run() {
    let o = bin().args(["validate", FIXTURE]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{err}");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(root().join("tests/golden/validate_all/expected.txt"), &err).unwrap();
    }
    let lines: Vec<&str> = err
        .lines()
        .skip(1)
        .map(|l| l.trim_start_matches("  - "))
        .collect();
    assert_eq!(lines, EVERY_KIND, "report:\n{err}");
    assert_eq!(
        err.lines().next(),
        Some(format!("{FIXTURE}: {} problems:", EVERY_KIND.len()).as_str())
    );
    assert_eq!(err, expected_report());
}

#[test]
fn run_reports_the_same_problems_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = bin()
        .args(["run", FIXTURE, "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err, expected_report());
    assert!(
        !out.exists(),
        "a run of an invalid config created its run directory"
    );
}

/// With a sound graph the problems come from the node builders, all of them.
#[test]
fn field_problems_of_a_sound_graph_are_all_reported() {
    let yaml = r#"
run:
  batch_size: 0
nodes:
  src:
    kind: ingest_jsonl
    paths: [samples/text/cmrc2018_zh.jsonl]
    max_line_bytes: 0
  q:
    kind: quality_classifier
    inputs: [src]
    model: samples/models/missing.ftz
    threshold: -0.5
  out:
    kind: parquet_shards
    inputs: [q]
    zstd_level: high
    row_group_rows: 0
"#;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(&p, yaml).unwrap();
    for cmd in ["validate", "run"] {
        let mut c = bin();
        c.args([cmd, p.to_str().unwrap()]);
        if cmd == "run" {
            c.args(["--out", dir.path().join("out").to_str().unwrap()]);
        }
        let o = c.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(2), "{cmd}: {err}");
        let lines: Vec<&str> = err
            .lines()
            .skip(1)
            .map(|l| l.trim_start_matches("  - "))
            .collect();
        assert_eq!(
            lines,
            [
                r#"run: field "batch_size": expected an integer >= 1, got 0"#,
                r#"node "src" (ingest_jsonl): field "max_line_bytes": expected an integer >= 1, got 0"#,
                r#"node "q" (quality_classifier): field "model": file not found: samples/models/missing.ftz"#,
                r#"node "q" (quality_classifier): field "threshold": expected a number in [0, 1], got -0.5"#,
                r#"node "out" (parquet_shards): field "zstd_level": invalid type: string "high", expected an integer"#,
                r#"node "out" (parquet_shards): field "row_group_rows": expected an integer >= 1, got 0"#,
            ],
            "{cmd}: {err}"
        );
    }
}
