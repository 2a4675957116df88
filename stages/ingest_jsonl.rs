//! `ingest_jsonl`: read documents from JSON Lines files (`.jsonl`, `.jsonl.gz`, `.jsonl.zst`).
//!
//! Each line is one JSON object. The text comes from `text_field`; the id from `id_field`
//! when set, otherwise it is derived from the source name, file name and line number
//! (`<source>:<file>:<line>`), so ids are stable and never random. `meta_fields` are copied
//! into `meta` (strings as-is, other JSON values serialized).
//!
//! Bad input never stops the run: a line that is not valid JSON, not an object, lacks the
//! text field, holds invalid UTF-8 or exceeds `max_line_bytes` is a *bad record*, counted
//! and logged with `file:line` and its reason, up to the run's `max_bad_records` budget.
//! A document whose text is empty goes to `rejected` with reason `empty`. A truncated
//! compressed file ends that file with one bad record; the run goes on with the next file.
//!
//! * Writes: `id`, `source`, `text`, `lang` (from `lang_field`), `meta`.
//! * Memory: one line at a time (capped by `max_line_bytes`) plus the current batch.
//!
//! ```yaml
//! wiki:
//!   kind: ingest_jsonl
//!   paths: [samples/text/*.jsonl]
//!   text_field: text
//!   meta_fields: [url, title]
//! ```

use std::io::{BufRead, Read};

use serde::{Deserialize, Serialize};

use crate::document::Document;
use crate::error::Result;
use crate::io::{check_paths, expand_paths, file_name, open_input};
use crate::stage::{
    parse_config, BuildCtx, Kind, Node, Role, Source, SourceSink, StageConfig, OUT_REJECTED,
};

/// Config for `ingest_jsonl`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Input files or globs. Required.
    pub paths: Vec<String>,
    /// Field holding the text (a dotted path such as `doc.body` reaches nested objects). Default `text`.
    #[serde(default = "default_text")]
    pub text_field: String,
    /// Field holding a document id. Default: none (ids are `<source>:<file>:<line>`).
    #[serde(default)]
    pub id_field: Option<String>,
    /// Field holding a language code, copied to `lang`. Default: none.
    #[serde(default)]
    pub lang_field: Option<String>,
    /// Fields copied into `meta`. Default `[url]`.
    #[serde(default = "default_meta")]
    pub meta_fields: Vec<String>,
    /// Source name written on each document. Default: the node name.
    #[serde(default)]
    pub source: Option<String>,
    /// Lines longer than this many bytes are bad records. Default 64 MiB.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: usize,
}

fn default_text() -> String {
    "text".into()
}
fn default_meta() -> Vec<String> {
    vec!["url".into()]
}
fn default_max_line() -> usize {
    64 << 20
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        let mut p = check_paths("paths", &self.paths);
        if self.text_field.is_empty() {
            p.push("bad value: text_field must not be empty".into());
        }
        p
    }
}

/// The source.
pub struct IngestJsonl {
    cfg: Config,
    source: String,
}

/// Look up a dotted path in a JSON value.
pub fn get_path<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// Remove and return the value at a dotted path (moves the text instead of copying it).
pub fn take_path(v: &mut serde_json::Value, path: &str) -> Option<serde_json::Value> {
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (
            p.split('.')
                .try_fold(&mut *v, |cur, part| cur.get_mut(part))?,
            l,
        ),
        None => (v, path),
    };
    parent.as_object_mut()?.remove(last)
}

/// A JSON value as a meta string.
pub fn value_to_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Read one line of at most `max` bytes into `buf`. Returns Ok(None) at EOF,
/// Ok(Some(false)) for a line that was too long (and was skipped to its end).
fn read_capped_line(
    r: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let n = (&mut *r).take(max as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.len() > max && buf.last() != Some(&b'\n') {
        // Skip the rest of the over-long line without holding it.
        loop {
            let avail = r.fill_buf()?;
            if avail.is_empty() {
                break;
            }
            match avail.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    r.consume(i + 1);
                    break;
                }
                None => {
                    let l = avail.len();
                    r.consume(l);
                }
            }
        }
        return Ok(Some(false));
    }
    Ok(Some(true))
}

impl Source for IngestJsonl {
    fn splits(&self) -> Result<Vec<String>> {
        expand_paths(&self.cfg.paths)
    }

