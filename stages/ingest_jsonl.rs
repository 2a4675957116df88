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
//! In a local multi-member `.jsonl.gz` (what `cat a.gz b.gz`, pigz and many crawlers
//! write), a corrupt member does not end the file: the reader scans for the next gzip
//! header after it and resumes there, so every intact later member is read; the loss is
//! one bad record `file.jsonl.gz@<byte offset of the corrupt member>: corrupt gzip member:
//! <error>; resumed at the next member, byte <offset>` (plus a bad line for the line the
//! damage cut, and for each garbled line decoded before the damage was detected); lines
//! decoded before the damage are kept. With no later member (a truncated file) it is the
//! one read error above.
//!
//! * Writes: `id`, `source`, `text`, `lang` (from `lang_field`), `meta`.
//! * Memory: one line at a time (capped by `max_line_bytes`) plus the current batch; a
//!   line of L bytes peaks at 2·L (the line and its unescaped text), and the line buffer
//!   is freed right after parsing when it is over 4 MiB (and given back to the OS when
//!   over 16 MiB), so the document's later stages reuse it. A text over
//!   `run.max_doc_bytes` is never copied whole: the document keeps a 1 KiB prefix and is
//!   rejected `too_large` (score = its size) exactly as the runtime rejects any source's
//!   oversized document, so rejecting a huge line costs the line and, when it has escapes,
//!   the parser's unescape scratch (measured figures: `docs/memory.md`).
//!
//! ```yaml
//! wiki:
//!   kind: ingest_jsonl
//!   paths: [samples/text/*.jsonl]
//!   text_field: text
//!   meta_fields: [url, title]
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::document::Document;
use crate::error::Result;
use crate::io::{check_paths, expand_paths, file_name, open_input};
use crate::stage::{
    parse_config, BuildCtx, Checks, Kind, Node, Role, Source, SourceSink, StageConfig, OUT_REJECTED,
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
        let mut c = Checks::new();
        c.extend(check_paths("paths", &self.paths));
        c.non_empty("text_field", self.text_field.is_empty());
        c.at_least("max_line_bytes", self.max_line_bytes, 1);
        c.into_vec()
    }
}

/// The source.
pub struct IngestJsonl {
    cfg: Config,
    source: String,
    plan: Plan,
    /// `run.max_doc_bytes`: a longer text is never copied whole (see [`keep_text`]).
    max_doc_bytes: u64,
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

/// A line buffer bigger than this is dropped after its line instead of being kept.
const KEEP_LINE_BUF: usize = 4 << 20;

/// Corrupt gzip spans found by a [`GzMembers`] reader, as `(location, reason)` bad records.
type Corrupt = Arc<Mutex<Vec<(String, String)>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A `BufRead` that counts the bytes consumed from it.
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.n += amt as u64;
        self.inner.consume(amt);
    }
}

/// The gzip member header magic: ID1 ID2 CM=deflate.
const GZ_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// The decompressed bytes of a local multi-member `.gz` file, member after member, that
/// survives a corrupt member: on a decoding error it scans the compressed bytes for the
/// next gzip header (`1f 8b 08`) after the failing member's start, records the skipped
/// span (file and byte offset) in `corrupt`, and resumes there; a header found by chance
/// inside compressed data fails to decode and is skipped the same way. A line cut by the
/// corruption is ended with an injected `\n`, so it becomes one bad line of its own and
/// the next member's first line stays whole. With no later header the error is returned
/// (the caller's usual "rest of file skipped"). Memory: two 64 KiB buffers.
struct GzMembers {
    path: String,
    len: u64,
    /// Offset of the current member's header in the file.
    start: u64,
    dec: Option<flate2::bufread::GzDecoder<Counted<BufReader<File>>>>,
    /// A reader waiting to start the next member (held while `dec` is None).
    idle: Option<BufReader<File>>,
    /// The last byte handed out (to end a cut line with `\n`).
    last: u8,
    inject_newline: bool,
    corrupt: Corrupt,
}

