//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sluice::config;
use sluice::runtime::{self, RunOptions, RunSummary};

/// The repository root (tests run with it as the working directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The sluice binary.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.current_dir(root());
    c
}

/// Run a config given as YAML text in-process.
pub fn run_yaml(yaml: &str, out: &Path, threads: usize) -> RunSummary {
    let spec =
        config::parse(yaml, "test.yaml").unwrap_or_else(|p| panic!("config problems: {p:?}"));
    runtime::run(spec, &RunOptions::new(out, threads)).unwrap_or_else(|e| panic!("run failed: {e}"))
}

/// Run a config with rank options.
pub fn run_yaml_rank(
    yaml: &str,
    out: &Path,
    threads: usize,
    rank: usize,
    world: usize,
) -> RunSummary {
    let spec =
        config::parse(yaml, "test.yaml").unwrap_or_else(|p| panic!("config problems: {p:?}"));
    let mut o = RunOptions::new(out, threads);
    o.rank = rank;
    o.world_size = world;
    runtime::run(spec, &o).unwrap_or_else(|e| panic!("run failed: {e}"))
}

/// All files under `dir/sub`, sorted, with their bytes.
pub fn files(dir: &Path, sub: &str) -> Vec<(String, Vec<u8>)> {
    let d = dir.join(sub);
    let mut v: Vec<(String, Vec<u8>)> = match std::fs::read_dir(&d) {
        Ok(rd) => rd
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect(),
        Err(_) => vec![],
    };
    v.sort();
    v
}

/// Read every row of the parquet files under `dir/shards` as (id, tokens, text).
pub fn read_doc_rows(dir: &Path) -> Vec<(String, Vec<u32>, String)> {
    let mut rows = Vec::new();
    for b in record_batches(dir, "shards") {
        let ids = sluice::arrow_io::string_column(&b, "id").unwrap().unwrap();
        let texts = sluice::arrow_io::string_column(&b, "text")
            .unwrap()
            .unwrap_or_default();
        let toks = sluice::arrow_io::u32_list_column(&b, "tokens")
            .unwrap()
            .unwrap();
        for i in 0..ids.len() {
            rows.push((
                ids[i].clone().unwrap(),
                toks[i].clone().unwrap_or_default(),
                texts.get(i).cloned().flatten().unwrap_or_default(),
            ));
        }
    }
    rows
}

/// A test that needs a missing component calls this instead of printing SKIP by hand.
/// With `SLUICE_REQUIRE=all` (set by `.ci/run`), or a comma list naming the component
/// (`SLUICE_REQUIRE=slurm,chromium`), the test fails instead, so CI is green only when
/// every test really ran.
pub fn skip(component: &str, why: &str) {
    let req = std::env::var("SLUICE_REQUIRE").unwrap_or_default();
    let required = req
        .split(',')
        .map(str::trim)
        .any(|r| r == "all" || r == component);
    if required {
        panic!("{component} is required (SLUICE_REQUIRE={req}) but missing: {why}");
    }
    eprintln!("SKIP ({component} missing): {why}");
}

/// A python3 that can import the given modules, if any.
pub fn python_with(modules: &[&str]) -> Option<String> {
    let cands = [
        std::env::var("SLUICE_PYTHON").unwrap_or_default(),
        "python3".to_string(),
    ];
    for py in cands.iter().filter(|p| !p.is_empty()) {
        let ok = Command::new(py)
            .arg("-c")
            .arg(format!("import {}", modules.join(",")))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Some(py.clone());
        }
    }
    None
}

/// Run `py -c script args...`, assert it succeeded (showing its stderr if not), and return
/// its stdout.
pub fn run_python(py: &str, script: &str, args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let o = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "python check failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// Split the two text samples into `n` JSONL files, `repeat` times over (ids made unique).
pub fn split_inputs(dir: &Path, n: usize, repeat: usize) {
    let mut lines = Vec::new();
    for f in [
        "samples/text/cmrc2018_zh.jsonl",
        "samples/text/articles_en.jsonl",
    ] {
        lines.extend(
            std::fs::read_to_string(root().join(f))
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>(),
        );
    }
    let mut files: Vec<std::fs::File> = (0..n)
        .map(|i| std::fs::File::create(dir.join(format!("part-{i:03}.jsonl"))).unwrap())
        .collect();
    let mut k = 0usize;
    for _ in 0..repeat {
        for l in &lines {
            writeln!(files[k % n], "{l}").unwrap();
            k += 1;
        }
    }
}

/// Every record batch of every Parquet file under `dir/sub`, in file-name order.
pub fn record_batches(dir: &Path, sub: &str) -> Vec<arrow::array::RecordBatch> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut out = Vec::new();
    for (name, _) in files(dir, sub) {
        let f = std::fs::File::open(dir.join(sub).join(&name)).unwrap();
        let r = ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap();
        out.extend(r.map(|b| b.unwrap()));
    }
    out
}

/// Every reject row as (id, stage, reason, detail, meta), sorted.
pub fn reject_rows(dir: &Path) -> Vec<(String, String, String, String, String)> {
    let mut v = Vec::new();
    for b in record_batches(dir, "rejects") {
        let col = |c: &str| sluice::arrow_io::string_column(&b, c).unwrap().unwrap();
        let (ids, st, re, de, me) = (
            col("id"),
            col("stage"),
            col("reason"),
            col("detail"),
            col("meta"),
        );
        for i in 0..ids.len() {
            v.push((
                ids[i].clone().unwrap(),
                st[i].clone().unwrap_or_default(),
                re[i].clone().unwrap_or_default(),
                de[i].clone().unwrap_or_default(),
                me[i].clone().unwrap_or_default(),
            ));
        }
    }
    v.sort();
    v
}