    fn read(&mut self, split: &str, ctx: &mut dyn SourceSink) -> Result<()> {
        let mut r = open_input(split)?;
        let fname = file_name(split).to_string();
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        loop {
            let res = read_capped_line(&mut *r, &mut buf, self.cfg.max_line_bytes);
            let ok = match res {
                Ok(None) => break,
                Ok(Some(ok)) => ok,
                Err(e) => {
                    ctx.bad_record(
                        &format!("{split}:{}", line_no + 1),
                        &format!("read error, rest of file skipped: {e}"),
                    )?;
                    break;
                }
            };
            line_no += 1;
            ctx.bytes_read(buf.len() as u64);
            let loc = || format!("{split}:{line_no}");
            if !ok {
                ctx.bad_record(
                    &loc(),
                    &format!(
                        "line longer than max_line_bytes ({})",
                        self.cfg.max_line_bytes
                    ),
                )?;
                continue;
            }
            let line = trim_ascii(&buf);
            if line.is_empty() {
                continue;
            }
            let mut v: serde_json::Value = match serde_json::from_slice(line) {
                Ok(v) => v,
                Err(e) => {
                    ctx.bad_record(&loc(), &format!("invalid JSON: {e}"))?;
                    continue;
                }
            };
            if !v.is_object() {
                ctx.bad_record(&loc(), "line is not a JSON object")?;
                continue;
            }
            let text = match take_path(&mut v, &self.cfg.text_field) {
                Some(serde_json::Value::String(s)) => s,
                Some(_) => {
                    ctx.bad_record(
                        &loc(),
                        &format!("field `{}` is not a string", self.cfg.text_field),
                    )?;
                    continue;
                }
                None => {
                    ctx.bad_record(&loc(), &format!("missing field `{}`", self.cfg.text_field))?;
                    continue;
                }
            };
            let id = match self.cfg.id_field.as_deref().and_then(|f| get_path(&v, f)) {
                Some(idv) => format!("{}:{}", self.source, value_to_string(idv)),
                None => format!("{}:{}:{}", self.source, fname, line_no),
            };
            let mut doc = Document::new(id, self.source.clone(), text);
            if let Some(lf) = &self.cfg.lang_field {
                doc.lang = get_path(&v, lf).map(value_to_string);
            }
            for f in &self.cfg.meta_fields {
                if let Some(x) = get_path(&v, f) {
                    if !x.is_null() {
                        doc.meta.insert(f.clone(), value_to_string(x));
                    }
                }
            }
            if doc.text.trim().is_empty() {
                ctx.reject(doc, "empty", None, format!("{}:{line_no}", fname))?;
            } else {
                ctx.emit(doc)?;
            }
        }
        Ok(())
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map(|i| i + 1)
        .unwrap_or(start);
    &b[start..end.max(start)]
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "ingest_jsonl",
        doc: "Read documents from JSON Lines files (.jsonl, .jsonl.gz, .jsonl.zst); bad lines are counted, not fatal.",
        role: Role::Source,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            let source = cfg.source.clone().unwrap_or_else(|| ctx.node.clone());
            Ok(Node::Source(Box::new(IngestJsonl { cfg, source })))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn capped_line_skips_long_lines_and_resyncs() {
        let data = b"short\nthis line is much too long\nok\n".to_vec();
        let mut r = Cursor::new(data);
        let mut buf = Vec::new();
        assert_eq!(read_capped_line(&mut r, &mut buf, 10).unwrap(), Some(true));
        assert_eq!(buf, b"short\n");
        assert_eq!(read_capped_line(&mut r, &mut buf, 10).unwrap(), Some(false));
        assert_eq!(read_capped_line(&mut r, &mut buf, 10).unwrap(), Some(true));
        assert_eq!(buf, b"ok\n");
        assert_eq!(read_capped_line(&mut r, &mut buf, 10).unwrap(), None);
    }

    #[test]
    fn dotted_paths() {
        let v: serde_json::Value = serde_json::from_str(r#"{"a":{"b":"中文"},"n":3}"#).unwrap();
        assert_eq!(get_path(&v, "a.b").and_then(|x| x.as_str()), Some("中文"));
        assert_eq!(value_to_string(get_path(&v, "n").unwrap()), "3");
    }
}
