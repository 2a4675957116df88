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
        ingest_warc::kind(),
        ingest_instructions::kind(),
        // web
        tdm_optout::kind(),
        extract_html::kind(),
        url_filter::kind(),
        // Chinese text
        normalize::kind(),
        langid::kind(),
        segment_zh::kind(),
        heuristic_filter::kind(),
        pii_redact::kind(),
        quality_classifier::kind(),
        length_filter::kind(),
        // dedup
        exact_dedup::kind(),
        line_dedup::kind(),
        minhash_dedup::kind(),
        // mixing, decontamination, tokens
        decontaminate::kind(),
        mix::kind(),
        tokenize::kind(),
        pack::kind(),
        // sinks
        parquet_shards::kind(),
    ]
}

/// Internal kinds: never written in a config by hand, not listed by `sluice stages`; the
/// phase planner substitutes them (`minhash_signatures`: phase 1 of distributed
/// `minhash_dedup`).
pub fn internal() -> Vec<Kind> {
    vec![minhash_dedup::dist::signatures_kind()]
}

/// Kinds that may run as a multi-phase ("global") stage before the `run` phase (see
/// [`crate::phases`]): the CLI and the launchers get a config's phases from here.
pub fn global() -> Vec<crate::phases::GlobalKind> {
    vec![minhash_dedup::dist::global_kind()]
}

/// Look up a kind by name (public or internal).
pub fn get(name: &str) -> Option<Kind> {
    all().into_iter().chain(internal()).find(|k| k.name == name)
}
