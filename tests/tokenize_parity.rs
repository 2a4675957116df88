//! The tokenize fast engine gives byte-identical ids to Hugging Face `tokenizers` on every
//! document of a seeded mixed corpus, for both shipped tokenizers (issue 21).
//!
//! The corpus mixes slices of the shipped English and Chinese samples with the cases a
//! hand-written pre-tokenizer and BPE can get wrong: emoji (ZWJ sequences, skin tones,
//! flags), rare CJK (extension B and later), mixed scripts with combining marks and text
//! not in NFC, Hangul jamo, long digit runs in several scripts, whitespace runs (tabs,
//! CR/LF, U+3000, NBSP, U+2028, U+0085), special-token strings inside text and half of
//! them, apostrophe contractions in any case, random scalar values from the whole range
//! (controls, private use, unassigned), and long runs that take the heap BPE path.
//!
//! CI runs ~2 MB per tokenizer. The big run (≥ 50 MB) is by hand:
//!
//! ```text
//! SLUICE_TOK_PARITY_MB=60 cargo test --release --no-default-features --test integration \
//!     tokenize_parity -- --nocapture
//! ```
//!
//! `SLUICE_TOK_PARITY_OUT=corpus.jsonl` also writes the corpus (one `{"text": ...}` a line),
//! the input of `benches/tokenize_speed.sh`.

use crate::common::root;
use sluice::stages::tokenize::{Config, Engine, Tokenize};

/// The crate's splitmix64 (the same sequence for a seed), with this generator's helpers.
struct Rng(sluice::stages::minhash_dedup::signature::SplitMix64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }
}

const EDGES: &[&str] = &[
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|im_start|>user\n",
    "<|endoftext",
    "|endoftext|>",
    "<<|endoftext|>>",
    "<｜end▁of▁sentence｜>",
    "<｜begin▁of▁sentence｜>",
    "<think>",
    "</think>",
    "<｜fim▁hole｜>",
    "😀",
    "👍🏽",
    "👨‍👩‍👧‍👦",
    "🇨🇳🇺🇸",
    "❤️",
    "🤖🤖🤖🤖🤖🤖🤖🤖🤖🤖🤖🤖🤖🤖🤖🤖🤖🤖",
    "𠀀𠀁𠀂𪚥𫠝𬺰𰀀",
    "龘靐齉爨",
    "ひらがなとカタカナ゠ーヽヾ",
    "한국어 텍스트",
    "\u{1100}\u{1161}\u{11A8}",
    "e\u{0301}",
    "A\u{030A}",
    "\u{0301}\u{0301}",
    "Ω\u{2126}Å\u{212B}",
    "ﬁﬂ ｆｕｌｌｗｉｄｔｈ １２３",
    "नमस्ते दुनिया",
    "مرحبا بالعالم ١٢٣٤٥٦",
    "สวัสดีชาวโลก",
    "Привет, мир! Ёё",
    "Γειά σου Κόσμε",
    "12345678901234567890",
    "3.14159265358979323846",
    "٠١٢٣٤٥٦٧٨٩",
    "Ⅻ ⅷ ½ ¾ ²³",
    "2024年12月5日",
    "    ",
    "\t\t\t",
    "\r\n\r\n",
    "\n\n\n\n",
    " \n \n ",
    "\u{3000}\u{3000}",
    "\u{a0}\u{a0}x",
    "\u{2028}\u{2029}",
    "\u{85}",
    "\u{200b}\u{200c}\u{200d}\u{feff}",
    "\u{0}\u{1}\u{7f}",
    "\u{e000}\u{f8ff}",
    "\u{10ffff}",
    "it's I'LL 'Re 'VE 'm 'D 'ſ don't",
    "''''",
    "the cat's-pajamas.com/index.html?x=1&y=2",
    ".Hello .Héllo $PATH @user #tag",
    "fn main() { println!(\"{}\", x); }",
    "====================================================================",
    "--------",
    "……——",
    "我们在上海的一个小咖啡馆里坐了整整一个下午一直在讨论这个问题没有得出任何结论",
];

/// Whole-range scalar values, mostly small ones.
fn random_char(r: &mut Rng) -> char {
    loop {
        let c = match r.below(4) {
            0 => r.below(0x80),
            1 => r.below(0x3000),
            2 => r.below(0x30000),
            _ => r.below(0x110000),
        } as u32;
        if let Some(c) = char::from_u32(c) {
            return c;
        }
    }
}

