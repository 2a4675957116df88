//! The one place that maps a config `kind:` string to a builder.
//! Adding a stage: write `stages/<kind>.rs` with a `kind()` function, declare it in
//! `stages/mod.rs`, and add one line here.

use crate::stage::Kind;
use crate::stages::*;

/// Every registered kind, in the order `sluice stages` lists them.
pub fn all() -> Vec<Kind> {
    vec![
        // sources
        ingest_jsonl::kind(),
        ingest_parquet::kind(),
        ingest_instructions::kind(),
        // transforms and stages
        length_filter::kind(),
        tokenize::kind(),
        decontaminate::kind(),
        mix::kind(),
        pack::kind(),
        // sinks
        parquet_shards::kind(),
    ]
}

/// Look up a kind by name.
pub fn get(name: &str) -> Option<Kind> {
    all().into_iter().find(|k| k.name == name)
}
