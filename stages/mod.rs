//! Stage kinds: one module per `kind:`. The engine never names a concrete stage except
//! in [`crate::registry`].

pub mod ingest_jsonl;
pub mod ingest_parquet;
pub mod length_filter;
pub mod parquet_shards;
pub mod tokenize;
pub mod decontaminate;
pub mod ingest_instructions;
pub mod mix;
pub mod pack;
pub mod spill;
