//! Stage kinds: one module per `kind:`. The engine never names a concrete stage except
//! in [`crate::registry`].

pub mod extract_html;
pub mod ingest_jsonl;
pub mod ingest_parquet;
pub mod ingest_warc;
pub mod length_filter;
pub mod parquet_shards;
pub mod tokenize;
pub mod url_filter;
