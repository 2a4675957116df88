//! Stage kinds: one module per `kind:`. The engine never names a concrete stage except
//! in [`crate::registry`].

pub mod decontaminate;
pub mod exact_dedup;
pub mod extract_html;
pub mod heuristic_filter;
pub mod ingest_instructions;
pub mod ingest_jsonl;
pub mod ingest_parquet;
pub mod ingest_warc;
pub mod langid;
pub mod length_filter;
pub mod line_dedup;
pub mod minhash_dedup;
pub mod mix;
pub mod normalize;
pub mod pack;
pub mod parquet_shards;
pub mod pii_redact;
pub mod quality_classifier;
pub mod segment_zh;
pub mod spill;
pub mod tdm_optout;
pub mod tokenize;
pub mod url_filter;
