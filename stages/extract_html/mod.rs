//! `extract_html`: turn an HTML page into its main text, dropping boilerplate.
//!
//! **Why.** A page's menus, footers, "related articles" lists, cookie banners and comment
//! widgets are repeated on every page of a site; kept, they poison a corpus with
//! near-duplicates and junk. The goal is the article or thread text with paragraph breaks.
//!
//! **How.** One pass over a lenient tokenizer ([`html`]) with a stack of open elements:
//!
//! 1. **Tree building, the HTML5 way where it matters for text.** Implied end tags: `<p>` is
//!    closed by the next block start (`div`, `ul`, `table`, `h1`..., as the standard lists
//!    them), `<li>` by the next `<li>` of the same list, `<dt>`/`<dd>` by each other,
//!    `<td>`/`<th>` by the next cell, `<tr>` by the next row, `<option>` by the next option,
//!    a heading by another heading, an unclosed `<a>` by the next `<a>`. Implied elements:
//!    `<head>` ends at the first start tag that cannot be in a head (or at text), so
//!    `<html><head><title>t</title><body><p>…` without `</head>` is read as browsers read it;
//!    `<html>`/`<body>` need not exist, and `</body>`/`</html>` do not end the content.
//!    End tags are scoped as in the standard: `</div>` inside a table cell whose div is
//!    outside the table is ignored, `</span>` never closes past a block, `</p>` without an open
//!    `<p>` is a break. Character references use the full WHATWG table (2,231 names, via
//!    `htmlize`), so `&eacute;&szlig;&uuml;&hellip;` decode like `&amp;`.
//! 2. **Structural drops.** `script`, `style`, `noscript`, `template`, `svg`, `iframe`,
//!    `select`, `button`, `nav`, `aside`, `footer`, `menu`, `dialog`, `header` (outside
//!    `article`/`main`) and hidden elements (`hidden`, `aria-hidden`, `display:none`).
//!    `class`/`id` words (runs of ASCII letters and digits) classify containers:
//!    * *apparatus*, dropped outright: reference lists (`references`, `reflist`), wiki
//!      `navbox`/`catlinks`/`editsection`/`noprint`, overlays (`modal`, `popup`, `tooltip`);
//!    * *boilerplate* (`nav`, `menu`, `footer`, `sidebar`, `breadcrumb`, `share`, `cookie`,
//!      `login`, `copyright`, `ad`, `related`, `recommend`, `tag`, blog `archive`/`widget`/
//!      `calendar`/`blogroll`/`tagcloud`, forum `signature`/`userinfo`/`avatar`, ...): an
//!      inline element is dropped at once; a block container is dropped unless it holds
//!      ≥ 200 characters of good text (real pages leave such containers unclosed);
//!    * *comment threads* (`comment`, `comments`, `cmt`, `pinglun`, `respond`, `disqus` on a
//!      block): dropped when the page has ≥ 200 characters of good text outside every comment
//!      container (an article with reader comments), kept otherwise (a thread whose posts
//!      are marked up as comments). Inline `comment` classes are code comments, not threads.
//! 3. **Blocks.** Text is accumulated into blocks delimited by block-level elements (`p`,
//!    `div`, `li`, `td`, `h1`-`h6`, ...); `<br>` is a line break inside a block. For each
//!    block we count characters (not words: Chinese has no spaces), characters inside links,
//!    and sentence punctuation (Chinese and Latin).
//! 4. **Line patterns** that hold on any site: *teasers* (a line cut off with `...`/`…` after
//!    a headline link, or ending in a "more" link such as `【详细】`/`阅读全文`; only when two
//!    or more occur, i.e. a list of summaries), *bylines* (a date plus `来源`/`作者`/`发布`/
//!    `浏览`..., ≤ 60 characters), *legal lines* (`版权所有`, `ICP备`, `公网安备`, `©`,
//!    `免责声明`, ≤ 120 characters), and the headline that repeats `<title>` (kept in
//!    `meta.title` instead).
//! 5. **Classification**, in the spirit of jusText but measured in characters: a block is
//!    *bad* when its link density exceeds 0.5; *good* when it is long (≥ `min_good_chars`,
//!    scaled up ×2.5 for non-CJK text) and has sentence punctuation; *near-good* when
//!    mid-length; *short* otherwise. Context then decides: near-good blocks next to good
//!    ones (or with a good block at most 4 blocks away, past other near-good ones: a code
//!    listing under a small heading in a post) and short blocks between good ones become good; a heading is kept when good text
//!    follows it closely. Tables and lists inside the article are blocks like any other, so
//!    an infobox row or a list item with text is kept by the same context rules.
//!
//! Kept blocks are joined with `\n`; whitespace is collapsed, and a whitespace run between
//! two CJK characters (an artefact of HTML source line breaks) is removed entirely.
//! Quality on the magic-html Chinese gold pages, before/after, per page type and on a
//! dev/holdout split: `docs/quality-extract.md`.
//!
//! **Why the tokenizer and tree building stay hand-written.** Extraction needs a stream of
//! tags and text plus an open-element stack, not a DOM. Measured on the 58 gold pages
//! (`cargo run --release --manifest-path benches/standalone/Cargo.toml --example tokenizers
//! -- <dirs>`, 2-core shared VM, one thread, CPU time): our tokenizer with entity decoding
//! runs at ~7,600 pages per CPU-second, html5gum 0.8's tokenizer at ~1,400 and html5ever
//! 0.35's at ~1,200, *tokens only*, before any tree or extraction. The whole extraction
//! today runs at ~3,400 pages per CPU-second, so either crate would cut it to well under
//! 1,000 for no gain in text: the parts of HTML5 tree construction that change which text
//! belongs to which block (implied end tags, implied head/body, end-tag scoping) are
//! implemented above, and what is left out (the adoption agency for misnested `<b>`/`<i>`,
//! foster parenting of text misplaced inside tables, foreign content) moves inline text
//! between neighbouring nodes at most. The one table that must be exact and complete, the
//! named character references, comes from a crate (`htmlize`) instead of a hand list.
//!
//! **Reads** `text` (HTML) and `meta.content_type`; documents whose `content_type` is not
//! HTML-like (e.g. WET `text/plain`) pass through untouched. **Writes** `text` (main text),
//! `meta.title`, `meta.html_lang`, `meta.canonical_url` (when present),
//! `attrs["extract_html.ratio"]` (extracted chars / HTML bytes). **Rejects** `no_content`
//! when fewer than `min_chars` characters remain. **Memory**: the page and its text.
//!
//! ```yaml
//! extract:
//!   kind: extract_html
//!   inputs: [cc]
//!   min_chars: 50
//! ```

