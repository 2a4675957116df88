//! The extraction algorithm itself (see the `extract_html` module doc), free of engine
//! types so the fuzzer can include it directly.

use super::html::{decode_entities_into, Token, Tokenizer};

/// Tuning knobs of [`extract`].
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Block length (non-space characters, CJK text) at which a punctuated block is good.
    pub min_good_chars: usize,
    /// Link density above which a block is boilerplate.
    pub max_link_density: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_good_chars: 20,
            max_link_density: 0.5,
        }
    }
}

/// Result of extracting one page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extracted {
    /// Main text.
    pub text: String,
    /// `<title>` text.
    pub title: String,
    /// `<html lang>`.
    pub lang: String,
    /// `<link rel=canonical href>`.
    pub canonical: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Bad,
    Short,
    NearGood,
    Good,
}

#[derive(Debug, Default)]
struct Block {
    text: String,
    chars: usize,
    link_chars: usize,
    cjk: usize,
    punct: usize,
    heading: bool,
}

const BLOCK_TAGS: &[&str] = &[
    "p", "div", "li", "ul", "ol", "dl", "dt", "dd", "td", "th", "tr", "table", "tbody", "thead", "tfoot", "caption", "h1", "h2",
    "h3", "h4", "h5", "h6", "section", "article", "main", "blockquote", "pre", "hr", "center", "figure", "figcaption", "address",
    "body", "html", "form", "fieldset", "legend", "details", "summary", "header", "footer", "nav", "aside",
];
const DROP_TAGS: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "math", "iframe", "select", "button", "nav", "aside", "footer", "menu", "dialog",
    "object", "embed", "canvas", "textarea", "head", "noembed", "noframes", "xmp",
];
const VOID_TAGS: &[&str] = &[
    "br", "img", "hr", "meta", "link", "input", "source", "area", "base", "col", "embed", "param", "track", "wbr", "keygen",
];
/// Words in `class`/`id` that mark boilerplate containers.
const BOILER_WORDS: &[&str] = &[
    "nav", "navbar", "navigation", "menu", "menus", "footer", "foot", "sidebar", "side", "breadcrumb", "breadcrumbs", "crumb", "crumbs",
    "share", "sharing", "social", "cookie", "cookies", "consent", "login", "signin", "signup", "register", "copyright", "comment",
    "comments", "advert", "advertisement", "ads", "ad", "banner", "popup", "modal", "related", "recommend", "recommended", "pagination",
    "pager", "toolbar", "subscribe", "newsletter", "sitemap", "topbar", "hot", "tags", "tag",
];
/// Chinese and Latin sentence punctuation.
fn is_punct(c: char) -> bool {
    matches!(c, '，' | '。' | '！' | '？' | '；' | '：' | '、' | '…' | '“' | '”' | ',' | '.' | '!' | '?' | ';')
}
fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30ff | 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xf900..=0xfaff | 0xac00..=0xd7af | 0x3000..=0x303f | 0xff00..=0xffef | 0x20000..=0x2ffff)
}

fn is_boilerplate_attr(class_id: &str) -> bool {
    if class_id.is_empty() {
        return false;
    }
    class_id
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty() && w.len() <= 20)
        .any(|w| BOILER_WORDS.iter().any(|b| w.eq_ignore_ascii_case(b)))
}

fn style_hidden(style: &str) -> bool {
    if style.is_empty() {
        return false;
    }
    let s: String = style.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
    s.contains("display:none") || s.contains("visibility:hidden")
}

struct Open {
    name: String,
    dropping: bool,
    link: bool,
}

/// Text accumulator with whitespace collapsing that never inserts a space between CJK chars.
struct Acc {
    block: Block,
    pending_space: bool,
    last: Option<char>,
}

