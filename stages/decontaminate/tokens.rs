//! The unified token stream of `decontaminate`: one sequence for Chinese, Latin text and
//! formulas, so an item with a short Chinese stem and Latin or formula options is matched
//! as one piece.
//!
//! * Every CJK ideograph (and kana) is one token.
//! * Every run of letters, or of digits, is one token, lowercased: `H2O` → `h 2 o`, so a
//!   formula typed as `H2O`, `H₂O` or `$\mathrm{H}_{2} \mathrm{O}$` gives the same tokens.
//! * Greek letters are one token each, and so are their LaTeX names: `\theta` = `θ`.
//!   LaTeX function names are words: `\tan` = `tan`. Every other LaTeX command
//!   (`\frac`, `\mathrm`, `\left`, `\leq`, `\quad` …) is markup or a symbol and gives
//!   no token, as the rendered symbols (`≤`, `√`) give none.
//! * Everything else (punctuation, spaces, line breaks, `$ { } ^ _`) only separates.
//! * Each character is compatibility-decomposed first (NFKD; combining marks then act as
//!   separators), so texts equal under NFKC give equal tokens: full-width `Ａ１（` and
//!   half-width `A1(` match, `①` matches `1`.
//!
//! Each token keeps the byte span of its source characters, for reject details and
//! redaction.

use std::ops::Range;

use xxhash_rust::xxh3::xxh3_64_with_seed;

const WORD_SEED: u64 = 0x574F_5244_5345_4544; // "WORDSEED"
const CJK_TAG: u64 = 0x434A_4B00_0000_0000; // "CJK" in the high bytes; code point below
const NGRAM_SEED: u64 = 0x4E47_5241_4D55_4E31; // "NGRAMUN1"

/// LaTeX names of Greek letters.
const GREEK: &[(&str, char)] = &[
    ("alpha", 'α'),
    ("beta", 'β'),
    ("gamma", 'γ'),
    ("delta", 'δ'),
    ("epsilon", 'ε'),
    ("varepsilon", 'ε'),
    ("zeta", 'ζ'),
    ("eta", 'η'),
    ("theta", 'θ'),
    ("vartheta", 'θ'),
    ("iota", 'ι'),
    ("kappa", 'κ'),
    ("lambda", 'λ'),
    ("mu", 'μ'),
    ("nu", 'ν'),
    ("xi", 'ξ'),
    ("pi", 'π'),
    ("varpi", 'π'),
    ("rho", 'ρ'),
    ("varrho", 'ρ'),
    ("sigma", 'σ'),
    ("varsigma", 'σ'),
    ("tau", 'τ'),
    ("upsilon", 'υ'),
    ("phi", 'φ'),
    ("varphi", 'φ'),
    ("chi", 'χ'),
    ("psi", 'ψ'),
    ("omega", 'ω'),
];

/// LaTeX function names written as words when rendered.
const FUNCTIONS: &[&str] = &[
    "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
    "log", "ln", "lg", "exp", "lim", "max", "min", "sup", "inf", "det", "gcd", "bmod",
];

fn is_greek(c: char) -> bool {
    matches!(c as u32, 0x0391..=0x03A9 | 0x03B1..=0x03C9)
}

fn char_token(c: char, span: Range<usize>) -> Token {
    let c = if is_greek(c) {
        c.to_lowercase().next().unwrap_or(c)
    } else {
        c
    };
    Token {
        value: CJK_TAG | c as u64,
        span,
    }
}

/// Whether a character is its own token: CJK ideographs and Japanese kana.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2EBEF
        | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F | 0x30000..=0x3134F
        | 0x3041..=0x3096 | 0x30A1..=0x30FA)
}

/// One token: its 64-bit value and the byte span of its source characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// CJK or Greek: tagged code point; word: xxh3 of the lowercased word.
    pub value: u64,
    /// Byte range in the text.
    pub span: Range<usize>,
}

#[derive(Default)]
struct Word {
    buf: String,
    start: usize,
    end: usize,
    digits: bool,
    /// The run follows a backslash: a LaTeX command name, dropped.
    command: bool,
}

impl Word {
    fn flush(&mut self, out: &mut Vec<Token>) {
        if self.command {
            let name = self.buf.as_str();
            if let Some(&(_, g)) = GREEK.iter().find(|(n, _)| *n == name) {
                out.push(char_token(g, self.start..self.end));
            } else if FUNCTIONS.contains(&name) {
                out.push(Token {
                    value: xxh3_64_with_seed(self.buf.as_bytes(), WORD_SEED),
                    span: self.start..self.end,
                });
            }
        } else if !self.buf.is_empty() {
            out.push(Token {
                value: xxh3_64_with_seed(self.buf.as_bytes(), WORD_SEED),
                span: self.start..self.end,
            });
        }
        self.buf.clear();
        self.command = false;
    }