pub mod extract;
pub mod html;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::attrs::AttrDecl;
use crate::document::DocBatch;
use crate::error::Result;
use crate::stage::{
    parse_config, BuildCtx, Checks, Emitter, Kind, Node, Role, StageConfig, Transform, OUT_REJECTED,
};

pub use extract::{extract, Extracted, Params};

/// Config for `extract_html`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Minimum characters of extracted text; fewer are rejected as `no_content`. Default 1.
    #[serde(default = "default_min_chars")]
    pub min_chars: usize,
    /// Block length (non-space characters of CJK text) at which a block with punctuation
    /// counts as good content. Latin-script blocks need 2.5× as many. Default 20.
    #[serde(default = "default_min_good_chars")]
    pub min_good_chars: usize,
    /// Link density (link characters / characters) above which a block is boilerplate.
    /// Default 0.5.
    #[serde(default = "default_max_link_density")]
    pub max_link_density: f64,
}

fn default_min_chars() -> usize {
    1
}
fn default_min_good_chars() -> usize {
    20
}
fn default_max_link_density() -> f64 {
    0.5
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_chars: default_min_chars(),
            min_good_chars: default_min_good_chars(),
            max_link_density: default_max_link_density(),
        }
    }
}

impl Config {
    /// The algorithm parameters.
    pub fn params(&self) -> Params {
        Params {
            min_good_chars: self.min_good_chars,
            max_link_density: self.max_link_density,
        }
    }
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        let mut c = Checks::new();
        c.fraction("max_link_density", self.max_link_density);
        c.at_least("min_good_chars", self.min_good_chars, 1);
        c.into_vec()
    }
}

/// The `extract_html` transform.
pub struct ExtractHtml {
    cfg: Config,
}

impl ExtractHtml {
    /// Build from a config.
    pub fn new(cfg: Config) -> Self {
        ExtractHtml { cfg }
    }
}

/// Whether a document should be treated as HTML: by `meta.content_type` when present,
/// otherwise by a leading `<`.
fn is_html_doc(doc: &crate::document::Document) -> bool {
    match doc.meta.get("content_type") {
        Some(ct) => ct.contains("html") || ct.contains("xml"),
        None => doc.text.trim_start().starts_with('<'),
    }
}

impl Transform for ExtractHtml {
    fn attrs(&self) -> Vec<AttrDecl> {
        vec![AttrDecl::float("extract_html.ratio")]
    }

