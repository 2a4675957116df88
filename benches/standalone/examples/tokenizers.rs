//! Tokenizer speed: sluice's hand-written tokenizer (with entity decoding) against the
//! html5gum and html5ever tokenizers (tokens only, no tree), over the pages of the given
//! directories, single thread, thread CPU time. The numbers are quoted in the
//! `extract_html` module doc.
//!   cargo run --release --manifest-path benches/standalone/Cargo.toml --example tokenizers -- \
//!     ../shared/data/html-magic-html-bench-zh/article ../shared/data/html-magic-html-bench-zh/forum
use html5ever::tokenizer::{
    BufferQueue, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use sluice::{charset, html};
struct Sink(std::cell::Cell<usize>);
impl TokenSink for Sink {
    type Handle = ();
    fn process_token(&self, t: Token, _line: u64) -> TokenSinkResult<()> {
        if let Token::CharacterTokens(s) = &t {
            self.0.set(self.0.get() + s.len());
        } else {
            self.0.set(self.0.get() + 1);
        }
        TokenSinkResult::Continue
    }
}
fn cpu() -> f64 {
    // Thread CPU time (Linux); 0 elsewhere, which makes the figures meaningless, not wrong.
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut pages = vec![];
    for d in std::env::args().skip(1) {
        for e in std::fs::read_dir(&d)?.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "html") {
                pages.push(charset::decode(&std::fs::read(&p)?, None, None, true).text);
            }
        }
    }
    let n = pages.len();
    let rep = 10;
    let t = cpu();
    let mut sink = 0usize;
    for _ in 0..rep {
        for p in &pages {
            for tok in html::Tokenizer::new(p) {
                sink += match tok {
                    html::Token::Text(s) => {
                        let mut o = String::new();
                        html::decode_entities_into(s, &mut o);
                        o.len()
                    }
                    _ => 1,
                };
            }
        }
    }
    let a = cpu() - t;
    println!(
        "sluice tokenizer (+entity decoding): {:.0} pages/CPU-s",
        (n * rep) as f64 / a
    );
    let t = cpu();
    for _ in 0..rep {
        for p in &pages {
            for tok in html5gum::Tokenizer::new(p.as_str()) {
                sink += match tok {
                    Ok(html5gum::Token::String(s)) => s.len(),
                    _ => 1,
                };
            }
        }
    }
    let b = cpu() - t;
    println!(
        "html5gum 0.8 tokenizer: {:.0} pages/CPU-s",
        (n * rep) as f64 / b
    );
    let t = cpu();
    for _ in 0..rep {
        for p in &pages {
            let s = Sink(std::cell::Cell::new(0));
            let tk = Tokenizer::new(s, TokenizerOpts::default());
            let q = BufferQueue::default();
            q.push_back(p.as_str().into());
            let _ = tk.feed(&q);
            tk.end();
            sink += tk.sink.0.get();
        }
    }
    let c = cpu() - t;
    println!(
        "html5ever 0.35 tokenizer: {:.0} pages/CPU-s",
        (n * rep) as f64 / c
    );
    std::hint::black_box(sink);
    Ok(())
}
