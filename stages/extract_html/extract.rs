//! The extraction algorithm itself (see the `extract_html` module doc), free of engine
//! types so the fuzzer can include it directly.

use super::html::{decode_attribute, decode_entities_into, Token, Tokenizer};

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
    /// Inside a boilerplate-named container that turned out to hold little good text.
    forced_bad: bool,
}

/// Block-level elements: they delimit text blocks.
fn is_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "div"
            | "li"
            | "ul"
            | "ol"
            | "dl"
            | "dt"
            | "dd"
            | "td"
            | "th"
            | "tr"
            | "table"
            | "tbody"
            | "thead"
            | "tfoot"
            | "caption"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "section"
            | "article"
            | "main"
            | "blockquote"
            | "pre"
            | "hr"
            | "center"
            | "figure"
            | "figcaption"
            | "address"
            | "body"
            | "html"
            | "form"
            | "fieldset"
            | "legend"
            | "details"
            | "summary"
            | "header"
            | "footer"
            | "nav"
            | "aside"
    )
}

/// Elements dropped with everything inside them.
fn is_drop(name: &str) -> bool {
    matches!(
        name,
        "script"
            | "style"
            | "noscript"
            | "template"
            | "svg"
            | "math"
            | "iframe"
            | "select"
            | "button"
            | "nav"
            | "aside"
            | "footer"
            | "menu"
            | "dialog"
            | "object"
            | "embed"
            | "canvas"
            | "textarea"
            | "head"
            | "noembed"
            | "noframes"
            | "xmp"
    )
}

/// Void elements: never have content or an end tag.
fn is_void(name: &str) -> bool {
    matches!(
        name,
        "br" | "img"
            | "hr"
            | "meta"
            | "link"
            | "input"
            | "source"
            | "area"
            | "base"
            | "col"
            | "embed"
            | "param"
            | "track"
            | "wbr"
            | "keygen"
    )
}

/// Words in `class`/`id` that mark boilerplate containers.
const BOILER_WORDS: &[&str] = &[
    "nav",
    "navbar",
    "navigation",
    "menu",
    "menus",
    "footer",
    "foot",
    "sidebar",
    "side",
    "breadcrumb",
    "breadcrumbs",
    "crumb",
    "crumbs",
    "share",
    "sharing",
    "social",
    "cookie",
    "cookies",
    "consent",
    "login",
    "signin",
    "signup",
    "register",
    "copyright",
    "advert",
    "advertisement",
    "ads",
    "ad",
    "banner",
    "related",
    "recommend",
    "recommended",
    "pagination",
    "pager",
    "toolbar",
    "subscribe",
    "newsletter",
    "sitemap",
    "topbar",
    "hot",
    "tags",
    "tag",
    // Blog sidebars: monthly archive lists, calendars, blogrolls, tag clouds (WordPress
    // `widget_archive`, `widget_calendar`, ...).
    "archive",
    "archives",
    "widget",
    "widgets",
    "calendar",
    "blogroll",
    "tagcloud",
    // Forum chrome around the posts: signatures, poster profiles.
    "signature",
    "signatures",
    "userinfo",
    "avatar",
];
/// Chinese and Latin sentence punctuation.
fn is_punct(c: char) -> bool {
    matches!(
        c,
        '，' | '。'
            | '！'
            | '？'
            | '；'
            | '：'
            | '、'
            | '…'
            | '“'
            | '”'
            | ','
            | '.'
            | '!'
            | '?'
            | ';'
    )
}
fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30ff | 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xf900..=0xfaff | 0xac00..=0xd7af | 0x3000..=0x303f | 0xff00..=0xffef | 0x20000..=0x2ffff)
}

/// Words in `class`/`id` that mark apparatus around an article, dropped outright however much
/// text it holds: reference and citation lists, wiki navigation boxes, category links, edit
/// links, what a site marks as not for print, and overlays.
const DROP_WORDS: &[&str] = &[
    "references",
    "reflist",
    "refbegin",
    "footnotes",
    "navbox",
    "catlinks",
    "editsection",
    "printfooter",
    "noprint",
    // Overlays: shown on demand over the page (report forms, login boxes, tooltips).
    "modal",
    "popup",
    "tooltip",
];

/// Words in `class`/`id` that mark a reader comment thread.
const COMMENT_WORDS: &[&str] = &[
    "comment",
    "comments",
    "commentlist",
    "commentbox",
    "cmt",
    "cmts",
    "pinglun",
    "respond",
    "disqus",
];

/// What the words of a `class` or `id` value say about an element. Words are the runs of
/// ASCII letters and digits, so `top-nav`, `nav_bar` and `mod nav` all contain `nav`, but
/// `canvas` and `navigate` do not.
fn boilerplate_kind(class_id: &str) -> Soft {
    if class_id.is_empty() {
        return Soft::No;
    }
    let mut kind = Soft::No;
    for w in class_id
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty() && w.len() <= 20)
    {
        if DROP_WORDS.iter().any(|b| w.eq_ignore_ascii_case(b)) {
            return Soft::Drop;
        }
        if BOILER_WORDS.iter().any(|b| w.eq_ignore_ascii_case(b)) {
            kind = Soft::Boiler;
        }
        if kind == Soft::No && COMMENT_WORDS.iter().any(|b| w.eq_ignore_ascii_case(b)) {
            kind = Soft::Comment;
        }
    }
    kind
}

