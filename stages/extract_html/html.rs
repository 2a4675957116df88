//! A small, lenient, allocation-light HTML tokenizer for text extraction.
//!
//! It is not an HTML5 tree builder: it yields start tags (with the few attributes extraction
//! looks at), end tags and text, handles comments, doctype/processing instructions,
//! raw-text elements (`script`, `style`, ...) and RCDATA (`title`, `textarea`), and decodes
//! character references. Everything is a slice of the input until output time. The
//! extractor balances tags itself (see `mod.rs`). It never panics on any input: every index
//! is checked and every loop consumes at least one byte.

/// One token.
#[derive(Debug, Clone, PartialEq)]
pub enum Token<'a> {
    /// `<name ...>`; `self_closing` for `<name/>`.
    Start {
        /// Lower-case tag name.
        name: String,
        /// Raw `class` attribute.
        class: &'a str,
        /// Raw `id` attribute.
        id: &'a str,
        /// Raw `style` attribute.
        style: &'a str,
        /// `hidden` attribute present or `aria-hidden="true"`.
        hidden: bool,
        /// Raw `href` (for `<link rel=canonical>`), `rel`, `lang`.
        href: &'a str,
        /// Raw `rel`.
        rel: &'a str,
        /// Raw `lang`.
        lang: &'a str,
        /// `<x/>`.
        self_closing: bool,
    },
    /// `</name>`.
    End(String),
    /// Text (still entity-encoded).
    Text(&'a str),
    /// The body of a raw-text or RCDATA element (already split out), with its tag name.
    Raw(&'static str, &'a str),
}

/// Raw-text and RCDATA elements: their content is not markup.
const RAW: &[&str] = &[
    "script", "style", "title", "textarea", "xmp", "noscript", "iframe", "noembed", "noframes",
];

/// Tokenizer over a `&str`.
pub struct Tokenizer<'a> {
    s: &'a str,
    i: usize,
    pending_raw: Option<&'static str>,
}

