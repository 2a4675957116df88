//! The extraction and charset modules of sluice, compiled alone for the benchmark.
#![allow(dead_code)]
#[path = "../../stages/ingest_warc/charset.rs"]
pub mod charset;
#[path = "../../stages/extract_html/extract.rs"]
pub mod extract;
#[path = "../../stages/extract_html/html.rs"]
pub mod html;

/// Same paths as in the main crate, so `benches/extract_html.rs` compiles unchanged.
pub mod stages {
    pub mod extract_html {
        pub use crate::extract::{extract, Extracted, Params};
    }
    pub mod ingest_warc {
        pub use crate::charset;
    }
}
