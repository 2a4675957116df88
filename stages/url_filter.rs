//! `url_filter`: reject documents whose URL is on a domain blocklist or matches a URL
//! pattern.
//!
//! Crawls are full of gambling, porn and malware domains; removing them by URL is the
//! cheapest filter there is, and it runs before anything expensive. A blocked domain also
//! blocks all its subdomains: `bad.cn` blocks `www.bad.cn` and `m.x.bad.cn`, but not
//! `notbad.cn`. Lists are read from plain-text files, one domain per line (`#` comments,
//! blank lines, surrounding whitespace, letter case, a leading `*.`/`.`, a scheme, a path and
//! a port are all tolerated), so public lists such as
//! `samples/lists/illegal_domains.zh.txt` (14.6k illegal domains, MIT) can be used as they are.
//! Patterns are regular expressions (Rust `regex` syntax) matched against the whole URL.
//!
//! * Reads `meta.url` (falls back to `meta.domain`). Documents without either pass
//!   unless `reject_missing_url` is set (reason `missing_url`).
//! * Rejects `blocked_domain` (detail: the listed domain that matched) or
//!   `blocked_url_pattern` (detail: the pattern).
//! * Memory: the domain set (≈ 60 bytes per domain: 14.6k domains ≈ 1 MB) and the
//!   compiled patterns. Lookup costs one hash probe per label of the host.
//!
//! ```yaml
//! urls:
//!   kind: url_filter
//!   inputs: [extract]
//!   blocklist_files: [samples/lists/illegal_domains.zh.txt]
//!   domains: [example-spam.cn]
//!   url_patterns: ['(?i)/(casino|bet365)/', '(?i)\.(jpg|png|pdf)$']
//! ```

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::document::DocBatch;
use crate::error::{Error, Result};
use crate::stage::{
    check_file, field_problem, parse_config, BuildCtx, Emitter, Kind, Node, Role, StageConfig,
    Transform, OUT_REJECTED,
};

/// Config for `url_filter`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Files with one blocked domain per line (subdomains included). Default: none.
    #[serde(default)]
    pub blocklist_files: Vec<String>,
    /// Blocked domains given inline (subdomains included). Default: none.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Regular expressions; a URL matching any of them is rejected. Default: none.
    #[serde(default)]
    pub url_patterns: Vec<String>,
    /// Reject documents that have no `meta.url`/`meta.domain`. Default false.
    #[serde(default)]
    pub reject_missing_url: bool,
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        let mut p = Vec::new();
        for f in &self.blocklist_files {
            if let Some(e) = check_file("blocklist_files", std::path::Path::new(f)) {
                p.push(e);
            }
        }
        for (i, pat) in self.url_patterns.iter().enumerate() {
            if let Err(e) = regex::Regex::new(pat) {
                p.push(field_problem(
                    &format!("url_patterns[{i}]"),
                    format!("invalid regex {pat:?}: {e}"),
                ));
            }
        }
        if self.blocklist_files.is_empty()
            && self.domains.is_empty()
            && self.url_patterns.is_empty()
        {
            p.push(
                "needs at least one of \"blocklist_files\", \"domains\", \"url_patterns\"".into(),
            );
        }
        p
    }
}

/// Normalise a list entry or URL to a bare lower-case host: strips scheme, credentials,
/// path, query, port, a leading `*.`/`.` and a trailing dot. Returns `None` for blanks and
/// comments.
pub fn normalize_host(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() || s.starts_with('#') {
        return None;
    }
    let s = s.split_once("://").map(|(_, r)| r).unwrap_or(s);
    let s = s.split(['/', '?', '#']).next().unwrap_or("");
    let s = s.rsplit_once('@').map(|(_, h)| h).unwrap_or(s);
    let s = if s.starts_with('[') {
        s
    } else {
        s.split(':').next().unwrap_or("")
    };
    let s = s
        .trim_start_matches("*.")
        .trim_start_matches('.')
        .trim_end_matches('.');
    if s.is_empty() {
        None
    } else {
        Some(s.to_ascii_lowercase())
    }
}

/// The `url_filter` transform.
pub struct UrlFilter {
    domains: HashSet<String>,
    patterns: regex::RegexSet,
    pattern_src: Vec<String>,
    reject_missing: bool,
    missing_url: AtomicU64,
}

impl UrlFilter {
    /// Build from a config: read the lists and compile the patterns.
    pub fn new(cfg: &Config) -> Result<Self> {
        let mut domains = HashSet::new();
        for f in &cfg.blocklist_files {
            let text = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
            domains.extend(text.lines().filter_map(normalize_host));
        }
        domains.extend(cfg.domains.iter().filter_map(|d| normalize_host(d)));
        let patterns = regex::RegexSet::new(&cfg.url_patterns)
            .map_err(|e| Error::msg(format!("url_patterns: {e}")))?;
        Ok(UrlFilter {
            domains,
            patterns,
            pattern_src: cfg.url_patterns.clone(),
            reject_missing: cfg.reject_missing_url,
            missing_url: AtomicU64::new(0),
        })
    }