impl<'a> Tokenizer<'a> {
    /// Start tokenizing.
    pub fn new(s: &'a str) -> Self {
        Tokenizer {
            s,
            i: 0,
            pending_raw: None,
        }
    }
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    // needle is lower-case ASCII starting with '<'
    let mut from = 0;
    while from < hay.len() {
        let rel = memchr::memchr(b'<', &hay[from..])?;
        let at = from + rel;
        if hay.len() - at >= needle.len() && hay[at..at + needle.len()].eq_ignore_ascii_case(needle)
        {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

struct Attrs<'a> {
    class_id_start: Option<(usize, usize)>,
    id: Option<(usize, usize)>,
    style: &'a str,
    hidden: bool,
    href: &'a str,
    rel: &'a str,
    lang: &'a str,
}

impl<'a> Iterator for Tokenizer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let s = self.s;
        let b = s.as_bytes();
        if let Some(tag) = self.pending_raw.take() {
            let close = format!("</{tag}");
            let end = find_ci(&b[self.i..], close.as_bytes())
                .map(|e| self.i + e)
                .unwrap_or(b.len());
            let body = &s[self.i..end];
            self.i = end;
            return Some(Token::Raw(tag, body));
        }
        loop {
            if self.i >= b.len() {
                return None;
            }
            let start = self.i;
            if b[start] != b'<' {
                let end = memchr::memchr(b'<', &b[start..])
                    .map(|e| start + e)
                    .unwrap_or(b.len());
                self.i = end;
                return Some(Token::Text(&s[start..end]));
            }
            let rest = &b[start..];
            if rest.starts_with(b"<!--") {
                self.i = match memchr::memmem::find(&rest[4..], b"-->") {
                    Some(e) => start + 4 + e + 3,
                    None => b.len(),
                };
                continue;
            }
            if rest.len() >= 2 && (rest[1] == b'!' || rest[1] == b'?') {
                self.i = memchr::memchr(b'>', rest)
                    .map(|e| start + e + 1)
                    .unwrap_or(b.len());
                continue;
            }
            let closing = rest.len() >= 2 && rest[1] == b'/';
            let name_start = start + if closing { 2 } else { 1 };
            if name_start >= b.len() || !b[name_start].is_ascii_alphabetic() {
                if closing && name_start < b.len() {
                    // `</ garbage>`: a bogus comment.
                    self.i = memchr::memchr(b'>', rest)
                        .map(|e| start + e + 1)
                        .unwrap_or(b.len());
                    continue;
                }
                // A literal '<'.
                self.i = start + 1;
                return Some(Token::Text(&s[start..start + 1]));
            }
            let mut j = name_start;
            while j < b.len()
                && !matches!(b[j], b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'/' | b'>')
            {
                j += 1;
            }
            let name = s[name_start..j].to_ascii_lowercase();
            // Attributes: scan to the closing '>' honouring quotes.
            let mut attrs = Attrs {
                class_id_start: None,
                id: None,
                style: "",
                hidden: false,
                href: "",
                rel: "",
                lang: "",
            };
            let mut self_closing = false;
            let mut k = j;
            loop {
                while k < b.len() && (b[k].is_ascii_whitespace() || b[k] == b'/') {
                    if b[k] == b'/' {
                        self_closing = true;
                    }
                    k += 1;
                }
                if k >= b.len() {
                    break;
                }
                if b[k] == b'>' {
                    k += 1;
                    break;
                }
                self_closing = false;
                let an_start = k;
                while k < b.len()
                    && !matches!(
                        b[k],
                        b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'/' | b'>' | b'='
                    )
                {
                    k += 1;
                }
                let an = &b[an_start..k];
                while k < b.len() && b[k].is_ascii_whitespace() {
                    k += 1;
                }
                let mut val = (k, k);
                if k < b.len() && b[k] == b'=' {
                    k += 1;
                    while k < b.len() && b[k].is_ascii_whitespace() {
                        k += 1;
                    }
                    if k < b.len() && (b[k] == b'"' || b[k] == b'\'') {
                        let q = b[k];
                        let vs = k + 1;
                        let ve = memchr::memchr(q, &b[vs..])
                            .map(|e| vs + e)
                            .unwrap_or(b.len());
                        val = (vs, ve);
                        k = (ve + 1).min(b.len());
                    } else {
                        let vs = k;
                        while k < b.len()
                            && !matches!(b[k], b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'>')
                        {
                            k += 1;
                        }
                        val = (vs, k);
                    }
                }
                if closing || an.is_empty() {
                    if an.is_empty() && k < b.len() && b[k] != b'>' {
                        k += 1;
                    }
                    continue;
                }
                let v = s.get(val.0..val.1).unwrap_or("");
                if an.eq_ignore_ascii_case(b"class") {
                    attrs.class_id_start = Some(val);
                } else if an.eq_ignore_ascii_case(b"id") {
                    attrs.id = Some(val);
                } else if an.eq_ignore_ascii_case(b"style") {
                    attrs.style = v;
                } else if an.eq_ignore_ascii_case(b"hidden") {
                    attrs.hidden = true;
                } else if an.eq_ignore_ascii_case(b"aria-hidden") {
                    attrs.hidden |= v.eq_ignore_ascii_case("true");
                } else if an.eq_ignore_ascii_case(b"href") {
                    attrs.href = v;
                } else if an.eq_ignore_ascii_case(b"rel") {
                    attrs.rel = v;
                } else if an.eq_ignore_ascii_case(b"lang") {
                    attrs.lang = v;
                }
            }
            self.i = k.min(b.len()).max(start + 1);
            if closing {
                return Some(Token::End(name));
            }
            let class = attrs
                .class_id_start
                .and_then(|c| s.get(c.0..c.1))
                .unwrap_or("");
            let id = attrs.id.and_then(|i| s.get(i.0..i.1)).unwrap_or("");
            if !self_closing {
                if let Some(raw) = RAW.iter().find(|r| **r == name) {
                    self.pending_raw = Some(raw);
                }
            }
            return Some(Token::Start {
                name,
                class,
                id,
                style: attrs.style,
                hidden: attrs.hidden,
                href: attrs.href,
                rel: attrs.rel,
                lang: attrs.lang,
                self_closing,
            });
        }
    }
}