impl Soft {
    /// The stronger of two verdicts (drop over boilerplate over comment over nothing).
    fn max_with(self, other: Soft) -> Soft {
        match (self, other) {
            (Soft::Drop, _) | (_, Soft::Drop) => Soft::Drop,
            (Soft::Boiler, _) | (_, Soft::Boiler) => Soft::Boiler,
            (Soft::Comment, _) | (_, Soft::Comment) => Soft::Comment,
            _ => Soft::No,
        }
    }
}

fn style_hidden(style: &str) -> bool {
    if style.is_empty() {
        return false;
    }
    let s: String = style
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    // Not `visibility:hidden`: saved pages (e.g. WeChat articles) hide the main text until a
    // script reveals it.
    s.contains("display:none")
}

/// What a boilerplate-named container is, for judging it once the page is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Soft {
    /// Not boilerplate-named.
    No,
    /// Apparatus (references, navboxes): dropped with everything inside.
    Drop,
    /// Navigation, sidebar, archive list, forum chrome...: dropped unless it holds at least
    /// [`SOFT_KEEP_CHARS`] of good text (real pages leave such containers unclosed, e.g. a
    /// `<div class="breadcrumb">` that swallows the whole article).
    Boiler,
    /// A reader comment thread: dropped when the page has its own main text outside every
    /// comment container (an article with comments), kept otherwise (a thread page whose
    /// posts are marked up as comments).
    Comment,
}

struct Open {
    name: String,
    dropping: bool,
    link: bool,
    soft: Soft,
    /// Index of the first block produced inside this element.
    first_block: usize,
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

/// Elements that may stay in `<head>`; any other start tag (or text) closes it implicitly.
fn head_content(name: &str) -> bool {
    matches!(
        name,
        "meta" | "link" | "title" | "style" | "script" | "base" | "noscript" | "template" | "head"
    )
}

/// The HTML standard's "special" elements: an end tag for an ordinary element (`</span>`)
/// does not close anything past one of these.
fn is_special(name: &str) -> bool {
    is_block(name)
        || matches!(
            name,
            "applet"
                | "area"
                | "base"
                | "basefont"
                | "bgsound"
                | "br"
                | "button"
                | "col"
                | "colgroup"
                | "dir"
                | "embed"
                | "frame"
                | "frameset"
                | "head"
                | "hgroup"
                | "iframe"
                | "img"
                | "input"
                | "keygen"
                | "link"
                | "listing"
                | "marquee"
                | "menu"
                | "meta"
                | "noembed"
                | "noframes"
                | "noscript"
                | "object"
                | "param"
                | "plaintext"
                | "script"
                | "select"
                | "source"
                | "style"
                | "template"
                | "textarea"
                | "title"
                | "track"
                | "wbr"
                | "xmp"
        )
}

/// Start tags that close an open `<p>` (HTML standard, "in body" insertion mode).
fn closes_p(name: &str) -> bool {
    matches!(
        name,
        "address"
            | "article"
            | "aside"
            | "blockquote"
            | "center"
            | "details"
            | "dialog"
            | "dir"
            | "div"
            | "dl"
            | "fieldset"
            | "figcaption"
            | "figure"
            | "footer"
            | "form"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "header"
            | "hgroup"
            | "hr"
            | "main"
            | "menu"
            | "nav"
            | "ol"
            | "p"
            | "pre"
            | "listing"
            | "section"
            | "summary"
            | "table"
            | "ul"
            | "li"
            | "dd"
            | "dt"
            | "xmp"
            | "plaintext"
    )
}

fn is_heading(name: &str) -> bool {
    matches!(name, "h1" | "h2" | "h3" | "h4" | "h5" | "h6")
}

/// Scope boundaries of the HTML standard's "has an element in scope" tests.
#[derive(Clone, Copy)]
enum Scope {
    /// Default scope: stops at `table`, `td`, `th`, `caption`, `html`, `template`, ...
    Default,
    /// Button scope: default plus `button` (used for `p`).
    Button,
    /// List-item scope: default plus `ol`, `ul` (used for `li`).
    ListItem,
    /// Table scope: only `html`, `table`, `template`.
    Table,
}

fn is_boundary(name: &str, scope: Scope) -> bool {
    match scope {
        Scope::Table => matches!(name, "html" | "table" | "template"),
        _ => {
            matches!(
                name,
                "applet"
                    | "caption"
                    | "html"
                    | "table"
                    | "td"
                    | "th"
                    | "marquee"
                    | "object"
                    | "template"
            ) || matches!(
                (scope, name),
                (Scope::Button, "button") | (Scope::ListItem, "ol" | "ul")
            )
        }
    }
}

#[derive(Default)]
struct Depths {
    drop: usize,
    link: usize,
    article: usize,
    pre: usize,
    heading: usize,
}

/// The tree-building state: the stack of open elements, the blocks produced so far, and the
/// boilerplate-named regions to judge at the end.
struct Builder {
    stack: Vec<Open>,
    d: Depths,
    blocks: Vec<Block>,
    acc: Acc,
    /// `(first block, end block, kind)` of every closed boilerplate-named container.
    regions: Vec<(usize, usize, Soft)>,
}

impl Builder {
    fn flush(&mut self) {
        if self.d.drop > 0 {
            return;
        }
        if let Some(mut b) = self.acc.take() {
            while b.text.ends_with('\n') {
                b.text.pop();
            }
            b.heading = self.d.heading > 0;
            self.blocks.push(b);
        }
    }

