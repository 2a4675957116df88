//! The HTML tokenizer and extractor on arbitrary text: no panic, no markup leaks out of
//! raw-text elements.
#![no_main]
#![allow(dead_code)]

#[path = "../../stages/extract_html/html.rs"]
mod html;
#[path = "../../stages/extract_html/extract.rs"]
mod extract;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let ex = extract::extract(&s, &extract::Params::default());
    // Output is never longer than the input's characters plus the line breaks we add.
    assert!(ex.text.chars().count() <= s.chars().count() * 2 + 1);
});
