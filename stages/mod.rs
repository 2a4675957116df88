//! Stage kinds: one module per `kind:`. The engine never names a concrete stage except
//! in [`crate::registry`].

pub mod heuristic_filter;
pub mod ingest_jsonl;
pub mod ingest_parquet;
pub mod langid;
pub mod length_filter;
pub mod normalize;
pub mod parquet_shards;
pub mod pii_redact;
pub mod segment_zh;
pub mod tokenize;
