//! Helpers shared by the integration tests.
#![allow(dead_code)]

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
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut rows = Vec::new();
    for (name, _) in files(dir, "shards") {
        let f = std::fs::File::open(dir.join("shards").join(&name)).unwrap();
        let r = ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap();
        for b in r {
            let b = b.unwrap();
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
    }
    rows
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