    /// Feed one (decomposed) character whose source spans `span`.
    fn feed(&mut self, c: char, span: &Range<usize>, out: &mut Vec<Token>) {
        if is_cjk(c) || is_greek(c) {
            self.flush(out);
            out.push(char_token(c, span.clone()));
        } else if c.is_alphanumeric() {
            let digits = c.is_numeric();
            if !self.buf.is_empty() && digits != self.digits {
                // `H2O` → h 2 o; a command name ends at a digit (`\quad2` → 2).
                self.flush(out);
            }
            if self.buf.is_empty() {
                self.start = span.start;
                self.digits = digits;
            }
            self.end = span.end;
            if c.is_ascii() {
                self.buf.push(c.to_ascii_lowercase());
            } else {
                self.buf.extend(c.to_lowercase());
            }
        } else {
            self.flush(out);
            self.command = c == '\\';
        }
    }
}

/// Cut a text into the unified token stream (appended to `out`, which is cleared first).
pub fn tokens_into(text: &str, out: &mut Vec<Token>) {
    out.clear();
    let mut w = Word::default();
    for (i, c) in text.char_indices() {
        let span = i..i + c.len_utf8();
        if c.is_ascii() || is_cjk(c) {
            w.feed(c, &span, out);
        } else {
            unicode_normalization::char::decompose_compatible(c, |d| w.feed(d, &span, out));
        }
    }
    w.flush(out);
}

/// [`tokens_into`] into a new vector.
pub fn tokens(text: &str) -> Vec<Token> {
    let mut v = Vec::new();
    tokens_into(text, &mut v);
    v
}

/// Hash of one n-gram (a window of tokens), xxh3 with a fixed seed. `buf` is scratch.
pub fn ngram_hash(window: &[Token], buf: &mut Vec<u8>) -> u64 {
    buf.clear();
    for t in window {
        buf.extend_from_slice(&t.value.to_le_bytes());
    }
    xxh3_64_with_seed(buf, NGRAM_SEED)
}

/// Weight of each token of a benchmark item: the characters from its start to the next
/// token's start (its own characters plus the markup and punctuation after it), at most
/// `cap`. Coverage weighted this way is close to the share of the item's *text* found in
/// a document, so half of a formula-heavy item (whose options are mostly markup around a
/// few tokens) does not look like most of it.
pub fn token_weights(text: &str, toks: &[Token], cap: usize) -> Vec<f64> {
    let end = text.trim_end().len();
    toks.iter()
        .enumerate()
        .map(|(i, t)| {
            let next = toks
                .get(i + 1)
                .map_or(end, |n| n.span.start)
                .max(t.span.end);
            text[t.span.start..next].chars().count().clamp(1, cap) as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(s: &str) -> Vec<u64> {
        tokens(s).into_iter().map(|t| t.value).collect()
    }

    #[test]
    fn cjk_chars_and_latin_words_form_one_stream() {
        let t = tokens("Janet’s ducks, 16 个鸡蛋 lay!");
        // janet s ducks 16 个 鸡 蛋 lay
        assert_eq!(t.len(), 8);
        assert_eq!(&"Janet’s ducks, 16 个鸡蛋 lay!"[t[4].span.clone()], "个");
        assert_eq!(&"Janet’s ducks, 16 个鸡蛋 lay!"[t[0].span.clone()], "Janet");
    }

    #[test]
    fn width_case_punctuation_and_spacing_do_not_matter() {
        let a = values("已知集合A＝{１，２}，则（　　）Ａ．ＮａＯＨ");
        let b = values("已知 集合 a={1,2}, 则( ) A. NaOH");
        assert_eq!(a, b);
        assert_eq!(values("①分"), values("1 分"));
    }

    #[test]
    fn formulas_match_across_latex_and_plain_text() {
        let latex = values(r"离子方程式 $\mathrm{H}_{2} \mathrm{O}$ 与 $\frac{1}{4}$");
        let plain = values("离子方程式 H2O 与 1/4");
        let sub = values("离子方程式 H₂O 与 1/4");
        assert_eq!(latex, plain);
        assert_eq!(plain, sub);
        // `\quad` is markup; a backslash before a space drops nothing.
        assert_eq!(values(r"是$(\quad)$ A"), values("是( ) A"));
        // Greek letters and function names are tokens in LaTeX and in rendered text.
        assert_eq!(
            values(r"已知 $2 \tan \theta-\tan \left(\theta+\frac{\pi}{4}\right)=7$"),
            values("已知 2tanθ−tan(θ+π/4)=7")
        );
        assert_eq!(values(r"$\Delta \mathrm{H} \leq 0$"), values("ΔH ≤ 0"));
        assert_eq!(values("ΔH"), values("δh"));
        assert_eq!(values(r"a \ b"), values("a b"));
    }

    #[test]
    fn weights_attribute_markup_to_the_token_before_it() {
        let s = r"是 A. $\frac{\pi}{6}$";
        let t = tokens(s);
        assert_eq!(t.len(), 4); // 是 a π 6 (`\frac` is markup)
        let w = token_weights(s, &t, 8);
        assert_eq!(w, vec![2.0, 8.0, 4.0, 3.0]); // "是 ", "A. $\frac{\" (capped), "pi}{", "6}$"
    }
}