impl GzMembers {
    fn open(path: &str, corrupt: Corrupt) -> Result<Self> {
        let f = File::open(path).map_err(|e| crate::error::Error::io(path, e))?;
        let len = f
            .metadata()
            .map_err(|e| crate::error::Error::io(path, e))?
            .len();
        let mut g = GzMembers {
            path: path.to_string(),
            len,
            start: 0,
            dec: None,
            idle: Some(BufReader::with_capacity(1 << 16, f)),
            last: b'\n',
            inject_newline: false,
            corrupt,
        };
        g.start_member(0)
            .map_err(|e| crate::error::Error::io(path, e))?;
        Ok(g)
    }

    /// Begin decoding a member at `pos` (or stop at the end of the file).
    fn start_member(&mut self, pos: u64) -> std::io::Result<()> {
        let Some(mut f) = self.idle.take() else {
            return Ok(());
        };
        if pos >= self.len {
            return Ok(());
        }
        f.seek(SeekFrom::Start(pos))?;
        self.start = pos;
        self.dec = Some(flate2::bufread::GzDecoder::new(Counted { inner: f, n: 0 }));
        Ok(())
    }

    /// The offset of the next gzip header magic at or after `from`, if any.
    fn find_magic(f: &mut BufReader<File>, from: u64) -> std::io::Result<Option<u64>> {
        f.seek(SeekFrom::Start(from))?;
        let mut at = from;
        let mut carry: Vec<u8> = Vec::with_capacity(1 << 16);
        loop {
            let chunk = f.fill_buf()?;
            if chunk.is_empty() {
                return Ok(None);
            }
            let kept = carry.len();
            carry.extend_from_slice(chunk);
            let n = chunk.len();
            f.consume(n);
            if let Some(i) = memchr::memmem::find(&carry, &GZ_MAGIC) {
                return Ok(Some(at - kept as u64 + i as u64));
            }
            at += n as u64;
            // Keep the last two bytes: a magic may straddle two chunks.
            let keep = carry.len().min(GZ_MAGIC.len() - 1);
            carry.drain(..carry.len() - keep);
        }
    }
}

impl Read for GzMembers {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.inject_newline {
                self.inject_newline = false;
                self.last = b'\n';
                buf[0] = b'\n';
                return Ok(1);
            }
            let Some(dec) = self.dec.as_mut() else {
                return Ok(0);
            };
            match dec.read(buf) {
                Ok(0) => {
                    // The member ended cleanly; the next one starts right after it.
                    let Some(d) = self.dec.take() else {
                        return Ok(0);
                    };
                    let c = d.into_inner();
                    let next = self.start + c.n;
                    self.idle = Some(c.inner);
                    if c.n == 0 {
                        return Ok(0);
                    }
                    self.start_member(next)?;
                }
                Ok(k) => {
                    self.last = buf[k - 1];
                    // Progress in the compressed file (see `io::track_input_position`).
                    crate::io::report_input_position(self.start + dec.get_ref().n);
                    return Ok(k);
                }
                Err(e) => {
                    let Some(d) = self.dec.take() else {
                        return Err(e);
                    };
                    let mut f = d.into_inner().inner;
                    let Some(next) = Self::find_magic(&mut f, self.start + 1)? else {
                        // No later member (a truncated file): the caller's read error
                        // ends the file with one bad record, as for any other input.
                        return Err(e);
                    };
                    lock(&self.corrupt).push((
                        format!("{}@{}", self.path, self.start),
                        format!(
                            "corrupt gzip member: {e}; resumed at the next member, byte {next}"
                        ),
                    ));
                    if self.last != b'\n' {
                        self.inject_newline = true;
                    }
                    self.idle = Some(f);
                    self.start_member(next)?;
                }
            }
        }
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