    fn process(&self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        for mut doc in batch.docs {
            if !is_html_doc(&doc) {
                out.emit(doc);
                continue;
            }
            let bytes = doc.text.len();
            let ex = extract(&doc.text, &self.cfg.params());
            if !ex.title.is_empty() {
                doc.meta.insert("title".into(), ex.title);
            }
            if !ex.lang.is_empty() {
                doc.meta.insert("html_lang".into(), ex.lang);
            }
            if !ex.canonical.is_empty() {
                doc.meta.insert("canonical_url".into(), ex.canonical);
            }
            let n = ex.text.chars().count();
            doc.attrs.insert(
                "extract_html.ratio".into(),
                if bytes == 0 {
                    0.0
                } else {
                    ex.text.len() as f64 / bytes as f64
                },
            );
            doc.set_text(ex.text);
            if n < self.cfg.min_chars {
                out.reject(
                    doc,
                    "no_content",
                    Some(n as f64),
                    format!("min_chars={}", self.cfg.min_chars),
                );
            } else {
                out.emit(doc);
            }
        }
        Ok(())
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "extract_html",
        doc: "Main-content extraction from HTML (boilerplate removal, Chinese-aware); non-HTML passes through.",
        role: Role::Transform,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Transform(Arc::new(ExtractHtml::new(cfg))))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Document;
    use crate::testing::run_transform_docs;

    const PAGE: &str = r#"<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>长三角 &amp; 一体化</title>
<link rel="canonical" href="https://example.cn/a?x=1&amp;y=2"><style>.x{}</style><script>var a = "<p>不要</p>";</script></head>
<body><div class="top-nav"><a href="/">首页</a><a href="/n">新闻</a><a href="/s">体育</a></div>
<header><h1>网站名称</h1></header>
<div id="content"><h1>深入推进长三角一体化发展</h1>
<p>新华社上海11月30日电　中共中央总书记习近平30日上午在上海主持召开座谈会并发表重要讲话。</p>
<p>他强调，深入推进长三角一体化发展，
进一步提升创新能力、产业竞争力、发展能级。</p>
<ul class="related"><li><a href="/1">相关新闻一的标题文字</a></li><li><a href="/2">相关新闻二的标题文字</a></li></ul>
<table><tr><td>指标</td><td>数值</td></tr></table>
<p>要完整、准确、全面贯彻新发展理念，紧扣一体化和高质量这两个关键词。<br>第二行也是正文内容，有标点。</p></div>
<div class="cookie-banner">本网站使用Cookie，继续浏览即表示您同意我们的隐私政策和服务条款。</div>
<footer>版权所有 © 2023 某某网站 京ICP备12345678号，未经许可不得转载。</footer>
<!-- 注释里的文字不应出现 -->
</body></html>"#;

    #[test]
    fn extracts_main_text_and_meta() {
        let ex = extract(PAGE, &Params::default());
        assert_eq!(ex.title, "长三角 & 一体化");
        assert_eq!(ex.lang, "zh-CN");
        assert_eq!(ex.canonical, "https://example.cn/a?x=1&y=2");
        let t = &ex.text;
        assert!(t.starts_with("深入推进长三角一体化发展\n新华社上海"), "{t}");
        assert!(
            t.contains("他强调，深入推进长三角一体化发展，进一步提升创新能力"),
            "no space between CJK: {t}"
        );
        assert!(t.contains("关键词。\n第二行也是正文内容"), "{t}");
        for junk in [
            "首页",
            "网站名称",
            "相关新闻",
            "Cookie",
            "版权所有",
            "注释",
            "不要",
            ".x{}",
        ] {
            assert!(!t.contains(junk), "{junk} leaked: {t}");
        }
    }

    #[test]
    fn stage_routes_and_passes_text_through() {
        let mut html = Document::new("h", "t", PAGE);
        html.meta.insert("content_type".into(), "text/html".into());
        let mut wet = Document::new("w", "t", "纯文本，不是网页。<b>保持原样</b>");
        wet.meta.insert("content_type".into(), "text/plain".into());
        let mut empty = Document::new("e", "t", "<html><body><nav>菜单</nav></body></html>");
        empty.meta.insert("content_type".into(), "text/html".into());
        let t = ExtractHtml::new(Config::default());
        for bs in [1, 3, 1000] {
            let (out, rej) =
                run_transform_docs(&t, vec![html.clone(), wet.clone(), empty.clone()], bs);
            assert_eq!(out.len(), 2);
            assert_eq!(out[0].meta["title"], "长三角 & 一体化");
            assert_eq!(out[0].meta["canonical_url"], "https://example.cn/a?x=1&y=2");
            assert!(out[0].attrs["extract_html.ratio"] > 0.0);
            assert_eq!(out[1].text, wet.text);
            assert_eq!(rej.len(), 1);
            assert_eq!(rej[0].reject.as_ref().unwrap().reason, "no_content");
        }
    }

    #[test]
    fn never_panics_on_broken_markup() {
        for s in [
            "",
            "<",
            "</",
            "<<<>>>",
            "<p",
            "<a href='",
            "&#",
            "&#x;",
            "<div><div></span></p>",
            "<script>",
            "<title>",
            "中文<br/>",
            "</ ><!-",
            "<p>\u{0}</p>",
        ] {
            let _ = extract(s, &Params::default());
        }
    }
}