/// Append `text` to `out`, decoding character references the way the HTML standard does in
/// text: all 2,231 named references of the WHATWG table (via `htmlize`, not a hand list),
/// including the legacy ones that work without `;` (`&copy`, `&eacute`), numeric references
/// with the windows-1252 remapping of 0x80-0x9F, and U+FFFD for NUL, surrogates and values
/// past U+10FFFF. Unknown names stay literal (`AT&T`, `&unknown;`).
pub fn decode_entities_into(text: &str, out: &mut String) {
    if memchr::memchr(b'&', text.as_bytes()).is_none() {
        out.push_str(text);
    } else {
        out.push_str(&htmlize::unescape(text));
    }
}

/// Decode character references in an attribute value (`href`): as in text, except that a
/// legacy reference without `;` followed by `=` or an alphanumeric stays literal, so query
/// strings like `?a=1&copy=2` survive.
pub fn decode_attribute(value: &str) -> String {
    htmlize::unescape_attribute(value).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(html: &str) -> Vec<String> {
        Tokenizer::new(html)
            .map(|t| match t {
                Token::Start { name, .. } => format!("<{name}>"),
                Token::End(n) => format!("</{n}>"),
                Token::Text(t) => t.to_string(),
                Token::Raw(n, b) => format!("raw:{n}:{b}"),
            })
            .collect()
    }

    #[test]
    fn tokens_comments_raw() {
        assert_eq!(
            names(
                "<!DOCTYPE html><P class='a'>中文<!-- x --><script>if (a<b) {}</script></p>a < b"
            ),
            vec![
                "<p>",
                "中文",
                "<script>",
                "raw:script:if (a<b) {}",
                "</script>",
                "</p>",
                "a ",
                "<",
                " b"
            ]
        );
        assert_eq!(
            names("<title>a&amp;b</title>"),
            vec!["<title>", "raw:title:a&amp;b", "</title>"]
        );
        assert_eq!(
            names("<script>never closed"),
            vec!["<script>", "raw:script:never closed"]
        );
        assert_eq!(names("<div"), vec!["<div>"]);
        assert_eq!(names("<a href=\"x"), vec!["<a>"]);
    }

    #[test]
    fn attrs() {
        let t: Vec<_> = Tokenizer::new("<div id=nav class=\"top menu\" style='display:none' hidden><link rel=canonical href=\"http://x/\"/>").collect();
        match &t[0] {
            Token::Start {
                class,
                id,
                style,
                hidden,
                ..
            } => {
                assert_eq!((*class, *id), ("top menu", "nav"));
                assert_eq!(*style, "display:none");
                assert!(*hidden);
            }
            other => panic!("{other:?}"),
        }
        match &t[1] {
            Token::Start {
                rel,
                href,
                self_closing,
                ..
            } => {
                assert_eq!(
                    (*rel, *href, *self_closing),
                    ("canonical", "http://x/", true)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn entities() {
        let mut s = String::new();
        decode_entities_into(
            "&#x5a62;&#19977;&amp;&nbsp;&copy &unknown; AT&T &#0; &#x110000;",
            &mut s,
        );
        assert_eq!(s, "婢三&\u{a0}© &unknown; AT&T \u{FFFD} \u{FFFD}");
        // Names past the old hand list: Latin letters, punctuation, maths, arrows, legacy
        // references without `;`, and windows-1252 numeric remapping.
        let mut s = String::new();
        decode_entities_into(
            "&eacute;&szlig;&uuml;&hellip;&Ouml;&ccedil;&ntilde;&aring;&oelig;&alpha;&Omega;&rArr;&le;&ne;&infin;&sum;&frac12;&sup2;&micro;&eacute &#150;&#x80;",
            &mut s,
        );
        assert_eq!(s, "éßü…Öçñåœ\u{3b1}Ω⇒≤≠∞∑½²µé –€");
        assert_eq!(
            decode_attribute("/a?x=1&amp;copy=2&copy=3"),
            "/a?x=1&copy=2&copy=3"
        );
    }
}
