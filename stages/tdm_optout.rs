//! `tdm_optout`: honour text-and-data-mining opt-outs: reject pages whose publisher reserved
//! them from AI training, with the reason and the evidence.
//!
//! The EU DSM Directive (art. 4(3)) lets rightsholders reserve text and data mining "by
//! machine-readable means", and the AI Act (art. 53(1)(c)) requires model providers to
//! honour such reservations. This stage checks, in this order:
//!
//! 1. **Opt-out domain lists** (`optout_domain_files`, `optout_domains`): user-supplied
//!    domains, one per line, in the `url_filter` format; a listed domain covers its
//!    subdomains. Reason `optout_domain`, detail `domain=<listed> (<file>:<line>)`.
//! 2. **TDMRep HTTP header** (W3C TDM Reservation Protocol): `tdm-reservation: 1`. Reason
//!    `tdm_reservation_header`, detail the header (and `tdm-policy` when sent).
//! 3. **X-Robots-Tag HTTP header** with `noai` or `noimageai` (all agents, or an agent in
//!    `robots_names`). Reason `x_robots_tag_noai`, detail the header value.
//! 4. **TDMRep in HTML**: `<meta name="tdm-reservation" content="1">`. Reason
//!    `tdm_reservation_meta`, detail the tag as written.
//! 5. **Robots meta tag**: `<meta name="robots" content="…noai…">` (or `noimageai`; names in
//!    `robots_names`). Reason `robots_noai`, detail the tag as written.
//!
//! The headers come from `ingest_warc`, which copies `X-Robots-Tag`, `TDM-Reservation` and
//! `TDM-Policy` into `meta` (`http_x_robots_tag`, `http_tdm_reservation`, `http_tdm_policy`);
//! the meta tags are read from the raw HTML, so the node must sit **between `ingest_warc`
//! and `extract_html`** (extraction drops `<head>`). Documents that are not HTML (no `<`
//! before the end of `<head>`) are checked for the domain list and headers only.
//!
//! Not covered (the run has no network): `robots.txt` and `/.well-known/tdmrep.json` of each
//! site; put the domains they reserve in an opt-out list.
//!
//! * Reads `meta.url`/`meta.domain`, `meta.http_*`, `text` (up to `</head>` or `<body>`,
//!   at most `max_scan_bytes`). Memory: the domain set; no copy of the page.
//! * Stats: `domains_loaded`, documents checked, with HTML, and rejected per reason.
//!
//! ```yaml
//! tdm:
//!   kind: tdm_optout
//!   inputs: [cc]
//!   optout_domain_files: [samples/lists/tdm_optout_domains.example.txt]
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::document::{DocBatch, Document};
use crate::error::{Error, Result};
use crate::stage::{
    check_file, parse_config, BuildCtx, Emitter, Kind, Node, Role, StageConfig, Transform,
    OUT_REJECTED,
};
use crate::stages::url_filter::normalize_host;

/// Config for `tdm_optout`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Files of opted-out domains, one per line (`#` comments; subdomains included).
    /// Default: none.
    #[serde(default)]
    pub optout_domain_files: Vec<String>,
    /// Opted-out domains given inline. Default: none.
    #[serde(default)]
    pub optout_domains: Vec<String>,
    /// `<meta name=…>` names and X-Robots-Tag user agents whose directives are honoured
    /// (case-insensitive). Default `[robots]`; add crawler names such as `CCBot` to honour
    /// directives addressed to them.
    #[serde(default = "default_names")]
    pub robots_names: Vec<String>,
    /// Robots directives that reserve the page from AI training. Default `[noai, noimageai]`.
    #[serde(default = "default_tokens")]
    pub robots_tokens: Vec<String>,
    /// Honour TDMRep (`tdm-reservation` header and meta tag). Default true.
    #[serde(default = "default_true")]
    pub tdmrep: bool,
    /// Honour the X-Robots-Tag header. Default true.
    #[serde(default = "default_true")]
    pub x_robots_tag: bool,
    /// Bytes of a page scanned for meta tags when no `</head>` or `<body>` ends the scan
    /// first. Default 1048576 (1 MiB).
    #[serde(default = "default_scan")]
    pub max_scan_bytes: usize,
}

fn default_names() -> Vec<String> {
    vec!["robots".into()]
}
fn default_tokens() -> Vec<String> {
    vec!["noai".into(), "noimageai".into()]
}
fn default_true() -> bool {
    true
}
fn default_scan() -> usize {
    1 << 20
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        let mut p = Vec::new();
        for f in &self.optout_domain_files {
            p.extend(check_file("optout_domain_files", std::path::Path::new(f)));
        }
        if self.robots_tokens.is_empty()
            && !self.tdmrep
            && self.optout_domain_files.is_empty()
            && self.optout_domains.is_empty()
        {
            p.push("checks nothing: set \"robots_tokens\", \"tdmrep\" or an opt-out list".into());
        }
        p
    }
}

