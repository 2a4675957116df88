//! Stage kinds: one module per `kind:`. The engine never names a concrete stage except
//! in [`crate::registry`].

pub mod exact_dedup;
pub mod ingest_jsonl;
pub mod ingest_parquet;
pub mod length_filter;
pub mod line_dedup;
pub mod minhash_dedup;
pub mod parquet_shards;
pub mod tokenize;
