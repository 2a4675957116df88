//! The WARC/ARC reader and HTTP layer on arbitrary bytes: no panic, no hang, bounded output.
#![no_main]
#![allow(dead_code)]

#[path = "../../stages/ingest_warc/http.rs"]
mod http;
#[path = "../../stages/ingest_warc/reader.rs"]
mod reader;

use libfuzzer_sys::fuzz_target;

const CAP: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = reader::RecordReader::new(data, CAP, &["response", "resource", "conversion"]) else {
        return;
    };
    let mut n = 0usize;
    for item in r {
        n += 1;
        // Every item consumes at least one input byte (or one gzip member), so the number
        // of items is bounded by the input length.
        assert!(n <= data.len() + 2, "reader produced more items than input bytes");
        if let reader::Item::Record(rec) = item {
            assert!(rec.block.len() <= CAP);
            if let Ok(resp) = http::parse_response(&rec.block) {
                if let Some(Ok(b)) = http::dechunk(resp.body, CAP) {
                    assert!(b.len() <= CAP);
                }
                for enc in ["gzip", "deflate", "br"] {
                    if let Ok(b) = http::decode_content(resp.body, enc, CAP) {
                        assert!(b.len() <= CAP);
                    }
                }
            }
        }
    }
});