/// One `<meta>` tag: its `name` (or `http-equiv`), `content`, and the tag as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaTag {
    /// `name` (or `http-equiv`) attribute, lower-case.
    pub name: String,
    /// `content` attribute, as written.
    pub content: String,
    /// The tag's source text (at most 300 bytes).
    pub raw: String,
}

/// The `<meta>` tags of a page's head: scanning stops at `</head>`, `<body>` or `limit`
/// bytes. Attribute values may be quoted with `"` or `'` or unquoted; names are
/// case-insensitive. Comments are skipped.
pub fn head_meta_tags(html: &str, limit: usize) -> Vec<MetaTag> {
    let b = html.as_bytes();
    let end = b.len().min(limit);
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'<', &b[i..end]) {
        let at = i + k;
        let rest = &b[at + 1..end];
        if rest.starts_with(b"!--") {
            i = match memchr::memmem::find(&rest[3..], b"-->") {
                Some(e) => at + 1 + 3 + e + 3,
                None => end,
            };
            continue;
        }
        let name_end = rest
            .iter()
            .position(|c| c.is_ascii_whitespace() || *c == b'>' || *c == b'/')
            .unwrap_or(rest.len());
        let tag = &rest[..name_end];
        if tag.eq_ignore_ascii_case(b"body")
            || (rest.first() == Some(&b'/')
                && rest[1..].len() >= 4
                && rest[1..5].eq_ignore_ascii_case(b"head"))
        {
            break;
        }
        let close = memchr::memchr(b'>', rest).map_or(end, |e| at + 1 + e);
        if tag.eq_ignore_ascii_case(b"meta") {
            let attrs = parse_attrs(&html[at + 1 + name_end..close.min(end)]);
            let get = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if let (Some(name), Some(content)) =
                (get("name").or_else(|| get("http-equiv")), get("content"))
            {
                let mut raw_end = (close + 1).min(end).min(at + 300);
                while !html.is_char_boundary(raw_end) {
                    raw_end -= 1;
                }
                out.push(MetaTag {
                    name: name.trim().to_ascii_lowercase(),
                    content,
                    raw: html[at..raw_end].to_string(),
                });
            }
        }
        i = (close + 1).min(end);
        if i >= end {
            break;
        }
    }
    out
}

/// `name=value` pairs of a tag's attribute text (names lower-case).
fn parse_attrs(s: &str) -> Vec<(String, String)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let ns = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'/' {
            i += 1;
        }
        if ns == i {
            break;
        }
        let name = s[ns..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            let v = if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let vs = i + 1;
                let ve = memchr::memchr(q, &b[vs..]).map_or(b.len(), |e| vs + e);
                i = (ve + 1).min(b.len());
                &s[vs..ve]
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                // `<meta name=x content=y/>`: the `/` closes the tag (HTML would keep it in
                // the value; an opt-out is read leniently).
                if i == b.len() {
                    s[vs..i].strip_suffix('/').unwrap_or(&s[vs..i])
                } else {
                    &s[vs..i]
                }
            };
            out.push((name, htmlize::unescape_attribute(v).into_owned()));
        } else {
            out.push((name, String::new()));
        }
    }
    out
}

/// The `tdm_optout` transform.
pub struct TdmOptout {
    cfg: Config,
    /// Domain → where it was listed (`file:line` or `optout_domains`).
    domains: HashMap<String, String>,
    names: Vec<String>,
    tokens: Vec<String>,
    checked: AtomicU64,
    html: AtomicU64,
}

impl TdmOptout {
    /// Build from a config: read the opt-out lists.
    pub fn new(cfg: Config) -> Result<Self> {
        let mut domains = HashMap::new();
        for f in &cfg.optout_domain_files {
            let text = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
            for (n, l) in text.lines().enumerate() {
                if let Some(h) = normalize_host(l) {
                    domains.entry(h).or_insert_with(|| format!("{f}:{}", n + 1));
                }
            }
        }
        for d in &cfg.optout_domains {
            if let Some(h) = normalize_host(d) {
                domains
                    .entry(h)
                    .or_insert_with(|| "optout_domains".to_string());
            }
        }
        let lower = |v: &[String]| v.iter().map(|s| s.trim().to_ascii_lowercase()).collect();
        Ok(TdmOptout {
            names: lower(&cfg.robots_names),
            tokens: lower(&cfg.robots_tokens),
            cfg,
            domains,
            checked: AtomicU64::new(0),
            html: AtomicU64::new(0),
        })
    }