    /// Number of distinct blocked domains loaded.
    pub fn n_domains(&self) -> usize {
        self.domains.len()
    }

    /// The blocked domain that covers `host` (itself or a parent domain), if any.
    pub fn blocked_domain<'a>(&self, host: &'a str) -> Option<&'a str> {
        let mut h = host;
        loop {
            if self.domains.contains(h) {
                return Some(h);
            }
            match h.find('.') {
                Some(i) => h = &h[i + 1..],
                None => return None,
            }
        }
    }
}

impl Transform for UrlFilter {
    fn process(&self, batch: DocBatch, out: &mut Emitter) -> Result<()> {
        for doc in batch.docs {
            let url = doc
                .meta
                .get("url")
                .or_else(|| doc.meta.get("domain"))
                .cloned();
            let Some(url) = url else {
                self.missing_url.fetch_add(1, Ordering::Relaxed);
                if self.reject_missing {
                    out.reject(doc, "missing_url", None, "no meta.url or meta.domain");
                } else {
                    out.emit(doc);
                }
                continue;
            };
            if let Some(host) = normalize_host(&url) {
                if let Some(d) = self.blocked_domain(&host) {
                    let detail = format!("domain={d}");
                    out.reject(doc, "blocked_domain", None, detail);
                    continue;
                }
            }
            if let Some(i) = self.patterns.matches(&url).iter().next() {
                let detail = format!("pattern={}", self.pattern_src[i]);
                out.reject(doc, "blocked_url_pattern", None, detail);
                continue;
            }
            out.emit(doc);
        }
        Ok(())
    }
    fn stats(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "domains_loaded": self.domains.len(),
            "patterns": self.pattern_src.len(),
            "missing_url": self.missing_url.load(Ordering::Relaxed),
        }))
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "url_filter",
        doc: "Reject documents whose URL is on a domain blocklist (subdomains included) or matches a URL regex.",
        role: Role::Transform,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Transform(Arc::new(UrlFilter::new(&cfg)?)))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Document;
    use crate::testing::run_transform_docs;

    fn doc(id: &str, url: Option<&str>) -> Document {
        let mut d = Document::new(id, "t", "正文");
        if let Some(u) = url {
            d.meta.insert("url".into(), u.into());
        }
        d
    }

    #[test]
    fn normalizes_entries() {
        assert_eq!(normalize_host(" 900788.com "), Some("900788.com".into()));
        assert_eq!(normalize_host("BSDY.INFO"), Some("bsdy.info".into()));
        assert_eq!(
            normalize_host("https://u:p@WWW.Bad.cn:8080/x?y#z"),
            Some("www.bad.cn".into())
        );
        assert_eq!(normalize_host("*.bad.cn."), Some("bad.cn".into()));
        assert_eq!(normalize_host("# comment"), None);
        assert_eq!(normalize_host("   "), None);
    }

    #[test]
    fn real_list_blocks_domains_and_subdomains() {
        let list = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/samples/lists/illegal_domains.zh.txt"
        );
        let cfg = Config {
            blocklist_files: vec![list.into()],
            url_patterns: vec![r"(?i)\.(jpg|png)$".into()],
            ..Default::default()
        };
        let f = UrlFilter::new(&cfg).unwrap();
        assert!(f.n_domains() > 14_000, "{}", f.n_domains());
        let docs = vec![
            doc("a", Some("http://900788.com/index.html")),
            doc("b", Some("https://m.www.3d2666.cn/x")),
            doc("c", Some("https://not900788.com/")),
            doc("d", Some("https://news.example.cn/a.JPG")),
            doc("e", None),
            doc("f", Some("https://zh.wikipedia.org/wiki/雄安新区")),
        ];
        for bs in [1, 3, 1000] {
            let (out, rej) = run_transform_docs(&f, docs.clone(), bs);
            assert_eq!(
                out.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
                vec!["c", "e", "f"]
            );
            let r: Vec<_> = rej
                .iter()
                .map(|d| {
                    (
                        d.id.as_str(),
                        d.reject.as_ref().unwrap().reason.as_str(),
                        d.reject.as_ref().unwrap().detail.as_str(),
                    )
                })
                .collect();
            assert_eq!(
                r,
                vec![
                    ("a", "blocked_domain", "domain=900788.com"),
                    ("b", "blocked_domain", "domain=www.3d2666.cn"),
                    ("d", "blocked_url_pattern", r"pattern=(?i)\.(jpg|png)$"),
                ]
            );
        }
    }

    #[test]
    fn config_problems() {
        let ctx = BuildCtx::for_tests("u", "/tmp/x");
        let err = parse_config::<Config>(
            &serde_json::json!({"url_patterns": ["("], "blocklist_files": ["/nope.txt"]}),
            &ctx,
        )
        .unwrap_err();
        assert_eq!(err.len(), 2, "{err:?}");
        assert!(parse_config::<Config>(&serde_json::json!({}), &ctx).is_err());
    }
}