    /// Pop the current element, with the effects of its end.
    fn pop(&mut self) {
        let Some(o) = self.stack.last() else {
            return;
        };
        if is_block(&o.name) {
            self.flush();
        }
        let Some(o) = self.stack.pop() else {
            return;
        };
        self.close_effects(&o);
    }

    fn close_effects(&mut self, o: &Open) {
        if o.dropping {
            self.d.drop = self.d.drop.saturating_sub(1);
        }
        if o.link {
            self.d.link = self.d.link.saturating_sub(1);
        }
        match o.name.as_str() {
            "article" | "main" => self.d.article = self.d.article.saturating_sub(1),
            "pre" => self.d.pre = self.d.pre.saturating_sub(1),
            n if is_heading(n) => self.d.heading = self.d.heading.saturating_sub(1),
            _ => {}
        }
        if o.soft != Soft::No && o.first_block < self.blocks.len() {
            self.regions
                .push((o.first_block, self.blocks.len(), o.soft));
        }
    }

    /// Pop until the stack has `len` elements.
    fn pop_to(&mut self, len: usize) {
        while self.stack.len() > len {
            self.pop();
        }
    }

    /// Index of the innermost open element matching `want`, if it is in `scope`.
    fn in_scope(&self, want: impl Fn(&str) -> bool, scope: Scope) -> Option<usize> {
        for (i, o) in self.stack.iter().enumerate().rev() {
            if want(&o.name) {
                return Some(i);
            }
            if is_boundary(&o.name, scope) {
                return None;
            }
        }
        None
    }

    /// The implied end tags of a start tag (HTML standard, "in body" and table modes).
    fn implied_closes(&mut self, name: &str) {
        if let Some(i) = self.stack.iter().rposition(|o| o.name == "head") {
            if !head_content(name) {
                self.pop_to(i);
            }
        }
        if closes_p(name) {
            if let Some(i) = self.in_scope(|n| n == "p", Scope::Button) {
                self.pop_to(i);
            }
        }
        match name {
            "li" | "dd" | "dt" => {
                let same = |n: &str| {
                    if name == "li" {
                        n == "li"
                    } else {
                        n == "dd" || n == "dt"
                    }
                };
                for i in (0..self.stack.len()).rev() {
                    let n = self.stack[i].name.as_str();
                    if same(n) {
                        self.pop_to(i);
                        break;
                    }
                    if is_special(n) && !matches!(n, "address" | "div" | "p") {
                        break;
                    }
                }
            }
            n if is_heading(n) && self.stack.last().is_some_and(|o| is_heading(&o.name)) => {
                self.pop();
            }
            "td" | "th" => {
                if let Some(i) = self.in_scope(|n| n == "td" || n == "th", Scope::Table) {
                    self.pop_to(i);
                }
            }
            "tr" | "tbody" | "thead" | "tfoot" => {
                // Close the open row (and its cell), or for a new section also the open
                // section: the outermost such element inside the current table.
                let mut cut = None;
                for i in (0..self.stack.len()).rev() {
                    let n = self.stack[i].name.as_str();
                    if is_boundary(n, Scope::Table) {
                        break;
                    }
                    if matches!(n, "tr" | "td" | "th")
                        || (name != "tr" && matches!(n, "tbody" | "thead" | "tfoot"))
                    {
                        cut = Some(i);
                    }
                }
                if let Some(i) = cut {
                    self.pop_to(i);
                }
            }
            "option" | "optgroup" => {
                if self.stack.last().is_some_and(|o| o.name == "option") {
                    self.pop();
                }
                if name == "optgroup" && self.stack.last().is_some_and(|o| o.name == "optgroup") {
                    self.pop();
                }
            }
            "a" => {
                // An unclosed link would otherwise turn the rest of the page into link text.
                if let Some(i) = self.stack.iter().rposition(|o| o.name == "a") {
                    if self.stack[i + 1..].iter().all(|o| !is_special(&o.name)) {
                        self.pop_to(i);
                    }
                }
            }
            _ => {}
        }
    }