    /// The listed domain covering `host`, with where it was listed.
    fn listed(&self, host: &str) -> Option<(&str, &str)> {
        let mut h = host;
        loop {
            if let Some((k, v)) = self.domains.get_key_value(h) {
                return Some((k.as_str(), v.as_str()));
            }
            match h.find('.') {
                Some(i) => h = &h[i + 1..],
                None => return None,
            }
        }
    }

    /// A robots directive list (`noindex, noai`) reserves the page.
    fn reserves(&self, directives: &str) -> bool {
        directives
            .split([',', ' ', '\t'])
            .map(|t| t.trim().to_ascii_lowercase())
            .any(|t| self.tokens.contains(&t))
    }

    /// Whether an X-Robots-Tag value reserves the page: directives for every agent, or
    /// after a `<agent>:` prefix naming one of `robots_names`.
    fn x_robots_reserves(&self, value: &str) -> bool {
        // `otherbot: noai, noindex` addresses the agent until the next `agent:` prefix.
        let mut applies = true;
        for part in value.split(',') {
            let mut p = part.trim();
            if let Some((ua, rest)) = p.split_once(':') {
                let ua = ua.trim().to_ascii_lowercase();
                if !ua.contains(' ') && !ua.is_empty() {
                    applies = self.names.contains(&ua);
                    p = rest.trim();
                }
            }
            if applies && self.reserves(p) {
                return true;
            }
        }
        false
    }

    /// Why this document is reserved, with the evidence; `None` when it is not.
    pub fn check(&self, doc: &Document) -> Option<(&'static str, String)> {
        let url = doc.meta.get("url").or_else(|| doc.meta.get("domain"));
        if let Some(host) = url.and_then(|u| normalize_host(u)) {
            if let Some((d, at)) = self.listed(&host) {
                return Some(("optout_domain", format!("domain={d} ({at})")));
            }
        }
        if self.cfg.tdmrep {
            if let Some(v) = doc.meta.get("http_tdm_reservation") {
                if v.split(',').any(|x| x.trim() == "1") {
                    let policy = doc
                        .meta
                        .get("http_tdm_policy")
                        .map(|p| format!("; tdm-policy: {p}"))
                        .unwrap_or_default();
                    return Some((
                        "tdm_reservation_header",
                        format!("tdm-reservation: {v}{policy}"),
                    ));
                }
            }
        }
        if self.cfg.x_robots_tag {
            if let Some(v) = doc.meta.get("http_x_robots_tag") {
                if self.x_robots_reserves(v) {
                    return Some(("x_robots_tag_noai", format!("X-Robots-Tag: {v}")));
                }
            }
        }
        if !doc.text.trim_start().starts_with('<') && !doc.text.contains("<meta") {
            return None;
        }
        self.html.fetch_add(1, Ordering::Relaxed);
        let tags = head_meta_tags(&doc.text, self.cfg.max_scan_bytes);
        if self.cfg.tdmrep {
            if let Some(t) = tags
                .iter()
                .find(|t| t.name == "tdm-reservation" && t.content.trim() == "1")
            {
                let policy = tags
                    .iter()
                    .find(|p| p.name == "tdm-policy")
                    .map(|p| format!(" {}", p.raw))
                    .unwrap_or_default();
                return Some(("tdm_reservation_meta", format!("{}{policy}", t.raw)));
            }
        }
        if let Some(t) = tags
            .iter()
            .find(|t| self.names.contains(&t.name) && self.reserves(&t.content))
        {
            return Some(("robots_noai", t.raw.clone()));
        }
        None
    }
}

