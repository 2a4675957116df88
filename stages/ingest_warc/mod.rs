//! `ingest_warc`: read web crawls (WARC 1.0/1.1, WET, legacy ARC; plain or gzip) into
//! documents whose text is the decoded page, correctly as UTF-8 whatever the page's charset.
//!
//! Most pretraining text starts as a Common Crawl WARC full of HTML, and much Chinese HTML
//! is GBK/GB2312 declared only in a `<meta>` tag, or declared wrongly. This source:
//!
//! * reads records with a hand-written, resynchronising reader ([`reader`]): a truncated file,
//!   a corrupt gzip member, garbage between records or a lying `Content-Length` becomes one
//!   bad record (`SourceSink::bad_record`, with its reason) and reading resumes at the next
//!   record;
//! * keeps `response`, `resource` and `conversion` (WET) records, parses HTTP ([`http`]):
//!   status line, headers, chunked transfer-encoding, `Content-Encoding` gzip/deflate/br;
//! * filters by MIME type (default HTML-like) and HTTP status (default 200); filtered
//!   records are counted in `stats.json` (`extra.filtered_mime`, `extra.filtered_status`),
//!   not as bad records, because they are not broken;
//! * decodes the body ([`charset`]): BOM, HTTP charset, `<meta>`, then `chardetng`, with a
//!   plausibility check for lying declarations; GB2312/GBK decode as GB18030;
//! * rejects (port `rejected`) a page whose decoded text has more than
//!   `max_replacement_share` U+FFFD characters (`undecodable`), and a record or page over
//!   `max_record_bytes` (`too_large`, text left empty).
//!
//! WET `conversion` records are UTF-8 plain text by specification and are not subject to the
//! MIME filter. ARC records are mapped to `response` (http URLs) or `resource` records.
//!
//! **Writes.** `id` = `{source}:{file name}:{offset}` (see [`reader::Pos`]: a plain offset,
//! the gzip member offset, or `member+inner` for records inside a multi-record member; the
//! grammar is in [`crate::provenance`]);
//! `text` = the page (HTML) or the WET text; `meta`: `url`, `domain`, `warc_file`,
//! `warc_offset`, `warc_record_id`, `warc_date`, `warc_type`, `content_type` (the payload
//! MIME type), `http_status` (responses), `charset` (the encoding actually used) and
//! `charset_source` (`http`, `meta`, `bom`, `detected`, `utf8_override`, `detected_override`,
//! `detected_over_label`, `default`; see `charset::Evidence`), and, when the response has
//! them, `http_x_robots_tag`, `http_tdm_reservation` and `http_tdm_policy` (the headers
//! `tdm_optout` reads). The runtime adds `input` (the file or URI), `license` and
//! `terms_url` (the source's `license:` and `terms_url:`).
//!
//! **Memory.** One record at a time: at most `max_record_bytes` of block plus its decoded
//! copies (body, decompressed body, UTF-8 text), plus the current batch held by the runtime.
//! Oversized blocks are read and discarded without being stored.
//!
//! ```yaml
//! cc:
//!   kind: ingest_warc
//!   paths: ["samples/warc/*.warc.gz"]
//!   mime_types: [text/html, application/xhtml+xml]
//!   statuses: [200]
//!   max_record_bytes: 10485760
//!   max_replacement_share: 0.05
//! ```

pub mod charset;
pub mod http;
pub mod reader;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::document::Document;
use crate::error::{Error, Result};
use crate::stage::{
    parse_config, BuildCtx, Checks, Kind, Node, Role, Source, SourceSink, StageConfig, OUT_REJECTED,
};

use reader::{Item, Record, RecordReader};