    /// An end tag, with the HTML standard's scoping: an end tag whose element is not open in
    /// scope is ignored instead of closing unrelated elements.
    fn end_tag(&mut self, name: &str) {
        let found = match name {
            // Content after `</body>` still belongs to the body, as in browsers.
            "body" | "html" => None,
            "p" => {
                let f = self.in_scope(|n| n == "p", Scope::Button);
                if f.is_none() {
                    // `</p>` without `<p>` acts as a break, as in browsers.
                    self.flush();
                }
                f
            }
            "br" => {
                if self.d.drop == 0 {
                    self.acc.newline();
                }
                None
            }
            "li" => self.in_scope(|n| n == "li", Scope::ListItem),
            "td" | "th" | "tr" | "tbody" | "thead" | "tfoot" | "table" | "caption" => {
                self.in_scope(|n| n == name, Scope::Table)
            }
            n if is_heading(n) => self.in_scope(is_heading, Scope::Default),
            "head" => self.stack.iter().rposition(|o| o.name == "head"),
            n if is_special(n) => self.in_scope(|x| x == n, Scope::Default),
            _ => {
                let mut f = None;
                for i in (0..self.stack.len()).rev() {
                    let n = self.stack[i].name.as_str();
                    if n == name {
                        f = Some(i);
                        break;
                    }
                    if is_special(n) {
                        break;
                    }
                }
                f
            }
        };
        if let Some(i) = found {
            self.pop_to(i);
        }
    }
}

/// Extract the main text and metadata of an HTML page.
pub fn extract(page: &str, p: &Params) -> Extracted {
    let mut out = Extracted::default();
    let mut b = Builder {
        stack: Vec::with_capacity(64),
        d: Depths::default(),
        blocks: Vec::new(),
        acc: Acc {
            block: Block::default(),
            pending_space: false,
            last: None,
        },
        regions: Vec::new(),
    };
    let mut decoded = String::new();
    let mut raw_title: Option<String> = None;

    for tok in Tokenizer::new(page) {
        match tok {
            Token::Start {
                name,
                class,
                id,
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
                if name == "link"
                    && out.canonical.is_empty()
                    && rel
                        .split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("canonical"))
                {
                    out.canonical = decode_attribute(href.trim());
                }
                b.implied_closes(&name);
                if name == "br" {
                    if b.d.drop == 0 {
                        b.acc.newline();
                    }
                    continue;
                }
                let block = is_block(&name);
                if block {
                    b.flush();
                }
                if is_void(&name)
                    || (self_closing && !matches!(name.as_str(), "script" | "style" | "title"))
                {
                    continue;
                }
                let header_outside_article = name == "header" && b.d.article == 0;
                let soft_kind = if matches!(name.as_str(), "body" | "html" | "article" | "main") {
                    Soft::No
                } else {
                    boilerplate_kind(class).max_with(boilerplate_kind(id))
                };
                // A boilerplate-named block container is judged when the page is read;
                // an inline one (`<span class="share">`) is dropped at once.
                let soft = if block && b.d.drop == 0 && soft_kind != Soft::Drop {
                    soft_kind
                } else {
                    Soft::No
                };
                let dropping = is_drop(&name)
                    || header_outside_article
                    || hidden
                    || style_hidden(style)
                    || soft_kind == Soft::Drop
                    || (soft_kind == Soft::Boiler && !block);
                let link = name == "a";
                if dropping {
                    b.d.drop += 1;
                }
                if link {
                    b.d.link += 1;
                }
                match name.as_str() {
                    "article" | "main" => b.d.article += 1,
                    "pre" => b.d.pre += 1,
                    n if is_heading(n) => b.d.heading += 1,
                    _ => {}
                }
                let first_block = b.blocks.len();
                b.stack.push(Open {
                    name,
                    dropping,
                    link,
                    soft,
                    first_block,
                });
                // Deeply nested garbage: bound the stack.
                if b.stack.len() > 4096 {
                    let o = b.stack.remove(0);
                    b.close_effects(&o);
                }
            }
            Token::End(name) => b.end_tag(&name),
            Token::Text(t) => {
                if b.stack.iter().any(|o| o.name == "head")
                    && !t.trim_ascii().is_empty()
                    && b.stack.last().is_some_and(|o| o.name == "head")
                {
                    // Text in `<head>` means the head ended (`<head><title>t</title>text`).
                    if let Some(i) = b.stack.iter().rposition(|o| o.name == "head") {
                        b.pop_to(i);
                    }
                }
                if b.d.drop == 0 {
                    decoded.clear();
                    decode_entities_into(t, &mut decoded);
                    b.acc.push_text(&decoded, b.d.link > 0, b.d.pre > 0);
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
    b.pop_to(0);
    b.flush();
    judge_regions(&mut b.blocks, &b.regions, p);
    drop_teasers(&mut b.blocks);
    for blk in &mut b.blocks {
        if is_byline(blk) || is_legal_line(blk) {
            blk.forced_bad = true;
        }
    }
    let title = raw_title.as_deref().unwrap_or("");
    drop_title_heading(&mut b.blocks, title);
    out.title = raw_title.unwrap_or_default();
    out.text = select(&b.blocks, p);
    out
}

/// Good text (characters in good blocks) above which a boilerplate-named container is kept.
const SOFT_KEEP_CHARS: usize = 200;

/// Good text outside every comment container above which the comments are dropped: the page
/// has its own main text, so the comments are reader reactions around it.
const COMMENT_MAIN_CHARS: usize = 200;

fn good_chars(blocks: &[Block], p: &Params) -> usize {
    blocks
        .iter()
        .filter(|b| classify(b, p) == Class::Good)
        .map(|b| b.chars)
        .sum()
}

fn judge_regions(blocks: &mut [Block], regions: &[(usize, usize, Soft)], p: &Params) {
    let mut in_comment = vec![false; blocks.len()];
    for &(first, end, kind) in regions {
        let end = end.min(blocks.len());
        if first >= end {
            continue;
        }
        match kind {
            Soft::Boiler => {
                if good_chars(&blocks[first..end], p) < SOFT_KEEP_CHARS {
                    for b in &mut blocks[first..end] {
                        b.forced_bad = true;
                    }
                }
            }
            Soft::Comment => in_comment[first..end].iter_mut().for_each(|c| *c = true),
            Soft::No | Soft::Drop => {}
        }
    }
    if !in_comment.contains(&true) {
        return;
    }
    let outside: usize = blocks
        .iter()
        .zip(&in_comment)
        .filter(|(b, c)| !**c && classify(b, p) == Class::Good)
        .map(|(b, _)| b.chars)
        .sum();
    if outside >= COMMENT_MAIN_CHARS {
        for (b, c) in blocks.iter_mut().zip(&in_comment) {
            if *c {
                b.forced_bad = true;
            }
        }
    }
}

/// Whether a block is a teaser: a summary of another page, cut off with an ellipsis and/or
/// followed by a "more" link (`…摘要...`, `…摘要。【详细】`, `...阅读全文`, `... Read more`).
/// Returns `None` for no teaser, `Some(true)` when it ends with a "more" marker.
/// A proper Chinese ellipsis (`……`, two characters) ends sentences in real text (novels,
/// dialogue) and does not count.
fn teaser(text: &str) -> Option<bool> {
    const MORE: &[&str] = &[
        "阅读全文",
        "查看全文",
        "全文",
        "详细",
        "详情",
        "更多",
        "Read more",
        "read more",
        "More",
        "more",
    ];
    let mut t = text.trim_end();
    let mut more = false;
    // A trailing bracketed "more" link: 【详细】 [更多] (全文)
    for (open, close) in [('【', '】'), ('[', ']'), ('(', ')'), ('（', '）')] {
        if let Some(inner) = t.strip_suffix(close) {
            if let Some(i) = inner.rfind(open) {
                let word = inner[i + open.len_utf8()..].trim();
                if MORE
                    .iter()
                    .any(|m| word.trim_end_matches(['>', '»', '…', '.']) == *m)
                {
                    t = inner[..i].trim_end();
                    more = true;
                }
            }
        }
    }
    if !more {
        for m in MORE {
            if let Some(x) = t.strip_suffix(m) {
                if x.ends_with("...") || x.ends_with('…') {
                    t = x.trim_end();
                    more = true;
                }
                break;
            }
        }
    }
    let ellipsis = t.ends_with("...") || (t.ends_with('…') && !t.ends_with("……"));
    (ellipsis || more).then_some(more)
}

/// Whether a short block is a byline or dateline (`发稿时间：2024-05-20 13:15 来源：…`,
/// `作者：… 2020年01月12日 浏览：272`): a date plus a metadata word. It describes the page
/// rather than being its text (the title and date belong in metadata).
fn is_byline(b: &Block) -> bool {
    const WORDS: &[&str] = &[
        "来源",
        "作者",
        "发布",
        "时间",
        "浏览",
        "编辑",
        "阅读",
        "点击",
        "字号",
        "责编",
        "记者",
        "Source",
        "Posted",
        "Published",
        "Updated",
        "By ",
    ];
    // Colons and dots are part of a byline (`时间：2024.05.20 来源：…`); a full stop is not.
    if b.chars > 60 || b.text.contains(['。', '！', '？']) {
        return false;
    }
    has_date(&b.text) && WORDS.iter().any(|w| b.text.contains(w))
}

/// Whether a short block is a site's legal footer line: copyright, ICP licence numbers
/// (every site hosted in mainland China must show one), public-security filing numbers,
/// platform disclaimers.
fn is_legal_line(b: &Block) -> bool {
    const MARKS: &[&str] = &[
        "版权所有",
        "ICP备",
        "ICP证",
        "公网安备",
        "Copyright",
        "copyright",
        "©",
        "免责声明",
        "All rights reserved",
        "All Rights Reserved",
    ];
    b.chars <= 120 && MARKS.iter().any(|m| b.text.contains(m))
}

/// The page's own headline duplicates `meta.title`: drop the first heading block whose text
/// the `<title>` contains (`<title>` is usually "headline - site name").
fn drop_title_heading(blocks: &mut [Block], title: &str) {
    let norm = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let t = norm(title);
    if t.is_empty() {
        return;
    }
    if let Some(b) = blocks
        .iter_mut()
        .find(|b| b.heading && !b.forced_bad && b.chars >= 4)
    {
        if t.contains(&norm(&b.text)) {
            b.forced_bad = true;
        }
    }
}

/// A date like `2024-05-20`, `2024/5/20`, `2024.05.20` or `2024年5月20日`.
fn has_date(t: &str) -> bool {
    let c: Vec<char> = t.chars().collect();
    for i in 0..c.len() {
        if i + 4 < c.len() && c[i..i + 4].iter().all(|x| x.is_ascii_digit()) {
            let sep = c[i + 4];
            if matches!(sep, '-' | '/' | '.' | '年')
                && c.get(i + 5).is_some_and(|x| x.is_ascii_digit())
                && (i == 0 || !c[i - 1].is_ascii_digit())
            {
                return true;
            }
        }
    }
    false
}

/// Teasers come in lists (related news, "more from this channel", search results), each
/// with a link to the full page: a "more" marker after the ellipsis (`【详细】`) or a title link
/// (a headline) just before it. Text that merely ends in an ellipsis (poems, dialogue, forum posts, a
/// collapsed section of the page itself) has neither, and one teaser alone may be the
/// article's own quote, so only two or more are dropped.
fn drop_teasers(blocks: &mut [Block]) {
    // A headline: mostly link text, and long enough not to be a tab or button label
    // ("译文", "展开").
    let linked = |b: &Block| b.link_chars * 2 > b.chars && b.chars >= 8;
    let teasers: Vec<usize> = (0..blocks.len())
        .filter(|&i| {
            !blocks[i].forced_bad
                && blocks[i].text.lines().any(|l| {
                    teaser(l).is_some_and(|more| more || (i > 0 && linked(&blocks[i - 1])))
                })
        })
        .collect();
    // A rule that would remove most of the page is more likely wrong than the page is all
    // teasers: keep them when they hold half the text or more.
    let teaser_chars: usize = teasers.iter().map(|&i| blocks[i].chars).sum();
    let all_chars: usize = blocks
        .iter()
        .filter(|b| !b.forced_bad)
        .map(|b| b.chars)
        .sum();
    if teasers.len() >= 2 && teaser_chars < all_chars * 9 / 10 {
        for i in teasers {
            blocks[i].forced_bad = true;
        }
    }
}

fn classify(b: &Block, p: &Params) -> Class {
    if b.forced_bad {
        return Class::Bad;
    }
    let link_density = b.link_chars as f64 / b.chars.max(1) as f64;
    if link_density > p.max_link_density {
        return Class::Bad;
    }
    let cjk_heavy = b.cjk * 3 >= b.chars;
    let good = if cjk_heavy {
        p.min_good_chars
    } else {
        p.min_good_chars * 5 / 2
    };
    let short = good / 3;
    if b.chars >= good && (b.punct > 0 || b.chars >= good * 3) {
        Class::Good
    } else if b.chars >= good / 2 + short / 2 || (b.chars >= short && b.punct > 0) {
        Class::NearGood
    } else {
        Class::Short
    }
}

/// How many blocks a near-good block may look past (short and near-good ones) to the good
/// block that vouches for it. A code listing or a one-line answer under a small heading sits
/// 2–4 blocks from the post's prose; a list of headlines that merely ends where an article
/// begins is a long run of short blocks.
const NEAR: usize = 4;

/// Context-sensitive selection over classified blocks.
fn select(blocks: &[Block], p: &Params) -> String {
    let cls: Vec<Class> = blocks.iter().map(|b| classify(b, p)).collect();
    let n = blocks.len();
    let mut keep = vec![false; n];
    // Nearest non-short neighbours decide. A near-good block also counts as vouched for
    // when the nearest good-or-bad block on either side is good and at most `NEAR` blocks
    // away, looking past other near-good blocks (as jusText does): `安装 / composer require …
    // / 更新 / composer update …` under a post keeps both commands, not just the first.
    let prev_sig = |i: usize| (0..i).rev().map(|j| cls[j]).find(|c| *c != Class::Short);
    let next_sig = |i: usize| (i + 1..n).map(|j| cls[j]).find(|c| *c != Class::Short);
    let strong = |c: &Class| matches!(c, Class::Good | Class::Bad);
    // Within `NEAR` blocks only (bounded work per block).
    let near_good = |i: usize| {
        let prev = (i.saturating_sub(NEAR)..i).rev().find(|&j| strong(&cls[j]));
        let next = (i + 1..n.min(i + 1 + NEAR)).find(|&j| strong(&cls[j]));
        prev.is_some_and(|j| cls[j] == Class::Good) || next.is_some_and(|j| cls[j] == Class::Good)
    };
    for i in 0..n {
        keep[i] = match cls[i] {
            Class::Good => true,
            Class::Bad => false,
            Class::NearGood => {
                prev_sig(i) == Some(Class::Good) || next_sig(i) == Some(Class::Good) || near_good(i)
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    const P1: &str =
        "新华社上海11月30日电，中共中央总书记习近平30日上午在上海主持召开座谈会并发表重要讲话。";
    const P2: &str = "他强调，深入推进长三角一体化发展，进一步提升创新能力、产业竞争力、发展能级。";
    const P3: &str = "要完整、准确、全面贯彻新发展理念，紧扣一体化和高质量这两个关键词。";

    fn text(html: &str) -> String {
        extract(html, &Params::default()).text
    }

    #[test]
    fn unclosed_head_closes_implicitly() {
        let t = text(&format!(
            "<html><head><title>t</title><body><p>{P1}</p><p>{P2}</p>"
        ));
        assert_eq!(t, format!("{P1}\n{P2}"));
        // No <body> at all, and text straight after the head's content.
        let t = text(&format!(
            "<head><meta charset=utf-8><title>t</title>{P1}<p>{P2}"
        ));
        assert_eq!(t, format!("{P1}\n{P2}"));
        let t = text(&format!("<html><head><title>t</title><div>{P1}</div>"));
        assert_eq!(t, P1);
        // Head content stays out.
        let ex = extract(
            &format!("<head><title>标题</title><style>p{{}}</style><script>x</script><p>{P1}"),
            &Params::default(),
        );
        assert_eq!((ex.title.as_str(), ex.text.as_str()), ("标题", P1));
    }

    #[test]
    fn implied_end_tags_split_blocks() {
        // <p> closed by the next <p> and by a block start.
        let t = text(&format!("<body><p>{P1}<p>{P2}<div>{P3}</div>"));
        assert_eq!(t, format!("{P1}\n{P2}\n{P3}"));
        // <li> closed by the next <li>; a nested list does not close the outer item.
        let t = text(&format!(
            "<body><p>{P1}</p><ul><li>{P2}<ul><li>{P3}</ul><li>{P1}</ul><p>{P2}"
        ));
        assert_eq!(t, format!("{P1}\n{P2}\n{P3}\n{P1}\n{P2}"));
        // <td>/<tr> closed implicitly.
        let t = text(&format!(
            "<body><p>{P1}</p><table><tr><td>{P2}<td>{P3}<tr><td>{P1}</table><p>{P2}"
        ));
        assert_eq!(t, format!("{P1}\n{P2}\n{P3}\n{P1}\n{P2}"));
        // <dt>/<dd> and <option>.
        let t = text(&format!(
            "<body><dl><dt>{P1}<dd>{P2}<dt>{P3}</dl><select><option>选项一<option>选项二</select>"
        ));
        assert_eq!(t, format!("{P1}\n{P2}\n{P3}"));
    }

    #[test]
    fn stray_end_tags_do_not_close_outer_elements() {
        // `</div>` inside a table cell does not close the div around the table (it is out of
        // scope), so the boilerplate container ends where its own end tag says.
        let t = text(&format!(
            "<body><div class=\"sidebar\"><a href=/>首页</a></div><div id=content><table><tr><td>{P1}</div>{P2}</td></tr></table><p>{P3}</p></div>"
        ));
        assert_eq!(t, format!("{P1}{P2}\n{P3}"));
        // An unclosed <a> does not turn the rest of the page into link text.
        let t = text(&format!(
            "<body><p><a href=/x>相关链接<p><a href=/y>另一个<p>{P1}<p>{P2}"
        ));
        assert_eq!(t, format!("{P1}\n{P2}"));
        // `</span>` does not close past a block.
        let t = text(&format!("<body><span><p>{P1}</span>{P2}</p>"));
        assert_eq!(t, format!("{P1}{P2}"));
    }

    #[test]
    fn tables_and_lists_of_the_article_are_kept() {
        let html = format!(
            "<body><div class=nav><a href=/>首页</a> <a href=/a>新闻</a></div><article><h1>雄安新区</h1><p>{P1}</p>\
             <table class=infobox><tr><th>面积</th><td>1770平方公里</td></tr><tr><th>人口</th><td>约120万人</td></tr></table>\
             <p>{P2}</p><ul><li>雄县：位于新区东部，历史悠久。</li><li>容城县：位于新区北部，交通便利。</li><li>安新县：白洋淀所在地。</li></ul>\
             <p>{P3}</p></article>"
        );
        let t = text(&html);
        for want in [
            "1770平方公里",
            "约120万人",
            "雄县：位于新区东部",
            "安新县：白洋淀所在地。",
            P1,
            P3,
        ] {
            assert!(t.contains(want), "{want} missing: {t}");
        }
        assert!(!t.contains("首页"), "{t}");
    }

    #[test]
    fn near_good_blocks_chain_to_nearby_good_text_only() {
        // A post's prose, then a small heading, a one-line command, another heading and a
        // longer listing: both commands are kept, although the second is vouched for only
        // through the first (a near-good block) and two headings.
        let post = format!(
            "<body><div class=post><p>{P1}</p><h3>安装</h3><p>composer require vendor/package-name</p>\
             <h3>更新</h3><pre><code>composer update vendor/package-name\nphp tool migrate\nphp tool cache:clear</code></pre></div>\
             <div class=x><a href=/a>上一篇</a> <a href=/b>下一篇</a> <a href=/c>返回列表</a></div></body>"
        );
        let t = text(&post);
        assert!(t.contains("composer require"), "{t}");
        assert!(t.contains("php tool migrate"), "{t}");
        // A run of headline-length items far before the article (a hot list) is not
        // vouched for by the article that happens to follow it.
        let hot: String = (0..12)
            .map(|i| {
                format!("<li>热门新闻标题第{i}条</li><li>另一条很长的热点新闻标题在这里{i}</li>")
            })
            .collect();
        let page = format!("<body><ul>{hot}</ul><p>{P1}</p><p>{P2}</p><p>{P3}</p></body>");
        let t = text(&page);
        assert!(t.contains(P2), "{t}");
        assert!(!t.contains("另一条很长的热点新闻标题在这里0"), "{t}");
    }

    #[test]
    fn comment_threads_dropped_around_an_article_kept_as_a_thread() {
        let comments = "<div class=\"comment-list\"><div class=item><span>上海网友</span><p>支持平台做法，今天擦边不管，明天就啥都敢露。</p><span>回复</span></div>\
             <div class=item><span>吉林网友</span><p>网红直播就是个得寸进尺的市场，也要对孩子有个健康的成长环境。</p></div></div>";
        let article = format!(
            "<body><div id=main><p>{P1}</p><p>{P2}</p><p>{P3}</p><p>{P1}</p><p>{P2}</p><p>{P3}</p></div>{comments}"
        );
        let t = text(&article);
        assert!(t.contains(P3), "{t}");
        assert!(!t.contains("得寸进尺"), "comments kept: {t}");
        // A thread page: the posts are the content, even when marked up as comments.
        let t = text(&format!("<body><h1>请教一个问题</h1>{comments}"));
        assert!(t.contains("得寸进尺") && t.contains("擦边不管"), "{t}");
        // Code comments in an article (`<span class="hljs-comment">`) are not threads.
        let t = text(&format!(
            "<body><p>{P1}</p><pre><code><span class=\"hljs-comment\"># 使用which命令判断命令是否存在</span>\nwhich docker</code></pre><p>{P2}</p>"
        ));
        assert!(t.contains("# 使用which命令"), "{t}");
    }

    #[test]
    fn archive_widgets_and_teasers_dropped() {
        let html = format!(
            "<body><div class=post><p>{P1}</p><p>{P2}</p><p>{P3}</p></div>\
             <div class=\"widget widget_archive\"><h2>文章归档</h2><ul><li><a href=/2019/05>2019年五月</a>（3）</li><li><a href=/2019/04>2019年四月</a>（5）</li><li>2019年三月（2）</li></ul></div>\
             <ul class=list><li><h3><a href=/n/1>第37届大众电影百花奖入围名单公示</a></h3><p>近日，第37届大众电影百花奖各奖项入围名单公示，经全国观众投票，将评选出每个奖项五个提名。...</p></li>\
             <li><p>新加坡航空公司一架客机21日在飞行过程中遭遇严重气流颠簸，随后紧急降落在泰国曼谷机场。...<a href=/n/2>【详细】</a></p></li></ul>"
        );
        let t = text(&html);
        assert_eq!(t, format!("{P1}\n{P2}\n{P3}"));
        // One ellipsis, or a Chinese ellipsis, is text.
        let t = text(&format!(
            "<body><p>{P1}</p><p>他沉默了很久，终于开口说道：“其实我早就知道了……”</p><p>{P2}</p>"
        ));
        assert!(t.contains("早就知道了……"), "{t}");
        assert_eq!(teaser("摘要文字...【详细】"), Some(true));
        assert_eq!(teaser("摘要文字。【详细】"), Some(true));
        assert_eq!(teaser("摘要文字…阅读全文"), Some(true));
        assert_eq!(teaser("摘要文字…"), Some(false));
        assert_eq!(teaser("他说……"), None);
        assert_eq!(teaser("见附件【图表一】"), None);
    }

    #[test]
    fn entities_beyond_the_old_list() {
        let t = text(&format!(
            "<body><p>Caf&eacute; Stra&szlig;e M&uuml;nchen &hellip; na&iuml;ve &Aring;ngstr&ouml;m &frac12; &rarr; &le; {P1}</p>"
        ));
        assert!(
            t.starts_with("Café Straße München … naïve Ångström ½ → ≤ "),
            "{t}"
        );
    }
}