/// Which top-level fields a line's parse keeps. Everything else is skipped without being
/// materialised: the text is unescaped straight into its `String`, the few other wanted
/// fields become small JSON values, and no map of the whole line is built.
struct Plan {
    /// Top-level key holding the text (the first segment of `text_field`).
    text_key: String,
    /// The rest of a dotted `text_field` (`doc.body` → `body`).
    text_rest: Option<String>,
    /// Top-level keys of the other fields read (id, lang, meta).
    keys: Vec<String>,
}

impl Plan {
    fn new(cfg: &Config) -> Plan {
        let (text_key, text_rest) = match cfg.text_field.split_once('.') {
            Some((k, r)) => (k.to_string(), Some(r.to_string())),
            None => (cfg.text_field.clone(), None),
        };
        let mut keys: Vec<String> = Vec::new();
        let fields = cfg
            .id_field
            .iter()
            .chain(cfg.lang_field.iter())
            .chain(cfg.meta_fields.iter());
        for f in fields {
            let k = f.split('.').next().unwrap_or(f).to_string();
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        Plan {
            text_key,
            text_rest,
            keys,
        }
    }
}

/// The text field's value as found.
enum TextSlot {
    Missing,
    Str(String),
    NotStr,
    /// The top-level value of a dotted `text_field`.
    Nested(serde_json::Value),
}

/// One parsed line: the text and the other wanted top-level values (by `Plan::keys` index).
struct Record {
    text: TextSlot,
    values: Vec<Option<serde_json::Value>>,
}

impl Record {
    /// The text, or the bad-record reason.
    fn text(&mut self, plan: &Plan) -> std::result::Result<String, String> {
        let field = match &plan.text_rest {
            Some(r) => format!("{}.{r}", plan.text_key),
            None => plan.text_key.clone(),
        };
        let found = match std::mem::replace(&mut self.text, TextSlot::Missing) {
            TextSlot::Missing => None,
            TextSlot::Str(s) => Some(serde_json::Value::String(s)),
            TextSlot::NotStr => Some(serde_json::Value::Null),
            TextSlot::Nested(mut v) => match &plan.text_rest {
                Some(rest) => take_path(&mut v, rest),
                None => Some(v),
            },
        };
        match found {
            Some(serde_json::Value::String(s)) => Ok(s),
            Some(_) => Err(format!("field `{field}` is not a string")),
            None => Err(format!("missing field `{field}`")),
        }
    }

    /// The value at a (possibly dotted) field path.
    fn get<'a>(&'a self, plan: &Plan, path: &str) -> Option<&'a serde_json::Value> {
        let (k, rest) = match path.split_once('.') {
            Some((k, r)) => (k, Some(r)),
            None => (path, None),
        };
        let i = plan.keys.iter().position(|x| x == k)?;
        let v = self.values[i].as_ref()?;
        match rest {
            Some(r) => get_path(v, r),
            None => Some(v),
        }
    }
}

/// Parse one line, or say why it is a bad record.
fn parse_line(line: &[u8], plan: &Plan) -> std::result::Result<Record, String> {
    // One SIMD validation of the whole line, so the JSON parser need not check every
    // string it reads (the largest single cost of parsing CJK text).
    let s =
        validate_utf8(line).map_err(|at| format!("invalid JSON: invalid UTF-8 at byte {at}"))?;
    let mut de = serde_json::Deserializer::from_str(s);
    let rec = serde::de::DeserializeSeed::deserialize(LineSeed(plan), &mut de)
        .and_then(|r| de.end().map(|_| r))
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => "line is not a JSON object".to_string(),
            _ => format!("invalid JSON: {e}"),
        })?;
    Ok(rec)
}