impl Acc {
    fn push_text(&mut self, s: &str, in_link: bool, pre: bool) {
        for c in s.chars() {
            if c.is_whitespace() {
                if pre && c == '\n' {
                    self.newline();
                } else {
                    self.pending_space = true;
                }
                continue;
            }
            if self.pending_space {
                if let Some(l) = self.last {
                    if l != '\n' && !(is_cjk(l) && is_cjk(c)) {
                        self.block.text.push(' ');
                    }
                }
                self.pending_space = false;
            }
            self.block.text.push(c);
            self.last = Some(c);
            self.block.chars += 1;
            if in_link {
                self.block.link_chars += 1;
            }
            if is_cjk(c) {
                self.block.cjk += 1;
            }
            if is_punct(c) {
                self.block.punct += 1;
            }
        }
    }
    fn newline(&mut self) {
        if self.last.is_some() && self.last != Some('\n') {
            self.block.text.push('\n');
            self.last = Some('\n');
        }
        self.pending_space = false;
    }
    fn take(&mut self) -> Option<Block> {
        self.pending_space = false;
        self.last = None;
        let b = std::mem::take(&mut self.block);
        if b.chars == 0 {
            None
        } else {
            Some(b)
        }
    }
}

/// Extract the main text and metadata of an HTML page.
pub fn extract(page: &str, p: &Params) -> Extracted {
    let mut out = Extracted::default();
    let mut stack: Vec<Open> = Vec::with_capacity(64);
    let mut drop_depth = 0usize;
    let mut link_depth = 0usize;
    let mut article_depth = 0usize;
    let mut pre_depth = 0usize;
    let mut heading_depth = 0usize;
    let mut blocks: Vec<Block> = Vec::new();
    let mut acc = Acc {
        block: Block::default(),
        pending_space: false,
        last: None,
    };
    let mut decoded = String::new();
    let mut raw_title: Option<String> = None;

    fn flush(acc: &mut Acc, blocks: &mut Vec<Block>, heading: bool) {
        if let Some(mut b) = acc.take() {
            while b.text.ends_with('\n') {
                b.text.pop();
            }
            b.heading = heading;
            blocks.push(b);
        }
    }

    for tok in Tokenizer::new(page) {
        match tok {
            Token::Start {
                name,
                class_id,
                style,
                hidden,
                href,
                rel,
                lang,
                self_closing,
            } => {
                if name == "html" && out.lang.is_empty() && !lang.is_empty() {
                    out.lang = lang.trim().to_string();
                }
                if name == "link" && out.canonical.is_empty() && rel.split_ascii_whitespace().any(|r| r.eq_ignore_ascii_case("canonical")) {
                    let mut h = String::new();
                    decode_entities_into(href.trim(), &mut h);
                    out.canonical = h;
                }
                if name == "br" {
                    if drop_depth == 0 {
                        acc.newline();
                    }
                    continue;
                }
                let is_block = BLOCK_TAGS.contains(&name.as_str());
                if is_block && drop_depth == 0 {
                    flush(&mut acc, &mut blocks, heading_depth > 0);
                }
                if VOID_TAGS.contains(&name.as_str()) || (self_closing && !matches!(name.as_str(), "script" | "style" | "title")) {
                    continue;
                }
                // Implicit closes.
                let implicit: &[&str] = match name.as_str() {
                    "p" => &["p"],
                    "li" => &["li"],
                    "td" | "th" => &["td", "th"],
                    "tr" => &["tr", "td", "th"],
                    "option" => &["option"],
                    "dt" | "dd" => &["dt", "dd"],
                    _ => &[],
                };
                if !implicit.is_empty() {
                    while let Some(top) = stack.last() {
                        if implicit.contains(&top.name.as_str()) {
                            let o = stack.pop().expect("non-empty");
                            close_effects(&o, &mut drop_depth, &mut link_depth, &mut article_depth, &mut pre_depth, &mut heading_depth);
                        } else {
                            break;
                        }
                    }
                }
                let header_outside_article = name == "header" && article_depth == 0;
                let dropping = DROP_TAGS.contains(&name.as_str())
                    || header_outside_article
                    || hidden
                    || style_hidden(style)
                    || (name != "body" && name != "html" && name != "article" && name != "main" && is_boilerplate_attr(class_id));
                let link = name == "a";
                if dropping {
                    drop_depth += 1;
                }
                if link {
                    link_depth += 1;
                }
                if name == "article" || name == "main" {
                    article_depth += 1;
                }
                if name == "pre" {
                    pre_depth += 1;
                }
                if matches!(name.as_str(), "h1" | "h2" | "h3" | "h4" | "h5" | "h6") {
                    heading_depth += 1;
                }
                stack.push(Open { name, dropping, link });
                // Deeply nested garbage: bound the stack.
                if stack.len() > 4096 {
                    let o = stack.remove(0);
                    close_effects(&o, &mut drop_depth, &mut link_depth, &mut article_depth, &mut pre_depth, &mut heading_depth);
                }
            }
            Token::End(name) => {
                let is_block = BLOCK_TAGS.contains(&name.as_str());
                if let Some(idx) = stack.iter().rposition(|o| o.name == name) {
                    if is_block && drop_depth == 0 {
                        flush(&mut acc, &mut blocks, heading_depth > 0);
                    }
                    while stack.len() > idx {
                        let o = stack.pop().expect("non-empty");
                        close_effects(&o, &mut drop_depth, &mut link_depth, &mut article_depth, &mut pre_depth, &mut heading_depth);
                    }
                } else if name == "p" || name == "br" {
                    // `</p>` without `<p>` and `</br>` act as breaks, as in browsers.
                    if drop_depth == 0 {
                        flush(&mut acc, &mut blocks, heading_depth > 0);
                    }
                }
            }
            Token::Text(t) => {
                if drop_depth == 0 {
                    decoded.clear();
                    decode_entities_into(t, &mut decoded);
                    acc.push_text(&decoded, link_depth > 0, pre_depth > 0);
                }
            }
            Token::Raw(tag, body) => {
                if tag == "title" && raw_title.is_none() {
                    let mut t = String::new();
                    decode_entities_into(body, &mut t);
                    raw_title = Some(t.split_whitespace().collect::<Vec<_>>().join(" "));
                }
            }
        }
    }
    flush(&mut acc, &mut blocks, heading_depth > 0);
    out.title = raw_title.unwrap_or_default();
    out.text = select(&blocks, p);
    out
}

