//! Stage kinds: one module per `kind:`. The engine never names a concrete stage except
//! in [`crate::registry`].

pub mod decontaminate;
pub mod ingest_instructions;
pub mod ingest_jsonl;
pub mod ingest_parquet;
pub mod length_filter;
pub mod mix;
pub mod pack;
pub mod parquet_shards;
pub mod spill;
pub mod tokenize;