/// Config for `ingest_warc`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Input files or glob patterns (`*.warc.gz`, `*.wet`, `*.arc`), relative to the working
    /// directory. Expanded and sorted; each file is one split. Required.
    pub paths: Vec<String>,
    /// Payload MIME types to keep (lower-case, parameters ignored; `*` keeps everything).
    /// WET `conversion` records are always kept. Default: `text/html`,
    /// `application/xhtml+xml`.
    #[serde(default = "default_mime_types")]
    pub mime_types: Vec<String>,
    /// HTTP status codes to keep for `response` records. Default: `[200]`.
    #[serde(default = "default_statuses")]
    pub statuses: Vec<u16>,
    /// WARC record types turned into documents. Default: `response`, `resource`,
    /// `conversion`.
    #[serde(default = "default_record_types")]
    pub record_types: Vec<String>,
    /// Largest record block and largest decoded page, in bytes. Bigger records are
    /// rejected as `too_large` (never loaded). Default 10485760 (10 MiB).
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: u64,
    /// Largest share (0..1) of U+FFFD replacement characters in the decoded text before the
    /// page is rejected as `undecodable`. Default 0.05.
    #[serde(default = "default_max_replacement_share")]
    pub max_replacement_share: f64,
    /// Value of `Document.source`. Default: the node name.
    #[serde(default)]
    pub source: String,
    /// Licence of this source's documents: an SPDX id (`CC-BY-SA-4.0`) or free text
    /// ("Common Crawl terms of use; page copyright with its owner"). Written to each
    /// document's `meta.license`, to the packed rows' `source_mix` and, as token totals per
    /// licence, to the manifest; checked against `run.allowed_licenses`. Default: none
    /// (counted as `unknown`).
    #[serde(default)]
    pub license: Option<String>,
    /// URL of the terms the licence refers to, written to `meta.terms_url`. Default: none.
    #[serde(default)]
    pub terms_url: Option<String>,
}

fn default_mime_types() -> Vec<String> {
    vec!["text/html".into(), "application/xhtml+xml".into()]
}
fn default_statuses() -> Vec<u16> {
    vec![200]
}
fn default_record_types() -> Vec<String> {
    vec!["response".into(), "resource".into(), "conversion".into()]
}
fn default_max_record_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_max_replacement_share() -> f64 {
    0.05
}

impl StageConfig for Config {
    fn validate(&self, ctx: &BuildCtx) -> Vec<String> {
        let mut c = Checks::new();
        if self.paths.is_empty() {
            c.problem("paths", "at least one file or pattern is required");
        }
        match expand_paths(&self.paths) {
            Ok(files) if files.is_empty() && !self.paths.is_empty() => {
                if !ctx.validate_only {
                    c.problem("paths", format!("no file matches {:?}", self.paths));
                }
            }
            Ok(_) => {}
            Err(e) => c.problem("paths", e),
        }
        c.int_range(
            "max_record_bytes",
            self.max_record_bytes,
            1,
            usize::MAX as u64,
        );
        c.fraction("max_replacement_share", self.max_replacement_share);
        for t in &self.record_types {
            if !matches!(t.as_str(), "response" | "resource" | "conversion") {
                c.problem(
                    "record_types",
                    format!("\"{t}\" is not one of response, resource, conversion"),
                );
            }
        }
        c.into_vec()
    }
}

