//! Stage kinds: one module per `kind:`. The engine never names a concrete stage except
//! in [`crate::registry`].

pub mod length_filter;
pub mod ingest_warc;
pub mod extract_html;
pub mod url_filter;
