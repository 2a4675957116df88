//! Stage kinds: one module per `kind:`. The engine never names a concrete stage except
//! in [`crate::registry`].

pub mod ingest_jsonl;
pub mod ingest_parquet;
pub mod parquet_shards;
pub mod tokenize;
pub mod quality_classifier;
pub mod heuristic_filter;
pub mod langid;
pub mod length_filter;
pub mod normalize;
pub mod pii_redact;
pub mod segment_zh;