/// Expand globs; plain paths are kept as is. Sorted and deduplicated. Object-store URLs
/// (`s3://`, `gs://`, `az://`) are listed through [`crate::io::expand_paths`].
pub fn expand_paths(patterns: &[String]) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    for pat in patterns {
        if crate::storage::is_remote(pat) {
            out.extend(
                crate::io::expand_paths(std::slice::from_ref(pat)).map_err(|e| e.to_string())?,
            );
        } else if pat.contains(['*', '?', '[']) {
            let g = glob::glob(pat).map_err(|e| format!("bad pattern {pat:?}: {e}"))?;
            for p in g.flatten() {
                if p.is_file() {
                    out.push(p.to_string_lossy().into_owned());
                }
            }
        } else if Path::new(pat).is_file() {
            out.push(pat.clone());
        } else {
            return Err(format!("file not found: {pat}"));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Counters reported under `extra` in `stats.json`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// Files read.
    pub files: u64,
    /// Records read, by WARC type (`response`, `request`, `warcinfo`, ...).
    pub records: BTreeMap<String, u64>,
    /// Documents emitted on `out`.
    pub emitted: u64,
    /// Records of types not in `record_types`.
    pub skipped_type: u64,
    /// Records dropped by the MIME filter, by MIME type.
    pub filtered_mime: BTreeMap<String, u64>,
    /// Responses dropped by the status filter, by status.
    pub filtered_status: BTreeMap<String, u64>,
    /// Documents rejected, by reason (`too_large`, `undecodable`).
    pub rejected: BTreeMap<String, u64>,
    /// Bad records, by reason.
    pub bad: BTreeMap<String, u64>,
    /// Emitted documents by charset actually used.
    pub charsets: BTreeMap<String, u64>,
    /// WARC records read per input file or URI (every type, broken ones not counted); the
    /// runtime copies each into the manifest's `inputs[].warc_records`.
    pub records_per_file: BTreeMap<String, u64>,
}

/// The `ingest_warc` source.
pub struct IngestWarc {
    cfg: Config,
    source: String,
    mimes: Vec<String>,
    /// Counters.
    pub stats: Stats,
}

/// What became of one record (for tests and stats).
enum Outcome {
    Emit(Document),
    Reject(Document, &'static str, Option<f64>, String),
    Filtered,
    Bad(&'static str, String),
}

fn host_of(url: &str) -> String {
    let after = url.split_once("://").map(|(_, r)| r).unwrap_or("");
    let host = after.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host);
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The MIME type of a Content-Type value: lower-case, without parameters.
fn mime_of(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

impl IngestWarc {
    /// Build from a config; `node` is the default source name.
    pub fn new(cfg: Config, node: &str) -> Self {
        let source = if cfg.source.is_empty() {
            node.to_string()
        } else {
            cfg.source.clone()
        };
        let mimes = cfg
            .mime_types
            .iter()
            .map(|m| m.trim().to_ascii_lowercase())
            .collect();
        IngestWarc {
            cfg,
            source,
            mimes,
            stats: Stats::default(),
        }
    }

    fn mime_ok(&self, mime: &str) -> bool {
        self.mimes.iter().any(|m| m == "*" || m == mime)
    }

    fn convert(&self, rec: Record, file_name: &str) -> Outcome {
        let wtype = rec.warc_type();
        let url = rec
            .header("WARC-Target-URI")
            .unwrap_or("")
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string();
        let pos = rec.pos.to_string();
        let mut doc = Document::new(
            crate::provenance::file_id(&self.source, file_name, &pos),
            self.source.clone(),
            String::new(),
        );
        let m = &mut doc.meta;
        m.insert("warc_file".into(), file_name.to_string());
        m.insert("warc_offset".into(), pos);
        m.insert("warc_type".into(), wtype.clone());
        if let Some(v) = rec.header("WARC-Record-ID") {
            m.insert("warc_record_id".into(), v.trim().to_string());
        }
        if let Some(v) = rec.header("WARC-Date") {
            m.insert("warc_date".into(), v.trim().to_string());
        }
        if !url.is_empty() {
            m.insert("domain".into(), host_of(&url));
            m.insert("url".into(), url.clone());
        }
        let cap = self.cfg.max_record_bytes as usize;
        if rec.too_large {
            let detail = format!(
                "record block of {} bytes > max_record_bytes={cap}",
                rec.declared_len
            );
            return Outcome::Reject(doc, "too_large", Some(rec.declared_len as f64), detail);
        }
        let warc_ct = rec.header("Content-Type").unwrap_or("").to_string();
        // (body bytes, payload content type, is WET text)
        let (body, ct, wet): (Vec<u8>, String, bool) = match wtype.as_str() {
            "conversion" => (
                rec.block,
                if warc_ct.is_empty() {
                    "text/plain".into()
                } else {
                    warc_ct
                },
                true,
            ),
            "response"
                if mime_of(&warc_ct).starts_with("application/http")
                    || rec.block.starts_with(b"HTTP/") =>
            {
                let resp = match http::parse_response(&rec.block) {
                    Ok(r) => r,
                    Err(e) => return Outcome::Bad(e.reason(), format!("{url}: {e:?}")),
                };
                if !self.cfg.statuses.contains(&resp.status) {
                    return Outcome::Filtered;
                }
                doc.meta
                    .insert("http_status".into(), resp.status.to_string());
                // The opt-out headers `tdm_optout` honours (several X-Robots-Tag headers
                // are joined with ", ", as HTTP allows).
                for (name, key) in [
                    ("X-Robots-Tag", "http_x_robots_tag"),
                    ("TDM-Reservation", "http_tdm_reservation"),
                    ("TDM-Policy", "http_tdm_policy"),
                ] {
                    let vals: Vec<&str> = resp.headers_all(name).collect();
                    if !vals.is_empty() {
                        doc.meta.insert(key.into(), vals.join(", "));
                    }
                }
                let ct = resp.header("Content-Type").unwrap_or("").to_string();
                let chunked = resp
                    .header("Transfer-Encoding")
                    .map(|t| t.to_ascii_lowercase().contains("chunked"))
                    .unwrap_or(false);
                let mut body: Vec<u8> = Vec::new();
                let mut dechunked = false;
                if chunked {
                    match http::dechunk(resp.body, cap) {
                        Some(Ok(b)) => {
                            body = b;
                            dechunked = true;
                        }
                        Some(Err(_)) => {
                            let detail = format!("dechunked body > max_record_bytes={cap}");
                            return Outcome::Reject(doc, "too_large", None, detail);
                        }
                        None => {}
                    }
                }
                if !dechunked {
                    body = resp.body.to_vec();
                }
                if let Some(enc) = resp.header("Content-Encoding") {
                    match http::decode_content(&body, enc, cap) {
                        Ok(b) => body = b,
                        Err(http::HttpError::TooLarge) => {
                            let detail = format!(
                                "Content-Encoding {enc} inflates past max_record_bytes={cap}"
                            );
                            return Outcome::Reject(doc, "too_large", None, detail);
                        }
                        Err(e) => return Outcome::Bad(e.reason(), format!("{url}: {e:?}")),
                    }
                }
                (body, ct, false)
            }
            _ => (rec.block, warc_ct, false),
        };
        let mut mime = mime_of(&ct);
        if mime.is_empty() {
            // No declared type: sniff the obvious case so untyped HTML is not lost.
            let head = &body[..body.len().min(512)];
            let t = String::from_utf8_lossy(head)
                .trim_start()
                .to_ascii_lowercase();
            mime = if t.starts_with("<!doctype html") || t.starts_with("<html") {
                "text/html".into()
            } else {
                "application/octet-stream".into()
            };
        }
        if !wet && !self.mime_ok(&mime) {
            return Outcome::Filtered;
        }
        doc.meta.insert("content_type".into(), mime.clone());
        let is_html = mime.contains("html") || mime.contains("xml");
        let dec = if wet {
            let text = String::from_utf8_lossy(&body).into_owned();
            let replacements = text.chars().filter(|&c| c == '\u{FFFD}').count();
            let chars = text.chars().count();
            charset::Decoded {
                text,
                encoding: encoding_rs::UTF_8,
                evidence: charset::Evidence::Default,
                replacements,
                chars,
            }
        } else {
            charset::decode(
                &body,
                Some(ct.as_str()).filter(|c| !c.is_empty()),
                Some(&url),
                is_html,
            )
        };
        doc.meta.insert("charset".into(), dec.charset_name());
        doc.meta
            .insert("charset_source".into(), dec.evidence.as_str().into());
        let share = dec.replacement_share();
        let too_big = dec.text.len() > cap;
        doc.text = dec.text;
        if too_big {
            let n = doc.text.len();
            doc.text.clear();
            return Outcome::Reject(
                doc,
                "too_large",
                Some(n as f64),
                format!("decoded page of {n} bytes > max_record_bytes={cap}"),
            );
        }
        if share > self.cfg.max_replacement_share {
            let detail = format!(
                "{} of {} characters are U+FFFD (charset {})",
                dec.replacements,
                dec.chars,
                dec.encoding.name()
            );
            return Outcome::Reject(doc, "undecodable", Some(share), detail);
        }
        Outcome::Emit(doc)
    }

    /// Read one file, pushing documents, rejects and bad records into `ctx`. An
    /// object-store URL is streamed (one GET, bounded read-ahead), as raw bytes: gzip
    /// members are handled by the record reader exactly as for a local file.
    pub fn read_path(&mut self, split: &str, ctx: &mut dyn SourceSink) -> Result<()> {
        let before: u64 = self.stats.records.values().sum();
        let r = self.read_split(split, ctx);
        let after: u64 = self.stats.records.values().sum();
        *self
            .stats
            .records_per_file
            .entry(split.to_string())
            .or_default() += after - before;
        r
    }

    fn read_split(&mut self, split: &str, ctx: &mut dyn SourceSink) -> Result<()> {
        if crate::storage::is_remote(split) {
            let len = crate::storage::size(split).unwrap_or(0);
            let r = crate::io::CountingReader::new(crate::storage::open(split)?);
            let file_name = split.rsplit('/').next().unwrap_or(split).to_string();
            self.read_from(r, &file_name, ctx)?;
            ctx.bytes_read(len);
            return Ok(());
        }
        let file = std::fs::File::open(split).map_err(|e| Error::io(split, e))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let file_name = Path::new(split)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| split.to_string());
        // The position in the (compressed) file drives the run's progress.
        self.read_from(crate::io::CountingReader::new(file), &file_name, ctx)?;
        ctx.bytes_read(len);
        Ok(())
    }

    /// Read from any reader (used by `read_path`, the tests and the fuzzer).
    pub fn read_from(
        &mut self,
        r: impl std::io::Read,
        file_name: &str,
        ctx: &mut dyn SourceSink,
    ) -> Result<()> {
        self.stats.files += 1;
        let wanted: Vec<&str> = self.cfg.record_types.iter().map(|s| s.as_str()).collect();
        let reader = RecordReader::new(r, self.cfg.max_record_bytes as usize, &wanted)
            .map_err(|e| Error::io(file_name, e))?;
        for item in reader {
            match item {
                Item::Bad {
                    pos,
                    reason,
                    detail,
                } => {
                    *self.stats.bad.entry(reason.to_string()).or_default() += 1;
                    tracing::debug!("{file_name}@{pos}: {reason}: {detail}");
                    ctx.bad_record(&format!("{file_name}@{pos}"), reason)?;
                }
                Item::Record(rec) => {
                    let wtype = rec.warc_type();
                    *self
                        .stats
                        .records
                        .entry(if wtype.is_empty() {
                            "(none)".into()
                        } else {
                            wtype.clone()
                        })
                        .or_default() += 1;
                    if !rec.loaded {
                        self.stats.skipped_type += 1;
                        continue;
                    }
                    let pos = rec.pos;
                    // Remember what the filters looked at, for the counters.
                    let status_hint = if wtype == "response" {
                        peek_status(&rec.block)
                    } else {
                        None
                    };
                    match self.convert(rec, file_name) {
                        Outcome::Emit(doc) => {
                            self.stats.emitted += 1;
                            *self
                                .stats
                                .charsets
                                .entry(doc.meta.get("charset").cloned().unwrap_or_default())
                                .or_default() += 1;
                            ctx.emit(doc)?;
                        }
                        Outcome::Reject(doc, reason, score, detail) => {
                            *self.stats.rejected.entry(reason.to_string()).or_default() += 1;
                            ctx.reject(doc, reason, score, detail)?;
                        }
                        Outcome::Filtered => match status_hint
                            .filter(|s| !self.cfg.statuses.contains(s))
                        {
                            Some(s) => {
                                *self.stats.filtered_status.entry(s.to_string()).or_default() += 1
                            }
                            None => {
                                *self
                                    .stats
                                    .filtered_mime
                                    .entry("other".to_string())
                                    .or_default() += 1
                            }
                        },
                        Outcome::Bad(reason, detail) => {
                            *self.stats.bad.entry(reason.to_string()).or_default() += 1;
                            tracing::debug!("{file_name}@{pos}: {reason}: {detail}");
                            ctx.bad_record(&format!("{file_name}@{pos}"), reason)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn peek_status(block: &[u8]) -> Option<u16> {
    let end = memchr::memchr(b'\n', block).unwrap_or(block.len());
    http::parse_status_line(block[..end].strip_suffix(b"\r").unwrap_or(&block[..end]))
}

impl Source for IngestWarc {
    fn splits(&self) -> Result<Vec<String>> {
        expand_paths(&self.cfg.paths).map_err(Error::msg)
    }
    fn read(&mut self, split: &str, ctx: &mut dyn SourceSink) -> Result<()> {
        self.read_path(split, ctx)
    }
    fn stats(&self) -> Option<serde_json::Value> {
        serde_json::to_value(&self.stats).ok()
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "ingest_warc",
        doc: "Read WARC/WET/ARC files (plain or gzip) into decoded UTF-8 pages, with MIME/status filters.",
        role: Role::Source,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            Ok(Node::Source(Box::new(IngestWarc::new(cfg, &ctx.node))))
        },
    }
}

/// A [`SourceSink`] that collects everything, for tests, benches and the fuzzer.
#[derive(Debug, Default)]
pub struct CollectSink {
    /// Emitted documents.
    pub docs: Vec<Document>,
    /// Rejected documents with their reason.
    pub rejected: Vec<(Document, String)>,
    /// Bad records (location, reason).
    pub bad: Vec<(String, String)>,
    /// Bytes reported.
    pub bytes: u64,
}

impl SourceSink for CollectSink {
    fn emit(&mut self, doc: Document) -> Result<()> {
        self.docs.push(doc);
        Ok(())
    }
    fn reject(
        &mut self,
        doc: Document,
        reason: &str,
        _score: Option<f64>,
        _detail: String,
    ) -> Result<()> {
        self.rejected.push((doc, reason.to_string()));
        Ok(())
    }
    fn bad_record(&mut self, location: &str, reason: &str) -> Result<()> {
        self.bad.push((location.to_string(), reason.to_string()));
        Ok(())
    }
    fn bytes_read(&mut self, n: u64) {
        self.bytes += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        serde_json::from_value(serde_json::json!({"paths": ["x"]})).unwrap()
    }

    fn record(t: &str, uri: &str, ct: &str, body: &[u8]) -> Vec<u8> {
        let mut v = format!("WARC/1.0\r\nWARC-Type: {t}\r\nWARC-Target-URI: {uri}\r\nWARC-Record-ID: <urn:uuid:1>\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        v.extend_from_slice(body);
        v.extend_from_slice(b"\r\n\r\n");
        v
    }

    #[test]
    fn gbk_page_filters_and_lineage() {
        let (page, _, _) = encoding_rs::GBK.encode("<html><head><meta charset=gbk><title>开奖</title></head><body>香港最快开奖现场直播</body></html>");
        let mut resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n".to_vec();
        resp.extend_from_slice(&page);
        let mut f = record(
            "response",
            "http://www.Example.cn/a",
            "application/http; msgtype=response",
            &resp,
        );
        f.extend(record(
            "response",
            "http://x.cn/404",
            "application/http; msgtype=response",
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\r\nnope",
        ));
        f.extend(record(
            "response",
            "http://x.cn/img",
            "application/http; msgtype=response",
            b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\r\n\x89PNG",
        ));
        f.extend(record(
            "request",
            "http://x.cn/",
            "application/http; msgtype=request",
            b"GET / HTTP/1.1\r\n\r\n",
        ));
        f.extend(record(
            "conversion",
            "http://x.cn/wet",
            "text/plain",
            "纯文本".as_bytes(),
        ));
        let mut s = IngestWarc::new(cfg(), "cc");
        let mut sink = CollectSink::default();
        s.read_from(&f[..], "t.warc", &mut sink).unwrap();
        assert_eq!(sink.docs.len(), 2);
        let d = &sink.docs[0];
        assert_eq!(d.id, "cc:t.warc:0");
        assert!(d.text.contains("香港最快开奖现场直播"));
        assert_eq!(d.meta["charset"], "gb18030");
        assert_eq!(d.meta["charset_source"], "meta");
        assert_eq!(d.meta["domain"], "www.example.cn");
        assert_eq!(d.meta["http_status"], "200");
        assert_eq!(sink.docs[1].text, "纯文本");
        assert_eq!(sink.docs[1].meta["warc_type"], "conversion");
        assert_eq!(s.stats.filtered_status["404"], 1);
        assert_eq!(s.stats.filtered_mime["other"], 1);
        assert_eq!(s.stats.skipped_type, 1);
        assert!(sink.bad.is_empty());
    }

    #[test]
    fn too_large_and_undecodable_are_rejected_not_lost() {
        let mut c = cfg();
        c.max_record_bytes = 100;
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n{}",
            "x".repeat(200)
        );
        let f = record("response", "http://a/", "application/http", big.as_bytes());
        let mut s = IngestWarc::new(c, "cc");
        let mut sink = CollectSink::default();
        s.read_from(&f[..], "t.warc", &mut sink).unwrap();
        assert_eq!(sink.rejected.len(), 1);
        assert_eq!(sink.rejected[0].1, "too_large");
        assert_eq!(sink.rejected[0].0.meta["url"], "http://a/");

        let mut junk =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n".to_vec();
        junk.extend((0..400u32).map(|i| (0x80 + (i * 7) % 0x40) as u8));
        let f = record("response", "http://b/", "application/http", &junk);
        let mut s = IngestWarc::new(cfg(), "cc");
        let mut sink = CollectSink::default();
        s.read_from(&f[..], "t.warc", &mut sink).unwrap();
        assert_eq!(sink.rejected.len(), 1, "{:?}", sink.docs);
        assert_eq!(sink.rejected[0].1, "undecodable");
    }

    #[test]
    fn config_validation_reports_all_problems() {
        let ctx = BuildCtx::for_tests("cc", "/tmp/x");
        let v = serde_json::json!({"paths": [], "max_replacement_share": 2.0, "record_types": ["request"]});
        let err = parse_config::<Config>(&v, &ctx).unwrap_err();
        assert_eq!(err.len(), 3, "{err:?}");
        let err =
            parse_config::<Config>(&serde_json::json!({"paths": ["a"], "mime_type": []}), &ctx)
                .unwrap_err();
        assert!(
            err.iter()
                .any(|e| e.contains(r#"unknown field "mime_type" (did you mean "mime_types"?)"#)),
            "{err:?}"
        );
    }
}