impl Transform for TdmOptout {
    fn process(&self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        for doc in batch.docs {
            self.checked.fetch_add(1, Ordering::Relaxed);
            match self.check(&doc) {
                Some((reason, evidence)) => out.reject(doc, reason, None, evidence),
                None => out.emit(doc),
            }
        }
        Ok(())
    }
    fn stats(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "domains_loaded": self.domains.len(),
            "checked": self.checked.load(Ordering::Relaxed),
            "html_scanned": self.html.load(Ordering::Relaxed),
        }))
    }
    fn manifest(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "optout_domain_files": self.cfg.optout_domain_files,
            "domains_loaded": self.domains.len(),
            "robots_names": self.names,
            "robots_tokens": self.tokens,
            "tdmrep": self.cfg.tdmrep,
            "x_robots_tag": self.cfg.x_robots_tag,
        }))
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "tdm_optout",
        doc: "Reject pages reserved from text and data mining: robots noai meta, X-Robots-Tag, TDMRep header/meta, opt-out domain lists; the evidence in the reject detail.",
        role: Role::Transform,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Transform(std::sync::Arc::new(
                TdmOptout::new(cfg).map_err(|e| vec![e.to_string()])?,
            )))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(extra: serde_json::Value) -> TdmOptout {
        let mut v = serde_json::json!({});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        TdmOptout::new(serde_json::from_value(v).unwrap()).unwrap()
    }

    fn page(url: &str, html: &str) -> Document {
        let mut d = Document::new("t:f:1", "web", html);
        d.meta.insert("url".into(), url.into());
        d
    }

    #[test]
    fn meta_tags_are_parsed_in_every_spelling() {
        let t = head_meta_tags(
            "<!doctype html><HTML><head><!-- <meta name=robots content=noai> --><META NAME='Robots' CONTENT=\"noindex, NoAI\"><meta content=1 name=tdm-reservation/><meta charset=utf-8></head><body><meta name=robots content=noimageai>",
            1 << 20,
        );
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!(t[0].name, "robots");
        assert_eq!(t[0].content, "noindex, NoAI");
        assert_eq!(t[0].raw, "<META NAME='Robots' CONTENT=\"noindex, NoAI\">");
        assert_eq!(
            (t[1].name.as_str(), t[1].content.as_str()),
            ("tdm-reservation", "1")
        );
    }

    #[test]
    fn each_mechanism_rejects_with_its_evidence_and_nothing_else_does() {
        let s = stage(
            serde_json::json!({"optout_domains": ["optout.example"], "robots_names": ["robots", "CCBot"]}),
        );
        let r = |d: &Document| s.check(d);
        let plain = "<html><head><meta name=\"robots\" content=\"noindex, nofollow\"><title>x</title></head><body>ok noai</body></html>";
        assert_eq!(r(&page("https://a.example/", plain)), None);
        assert_eq!(
            r(&page("https://news.optout.example/a", plain)),
            Some((
                "optout_domain",
                "domain=optout.example (optout_domains)".into()
            ))
        );
        assert_eq!(r(&page("https://notoptout.example/", plain)), None);
        let mut h = page("https://a.example/", plain);
        h.meta.insert("http_tdm_reservation".into(), "1".into());
        h.meta.insert(
            "http_tdm_policy".into(),
            "https://a.example/policy.json".into(),
        );
        assert_eq!(
            r(&h),
            Some((
                "tdm_reservation_header",
                "tdm-reservation: 1; tdm-policy: https://a.example/policy.json".into()
            ))
        );
        h.meta.insert("http_tdm_reservation".into(), "0".into());
        assert_eq!(r(&h), None);
        let mut x = page("https://a.example/", plain);
        x.meta
            .insert("http_x_robots_tag".into(), "noindex, noai".into());
        assert_eq!(
            r(&x),
            Some(("x_robots_tag_noai", "X-Robots-Tag: noindex, noai".into()))
        );
        x.meta
            .insert("http_x_robots_tag".into(), "googlebot: noai".into());
        assert_eq!(r(&x), None, "addressed to another agent");
        x.meta.insert(
            "http_x_robots_tag".into(),
            "googlebot: noindex, ccbot: noimageai".into(),
        );
        assert!(r(&x).is_some(), "addressed to an agent in robots_names");
        let m = page("https://a.example/", "<html><head><meta name=\"tdm-reservation\" content=\"1\"><meta name=\"tdm-policy\" content=\"https://a.example/p\"></head><body>x</body>");
        assert_eq!(
            r(&m),
            Some((
                "tdm_reservation_meta",
                "<meta name=\"tdm-reservation\" content=\"1\"> <meta name=\"tdm-policy\" content=\"https://a.example/p\">".into()
            ))
        );
        let n = page(
            "https://a.example/",
            "<html><head><meta name=\"robots\" content=\"noimageai\"></head>",
        );
        assert_eq!(
            r(&n),
            Some((
                "robots_noai",
                "<meta name=\"robots\" content=\"noimageai\">".into()
            ))
        );
        let c = page(
            "https://a.example/",
            "<html><head><meta name=\"CCBot\" content=\"noai\"></head>",
        );
        assert!(r(&c).is_some());
        let g = page(
            "https://a.example/",
            "<html><head><meta name=\"GPTBot\" content=\"noai\"></head>",
        );
        assert_eq!(r(&g), None, "GPTBot is not in robots_names");
        // After <body>, a tag is content, not a directive.
        let b = page(
            "https://a.example/",
            "<html><head></head><body><meta name=robots content=noai>",
        );
        assert_eq!(r(&b), None);
    }
}