fn close_effects(o: &Open, drop: &mut usize, link: &mut usize, article: &mut usize, pre: &mut usize, heading: &mut usize) {
    if o.dropping {
        *drop = drop.saturating_sub(1);
    }
    if o.link {
        *link = link.saturating_sub(1);
    }
    match o.name.as_str() {
        "article" | "main" => *article = article.saturating_sub(1),
        "pre" => *pre = pre.saturating_sub(1),
        "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => *heading = heading.saturating_sub(1),
        _ => {}
    }
}

fn classify(b: &Block, p: &Params) -> Class {
    let link_density = b.link_chars as f64 / b.chars.max(1) as f64;
    if link_density > p.max_link_density {
        return Class::Bad;
    }
    let cjk_heavy = b.cjk * 3 >= b.chars;
    let good = if cjk_heavy { p.min_good_chars } else { p.min_good_chars * 5 / 2 };
    let short = good / 3;
    if b.chars >= good && (b.punct > 0 || b.chars >= good * 3) {
        Class::Good
    } else if b.chars >= good / 2 + short / 2 || (b.chars >= short && b.punct > 0) {
        Class::NearGood
    } else {
        Class::Short
    }
}

/// Context-sensitive selection over classified blocks.
fn select(blocks: &[Block], p: &Params) -> String {
    let cls: Vec<Class> = blocks.iter().map(|b| classify(b, p)).collect();
    let n = blocks.len();
    let mut keep = vec![false; n];
    // Nearest non-short neighbours decide.
    let prev_sig = |i: usize| (0..i).rev().map(|j| cls[j]).find(|c| *c != Class::Short);
    let next_sig = |i: usize| (i + 1..n).map(|j| cls[j]).find(|c| *c != Class::Short);
    for i in 0..n {
        keep[i] = match cls[i] {
            Class::Good => true,
            Class::Bad => false,
            Class::NearGood => prev_sig(i) == Some(Class::Good) || next_sig(i) == Some(Class::Good),
            Class::Short => prev_sig(i) == Some(Class::Good) && next_sig(i) == Some(Class::Good),
        };
    }
    // Headings: keep when good text follows within the next three blocks.
    for i in 0..n {
        if blocks[i].heading && cls[i] != Class::Bad && !keep[i] {
            keep[i] = (i + 1..n.min(i + 4)).any(|j| cls[j] == Class::Good);
        }
    }
    let mut s = String::new();
    for (b, k) in blocks.iter().zip(&keep) {
        if *k {
            if !s.is_empty() {
                s.push('\n');
            }
            s.push_str(b.text.trim());
        }
    }
    s
}