/// UTF-8 validation with SIMD where the CPU has it (AVX2 is detected at run time; the
/// build targets baseline x86-64). Err gives the length of the valid prefix.
fn validate_utf8(b: &[u8]) -> std::result::Result<&str, usize> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the AVX2 implementation runs only on a CPU that has AVX2.
            return match unsafe { simdutf8::compat::imp::x86::avx2::validate_utf8(b) } {
                // SAFETY: just validated.
                Ok(()) => Ok(unsafe { std::str::from_utf8_unchecked(b) }),
                Err(e) => Err(e.valid_up_to()),
            };
        }
    }
    std::str::from_utf8(b).map_err(|e| e.valid_up_to())
}

struct LineSeed<'p>(&'p Plan);

impl<'de> serde::de::DeserializeSeed<'de> for LineSeed<'_> {
    type Value = Record;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Record, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for LineSeed<'_> {
    type Value = Record;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Record, A::Error> {
        let plan = self.0;
        let mut rec = Record {
            text: TextSlot::Missing,
            values: vec![None; plan.keys.len()],
        };
        while let Some(Key(k)) = map.next_key::<Key>()? {
            if *k == *plan.text_key {
                rec.text = match plan.text_rest {
                    None => match map.next_value::<TextValue>()? {
                        TextValue(Some(s)) => TextSlot::Str(s),
                        TextValue(None) => TextSlot::NotStr,
                    },
                    Some(_) => TextSlot::Nested(map.next_value()?),
                };
                // A field also read for id/lang/meta keeps its own copy.
                if let Some(i) = plan.keys.iter().position(|x| *x == *k) {
                    rec.values[i] = match &rec.text {
                        TextSlot::Str(s) => Some(serde_json::Value::String(s.clone())),
                        TextSlot::Nested(v) => Some(v.clone()),
                        _ => Some(serde_json::Value::Null),
                    };
                }
            } else if let Some(i) = plan.keys.iter().position(|x| *x == *k) {
                rec.values[i] = Some(map.next_value()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(rec)
    }
}

/// An object key, borrowed from the line unless it had escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> std::result::Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Any JSON value, kept only when it is a string (anything else is consumed and dropped).
struct TextValue(Option<String>);

thread_local! {
    /// `run.max_doc_bytes` of the source parsing on this thread.
    static TEXT_LIMIT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    /// Size of the last text found over [`TEXT_LIMIT`] (0 = none).
    static TOO_LARGE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A text string as kept: whole, or only a short prefix when it is over the run's
/// `max_doc_bytes` (the document is rejected `too_large` without a full copy ever made).
fn keep_text(v: &str) -> String {
    let limit = TEXT_LIMIT.with(|l| l.get());
    if v.len() <= limit {
        return v.to_string();
    }
    TOO_LARGE.with(|t| t.set(v.len()));
    let mut cut = v.len().min(1024);
    while !v.is_char_boundary(cut) {
        cut -= 1;
    }
    v[..cut].to_string()
}

impl<'de> Deserialize<'de> for TextValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = TextValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<TextValue, E> {
                Ok(TextValue(Some(keep_text(v))))
            }
            fn visit_bool<E>(self, _: bool) -> std::result::Result<TextValue, E> {
                Ok(TextValue(None))
            }
            fn visit_i64<E>(self, _: i64) -> std::result::Result<TextValue, E> {
                Ok(TextValue(None))
            }
            fn visit_u64<E>(self, _: u64) -> std::result::Result<TextValue, E> {
                Ok(TextValue(None))
            }
            fn visit_f64<E>(self, _: f64) -> std::result::Result<TextValue, E> {
                Ok(TextValue(None))
            }
            fn visit_unit<E>(self) -> std::result::Result<TextValue, E> {
                Ok(TextValue(None))
            }
            fn visit_none<E>(self) -> std::result::Result<TextValue, E> {
                Ok(TextValue(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> std::result::Result<TextValue, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(TextValue(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> std::result::Result<TextValue, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(TextValue(None))
            }
        }
        d.deserialize_any(V)
    }
}

impl Source for IngestJsonl {
    fn splits(&self) -> Result<Vec<String>> {
        expand_paths(&self.cfg.paths)
    }

    fn read(&mut self, split: &str, ctx: &mut dyn SourceSink) -> Result<()> {
        // A local `.gz` resumes after a corrupt member (see `GzMembers`); other inputs
        // (zstd, remote objects) end the file at the first read error.
        let corrupt: Corrupt = Arc::default();
        let mut r: Box<dyn BufRead + Send> =
            if split.ends_with(".gz") && !crate::storage::is_remote(split) {
                Box::new(std::io::BufReader::with_capacity(
                    1 << 16,
                    GzMembers::open(split, corrupt.clone())?,
                ))
            } else {
                open_input(split)?
            };
        let fname = file_name(split).to_string();
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        loop {
            let res = read_capped_line(&mut *r, &mut buf, self.cfg.max_line_bytes);
            for (loc, reason) in std::mem::take(&mut *lock(&corrupt)) {
                ctx.bad_record(&loc, &reason)?;
            }
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
            TEXT_LIMIT.with(|l| l.set(self.max_doc_bytes.try_into().unwrap_or(usize::MAX)));
            let parsed = parse_line(line, &self.plan);
            let too_large = TOO_LARGE.with(|t| t.replace(0));
            if buf.capacity() > KEEP_LINE_BUF {
                // A huge line's buffer (and the parser's scratch, already dropped) is
                // given back before its document moves on (the text is a copy).
                let huge = buf.len() >= crate::stages::normalize::HUGE_DOC_BYTES;
                buf = Vec::new();
                if huge {
                    crate::stages::normalize::release_freed_memory();
                }
            }
            let mut rec = match parsed {
                Ok(r) => r,
                Err(reason) => {
                    ctx.bad_record(&loc(), &reason)?;
                    continue;
                }
            };
            let text = match rec.text(&self.plan) {
                Ok(t) => t,
                Err(reason) => {
                    ctx.bad_record(&loc(), &reason)?;
                    continue;
                }
            };
            let id = match self
                .cfg
                .id_field
                .as_deref()
                .and_then(|f| rec.get(&self.plan, f))
            {
                Some(idv) => crate::provenance::key_id(&self.source, &value_to_string(idv)),
                None => crate::provenance::file_id(&self.source, &fname, line_no),
            };
            let mut doc = Document::new(id, self.source.clone(), text);
            doc.meta.insert("line".into(), line_no.to_string());
            if let Some(lf) = &self.cfg.lang_field {
                doc.lang = rec.get(&self.plan, lf).map(value_to_string);
            }
            for f in &self.cfg.meta_fields {
                if let Some(x) = rec.get(&self.plan, f) {
                    if !x.is_null() {
                        doc.meta.insert(f.clone(), value_to_string(x));
                    }
                }
            }
            if too_large > 0 {
                // The same record the runtime writes for any source (`SourceCtx::emit`).
                let detail = format!(
                    "{too_large} bytes > run.max_doc_bytes ({})",
                    self.max_doc_bytes
                );
                ctx.reject(doc, "too_large", Some(too_large as f64), detail)?;
            } else if doc.text.trim().is_empty() {
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
            let plan = Plan::new(&cfg);
            let max_doc_bytes = ctx.run.max_doc_bytes;
            Ok(Node::Source(Box::new(IngestJsonl {
                cfg,
                source,
                plan,
                max_doc_bytes,
            })))
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

    fn plan(text: &str, id: Option<&str>, meta: &[&str]) -> Plan {
        let mut cfg: Config = serde_json::from_value(serde_json::json!({"paths": ["x"]})).unwrap();
        cfg.text_field = text.into();
        cfg.id_field = id.map(|s| s.into());
        cfg.meta_fields = meta.iter().map(|s| s.to_string()).collect();
        Plan::new(&cfg)
    }

    #[test]
    fn line_parser_keeps_only_wanted_fields_and_names_every_bad_kind() {
        let p = plan("text", Some("id"), &["url", "m.k"]);
        let line = br#"{"id":7,"skip":{"a":[1,2,{"b":null}]},"te\u0078t":"\u4e2d\"x\"","url":"u","m":{"k":true},"text":"last wins"}"#;
        let mut r = parse_line(line, &p).unwrap();
        assert_eq!(r.text(&p).unwrap(), "last wins");
        assert_eq!(r.get(&p, "id"), Some(&serde_json::json!(7)));
        assert_eq!(value_to_string(r.get(&p, "m.k").unwrap()), "true");
        assert_eq!(r.get(&p, "url").and_then(|v| v.as_str()), Some("u"));
        assert_eq!(r.get(&p, "nope"), None);
        let reason = |l: &[u8]| match parse_line(l, &p) {
            Ok(mut r) => r.text(&p).err().unwrap_or_default(),
            Err(e) => e,
        };
        assert_eq!(reason(b"[1,2]"), "line is not a JSON object");
        assert_eq!(reason(br#""str""#), "line is not a JSON object");
        assert!(reason(br#"{"text":"open"#).starts_with("invalid JSON: "));
        assert!(reason(br#"{"text":"a"} x"#).starts_with("invalid JSON: "));
        assert_eq!(
            reason(b"{\"text\":\"\xff\"}"),
            "invalid JSON: invalid UTF-8 at byte 9"
        );
        assert_eq!(reason(br#"{"text":3}"#), "field `text` is not a string");
        assert_eq!(reason(br#"{"text":null}"#), "field `text` is not a string");
        assert_eq!(reason(br#"{"t":"x"}"#), "missing field `text`");
        let nested = plan("doc.body", None, &[]);
        let mut r = parse_line(br#"{"doc":{"body":"b","x":1}}"#, &nested).unwrap();
        assert_eq!(r.text(&nested).unwrap(), "b");
        let mut r = parse_line(br#"{"doc":{"x":1}}"#, &nested).unwrap();
        assert_eq!(r.text(&nested).unwrap_err(), "missing field `doc.body`");
    }

    #[test]
    fn gz_members_resume_after_a_corrupt_member() {
        use std::io::Write;
        let mut file = Vec::new();
        let mut starts = Vec::new();
        for m in 0..4 {
            starts.push(file.len() as u64);
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            for l in 0..2000 {
                writeln!(e, "member {m} line {l} {}", l * 7919 % 10007).unwrap();
            }
            file.extend(e.finish().unwrap());
        }
        let mid = ((starts[1] + starts[2]) / 2) as usize;
        for b in &mut file[mid..mid + 32] {
            *b ^= 0x5a;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl.gz");
        std::fs::write(&path, &file).unwrap();
        let corrupt: Corrupt = Arc::default();
        let mut bytes = Vec::new();
        let mut r =
            BufReader::new(GzMembers::open(path.to_str().unwrap(), corrupt.clone()).unwrap());
        r.read_to_end(&mut bytes).unwrap();
        let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
        for m in [0, 2, 3] {
            for l in 0..2000 {
                let want = format!("member {m} line {l} {}", l * 7919 % 10007);
                assert!(lines.contains(&want.as_bytes()), "{want} lost");
            }
        }
        let events = std::mem::take(&mut *lock(&corrupt));
        assert_eq!(events.len(), 1, "{events:?}");
        let loc = format!("{}@{}", path.display(), starts[1]);
        assert_eq!(events[0].0, loc);
        assert!(
            events[0]
                .1
                .ends_with(&format!("resumed at the next member, byte {}", starts[2])),
            "{events:?}"
        );
    }

    #[test]
    fn dotted_paths() {
        let v: serde_json::Value = serde_json::from_str(r#"{"a":{"b":"中文"},"n":3}"#).unwrap();
        assert_eq!(get_path(&v, "a.b").and_then(|x| x.as_str()), Some("中文"));
        assert_eq!(value_to_string(get_path(&v, "n").unwrap()), "3");
    }
}