/// A slice of `s` of about `n` bytes at char boundaries.
fn slice(r: &mut Rng, s: &str, n: usize) -> String {
    let mut a = r.below(s.len().max(1));
    while !s.is_char_boundary(a) {
        a -= 1;
    }
    let mut b = (a + n).min(s.len());
    while !s.is_char_boundary(b) {
        b -= 1;
    }
    s[a..b].to_string()
}

/// `target` bytes of documents, seeded.
pub fn corpus(seed: u64, target: usize) -> Vec<String> {
    let mut sources = String::new();
    let mut zh = String::new();
    for (f, is_zh) in [
        ("samples/text/articles_en.jsonl", false),
        ("samples/text/cmrc2018_zh.jsonl", true),
        ("samples/benchmarks/gaokao_mcq_zh.jsonl", true),
        ("samples/synthetic/alpaca_cot_zh.jsonl", true),
    ] {
        let text = std::fs::read_to_string(root().join(f)).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let t = v
                .as_object()
                .unwrap()
                .values()
                .filter_map(|x| x.as_str())
                .max_by_key(|x| x.len())
                .unwrap_or("");
            let dst = if is_zh { &mut zh } else { &mut sources };
            dst.push_str(t);
            dst.push('\n');
        }
    }
    let mut r = Rng(sluice::stages::minhash_dedup::signature::SplitMix64(seed));
    let mut docs = Vec::new();
    let mut total = 0;
    while total < target {
        let mut d = String::new();
        let parts = 1 + r.below(24);
        for _ in 0..parts {
            match r.below(10) {
                0..=2 => {
                    let n = 1 + r.below(3000);
                    d.push_str(&slice(&mut r, &zh, n))
                }
                3..=4 => {
                    let n = 1 + r.below(3000);
                    d.push_str(&slice(&mut r, &sources, n))
                }
                5..=6 => d.push_str(r.pick(EDGES)),
                7 => {
                    for _ in 0..1 + r.below(12) {
                        d.push(random_char(&mut r));
                    }
                }
                8 => {
                    // Long runs (heap BPE path, whitespace look-ahead).
                    let unit =
                        r.pick(&[" ", "\t", "\n", "0", "9", "中", "a", "!", "😀", "\u{3000}"]);
                    d.push_str(&unit.repeat(1 + r.below(200)));
                }
                _ => d.push_str(r.pick(&[" ", "\n", "'", "’", "，", "。", "  ", "\r\n"])),
            }
        }
        // A few very big documents.
        if r.below(500) == 0 {
            let big = slice(&mut r, &zh, 400_000);
            d.push_str(&big);
        }
        total += d.len();
        docs.push(d);
    }
    docs
}

fn tokenizer(name: &str, engine: Engine) -> Tokenize {
    Tokenize::new(Config {
        tokenizer: root().join(format!("samples/tokenizers/{name}/tokenizer.json")),
        add_special_tokens: false,
        append_eos: false,
        eos_token: None,
        // HF encodes every document whole, the reference.
        max_unsplit_bytes: usize::MAX,
        engine,
    })
    .unwrap()
}

#[test]
fn tokenize_parity_fast_equals_hf_on_a_mixed_corpus() {
    let mb: f64 = std::env::var("SLUICE_TOK_PARITY_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let docs = corpus(21, (mb * 1e6) as usize);
    let bytes: usize = docs.iter().map(String::len).sum();
    if let Ok(out) = std::env::var("SLUICE_TOK_PARITY_OUT") {
        let mut s = String::new();
        for d in &docs {
            s.push_str(&serde_json::json!({ "text": d }).to_string());
            s.push('\n');
        }
        std::fs::write(out, s).unwrap();
    }
    for name in ["qwen2", "deepseek-v3"] {
        let hf = tokenizer(name, Engine::Hf);
        let fast = tokenizer(name, Engine::Fast);
        assert_eq!(fast.engine(), "fast");
        let mut n_tokens = 0usize;
        // Chunks keep HF's per-document state bounded.
        for (c, chunk) in docs.chunks(256).enumerate() {
            let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let want = hf.encode_texts(texts.clone()).unwrap();
            let got = fast.encode_any(&texts).unwrap();
            for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                if w != g {
                    let k = w.iter().zip(g).take_while(|(a, b)| a == b).count();
                    panic!(
                        "{name}: doc {} differs at token {k}: hf {:?} fast {:?}",
                        c * 256 + i,
                        &w[k.saturating_sub(3)..(k + 5).min(w.len())],
                        &g[k.saturating_sub(3)..(k + 5).min(g.len())],
                    );
                }
                n_tokens += w.len();
            }
        }
        eprintln!(
            "tokenize parity {name}: {} documents, {bytes} bytes, {n_tokens} tokens: identical",
            docs.len()
        );
    }
}
