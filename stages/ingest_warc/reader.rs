//! A hand-written streaming reader for WARC 1.0/1.1, WET and legacy ARC files, plain or
//! gzip (one member per record, as Common Crawl writes them, or one member for the whole
//! file, or anything in between).
//!
//! Why not the `warc` crate: it stops at the first malformed record, and real crawls and the
//! warcio edge-case files contain truncated records, corrupt gzip members, lying
//! `Content-Length`s and garbage between records. This reader turns every such problem into
//! an [`Item::Bad`] and **resynchronises**: on a corrupt gzip member it scans the compressed
//! bytes for the next gzip magic, and in the decompressed stream it scans for the next line
//! starting with `WARC/` (or an ARC header line). Every step consumes input, so it cannot
//! loop, and it reads at most [`RecordReader::cap`] bytes of any block into memory; the rest of
//! an oversized block is read and discarded, so a decompression bomb costs CPU, not memory.
//!
//! Record positions ([`Pos`]) are byte offsets usable for lineage: in a plain file the offset
//! of the record; in a gzip file the compressed offset of the member the record starts in
//! (exactly Common Crawl's index offset when each record is its own member), plus the offset
//! inside the member's decompressed data when the record does not start the member.

use std::fmt;
use std::io::{self, BufRead, Read};

use flate2::bufread::GzDecoder;

/// Where a record starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pos {
    /// Offset in an uncompressed file.
    Plain(u64),
    /// Compressed offset of the gzip member, and offset inside its decompressed data.
    Gz {
        /// Compressed offset of the member.
        member: u64,
        /// Decompressed offset within the member.
        inner: u64,
    },
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pos::Plain(n) => write!(f, "{n}"),
            Pos::Gz { member, inner: 0 } => write!(f, "{member}"),
            Pos::Gz { member, inner } => write!(f, "{member}+{inner}"),
        }
    }
}

/// A `BufRead` that counts consumed bytes (the compressed position).
struct Counting<R> {
    inner: io::BufReader<R>,
    pos: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.pos += amt as u64;
        self.inner.consume(amt)
    }
}

enum Src<R: Read> {
    Plain(Counting<R>),
    /// Between members (or before the first).
    GzIdle(Counting<R>),
    GzMember(Box<GzDecoder<Counting<R>>>),
    /// Placeholder while switching states.
    Empty,
}

const GZ_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// The decompressed byte stream with exact positions. Implements `BufRead`.
pub struct ByteStream<R: Read> {
    src: Src<R>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    member: u64,
    inner: u64,
    /// Problems found in the compressed layer since the last call to `take_events`.
    events: Vec<(Pos, &'static str)>,
    eof: bool,
}

impl<R: Read> ByteStream<R> {
    /// Wrap a reader; gzip is detected from the magic bytes.
    pub fn new(r: R) -> io::Result<Self> {
        let mut c = Counting {
            inner: io::BufReader::with_capacity(256 * 1024, r),
            pos: 0,
        };
        let gz = c.fill_buf()?.starts_with(&GZ_MAGIC[..2]);
        Ok(ByteStream {
            src: if gz { Src::GzIdle(c) } else { Src::Plain(c) },
            buf: vec![0; 128 * 1024],
            start: 0,
            end: 0,
            member: 0,
            inner: 0,
            events: Vec::new(),
            eof: false,
        })
    }

    /// Whether the input is gzip.
    pub fn is_gzip(&self) -> bool {
        !matches!(self.src, Src::Plain(_))
    }

    /// Position of the next unconsumed byte.
    pub fn pos(&self) -> Pos {
        match &self.src {
            Src::Plain(_) => Pos::Plain(self.inner),
            _ => Pos::Gz {
                member: self.member,
                inner: self.inner,
            },
        }
    }

    /// Problems in the compressed layer (garbage between members, corrupt members).
    pub fn take_events(&mut self) -> Vec<(Pos, &'static str)> {
        std::mem::take(&mut self.events)
    }

    /// Refill `buf` (only called when it is empty).
    fn refill(&mut self) -> io::Result<()> {
        loop {
            match std::mem::replace(&mut self.src, Src::Empty) {
                Src::Plain(mut c) => {
                    let n = c.read(&mut self.buf)?;
                    self.src = Src::Plain(c);
                    self.start = 0;
                    self.end = n;
                    if n == 0 {
                        self.eof = true;
                    }
                    return Ok(());
                }
                Src::GzMember(mut d) => match d.read(&mut self.buf) {
                    Ok(0) => {
                        self.src = Src::GzIdle(d.into_inner());
                        continue;
                    }
                    Ok(n) => {
                        self.src = Src::GzMember(d);
                        self.start = 0;
                        self.end = n;
                        return Ok(());
                    }
                    Err(e) => {
                        let mut c = d.into_inner();
                        // Guarantee progress: never rescan from the start of the bad member.
                        if c.pos <= self.member {
                            c.consume(1.min(c.fill_buf().map(|b| b.len()).unwrap_or(0)));
                        }
                        self.events.push((self.pos(), "gzip_corrupt_member"));
                        self.src = Src::GzIdle(c);
                        let kind = if e.kind() == io::ErrorKind::UnexpectedEof {
                            io::ErrorKind::UnexpectedEof
                        } else {
                            io::ErrorKind::InvalidData
                        };
                        return Err(io::Error::new(kind, format!("gzip: {e}")));
                    }
                },
                Src::GzIdle(mut c) => {
                    // Find the next member: skip zero padding / whitespace silently, count
                    // anything else as garbage.
                    let mut garbage = false;
                    loop {
                        let b = c.fill_buf()?;
                        if b.is_empty() {
                            break;
                        }
                        if b.len() >= 3 && b[..3] == GZ_MAGIC {
                            break;
                        }
                        if b.len() < 3 && b[0] == 0x1f {
                            // Too short to hold a member: the file ends in a stub.
                            let n = b.len();
                            c.consume(n);
                            garbage = true;
                            continue;
                        }
                        let skip = match memchr::memchr(0x1f, &b[1..]) {
                            Some(i) => i + 1,
                            None => b.len(),
                        };
                        if b[..skip].iter().any(|&x| x != 0 && !x.is_ascii_whitespace()) {
                            garbage = true;
                        }
                        c.consume(skip);
                    }
                    if garbage {
                        self.events.push((Pos::Gz { member: c.pos, inner: 0 }, "gzip_garbage_between_members"));
                    }
                    if c.fill_buf()?.is_empty() {
                        self.src = Src::GzIdle(c);
                        self.start = 0;
                        self.end = 0;
                        self.eof = true;
                        return Ok(());
                    }
                    self.member = c.pos;
                    self.inner = 0;
                    self.src = Src::GzMember(Box::new(GzDecoder::new(c)));
                    continue;
                }
                Src::Empty => {
                    self.eof = true;
                    return Ok(());
                }
            }
        }
    }
}

impl<R: Read> Read for ByteStream<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let b = self.fill_buf()?;
        let n = b.len().min(out.len());
        out[..n].copy_from_slice(&b[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for ByteStream<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start >= self.end && !self.eof {
            self.refill()?;
        }
        Ok(&self.buf[self.start..self.end])
    }
    fn consume(&mut self, amt: usize) {
        let amt = amt.min(self.end - self.start);
        self.start += amt;
        self.inner += amt as u64;
    }
}

/// File format of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// WARC (and WET/WAT, which are WARC files).
    Warc,
    /// Legacy Internet Archive ARC (version 1 header lines).
    Arc,
}

/// One record. For ARC records, the headers are synthesized as WARC headers
/// (`WARC-Type`, `WARC-Target-URI`, `WARC-Date`, `Content-Type`).
#[derive(Debug, Clone)]
pub struct Record {
    /// Where it starts.
    pub pos: Pos,
    /// WARC or ARC.
    pub format: Format,
    /// The WARC version line (`WARC/1.0`) or `ARC`.
    pub version: String,
    /// Header fields in order.
    pub headers: Vec<(String, String)>,
    /// Declared block length.
    pub declared_len: u64,
    /// The block, if its type was wanted and it fits the cap (else empty).
    pub block: Vec<u8>,
    /// The block was wanted but is longer than the cap; `block` is empty.
    pub too_large: bool,
    /// The block was read (its type was wanted).
    pub loaded: bool,
}

impl Record {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// `WARC-Type`, lower-case (`response`, `conversion`, …).
    pub fn warc_type(&self) -> String {
        self.header("WARC-Type").unwrap_or("").trim().to_ascii_lowercase()
    }
}

/// What the reader yields.
#[derive(Debug)]
pub enum Item {
    /// A record.
    Record(Record),
    /// Something that could not be read, with a machine-readable reason.
    Bad {
        /// Where the problem was found.
        pos: Pos,
        /// Machine-readable reason, e.g. `truncated`, `content_length_mismatch`.
        reason: &'static str,
        /// Human-readable detail.
        detail: String,
    },
}

/// Longest header line kept; longer lines are consumed and cut.
const MAX_LINE: usize = 64 * 1024;
/// Most header lines in one WARC record.
const MAX_HEADERS: usize = 1000;

/// Streaming record reader. Iterate it to get [`Item`]s.
pub struct RecordReader<R: Read> {
    stream: ByteStream<R>,
    /// Largest block read into memory, in bytes.
    pub cap: usize,
    wanted: Vec<String>,
    pending: Option<(Pos, Vec<u8>)>,
    format: Option<Format>,
    queue: std::collections::VecDeque<Item>,
    done: bool,
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| b.is_ascii_whitespace())
}

fn is_warc_line(line: &[u8]) -> bool {
    line.starts_with(b"WARC/")
}

/// An ARC v1 header line: `URL IP DATE CONTENT-TYPE LENGTH` (the URL may contain spaces).
fn parse_arc_header(line: &[u8]) -> Option<(String, String, String, Option<u64>)> {
    let s = std::str::from_utf8(line).ok()?.trim();
    let parts: Vec<&str> = s.split_ascii_whitespace().collect();
    if parts.len() < 5 {
        return None;
    }
    let n = parts.len();
    let date = parts[n - 3];
    if date.len() < 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let url = parts[..n - 4].join(" ");
    if !(url.contains("://") || url.starts_with("filedesc:") || url.starts_with("dns:")) {
        return None;
    }
    Some((url, date.to_string(), parts[n - 2].to_string(), parts[n - 1].parse().ok()))
}

/// `20140216050221` → `2014-02-16T05:02:21Z` (best effort).
fn arc_date_to_iso(d: &str) -> String {
    if d.len() >= 14 {
        format!("{}-{}-{}T{}:{}:{}Z", &d[0..4], &d[4..6], &d[6..8], &d[8..10], &d[10..12], &d[12..14])
    } else {
        d.to_string()
    }
}

impl<R: Read> RecordReader<R> {
    /// A reader that loads blocks of the `wanted` WARC types (lower-case) up to `cap` bytes.
    pub fn new(r: R, cap: usize, wanted: &[&str]) -> io::Result<Self> {
        Ok(RecordReader {
            stream: ByteStream::new(r)?,
            cap,
            wanted: wanted.iter().map(|s| s.to_string()).collect(),
            pending: None,
            format: None,
            queue: Default::default(),
            done: false,
        })
    }

    /// Whether the input is gzip.
    pub fn is_gzip(&self) -> bool {
        self.stream.is_gzip()
    }

    fn flush_events(&mut self) {
        for (pos, reason) in self.stream.take_events() {
            if reason != "gzip_corrupt_member" {
                // Corrupt members surface as an I/O error on the record being read.
                self.queue.push_back(Item::Bad {
                    pos,
                    reason,
                    detail: "non-gzip bytes between gzip members".into(),
                });
            }
        }
    }

    /// Read one line (with its terminator stripped) into `out`, capped at [`MAX_LINE`].
    /// Returns `Ok(false)` at end of input.
    fn read_line(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        out.clear();
        let mut any = false;
        loop {
            let (done, used) = {
                let b = self.stream.fill_buf()?;
                if b.is_empty() {
                    break;
                }
                any = true;
                match memchr::memchr(b'\n', b) {
                    Some(i) => {
                        let room = MAX_LINE.saturating_sub(out.len());
                        out.extend_from_slice(&b[..i.min(room)]);
                        (true, i + 1)
                    }
                    None => {
                        let room = MAX_LINE.saturating_sub(out.len());
                        out.extend_from_slice(&b[..b.len().min(room)]);
                        (false, b.len())
                    }
                }
            };
            self.stream.consume(used);
            if done {
                break;
            }
        }
        if out.last() == Some(&b'\r') {
            out.pop();
        }
        Ok(any)
    }

    /// Next line with its start position, honouring a pushed-back line.
    fn next_line(&mut self) -> io::Result<Option<(Pos, Vec<u8>)>> {
        if let Some(p) = self.pending.take() {
            return Ok(Some(p));
        }
        let pos = self.stream.pos();
        let mut line = Vec::new();
        if self.read_line(&mut line)? {
            Ok(Some((pos, line)))
        } else {
            Ok(None)
        }
    }

    fn is_record_start(&self, line: &[u8]) -> bool {
        is_warc_line(line) || (self.format != Some(Format::Warc) && parse_arc_header(line).is_some())
    }

    /// Skip lines until one that starts a record (pushed back) or the end.
    fn resync(&mut self) -> io::Result<()> {
        loop {
            match self.next_line()? {
                None => return Ok(()),
                Some((pos, line)) => {
                    if self.is_record_start(&line) {
                        self.pending = Some((pos, line));
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Read `len` bytes: into a Vec if `keep` (never more than `cap`), else discarded.
    /// Returns (bytes, bytes actually available) — fewer than `len` means truncation.
    fn read_block(&mut self, len: u64, keep: bool) -> io::Result<(Vec<u8>, u64)> {
        let mut got = 0u64;
        let mut block = Vec::new();
        while got < len {
            let used = {
                let b = self.stream.fill_buf()?;
                if b.is_empty() {
                    break;
                }
                let n = (b.len() as u64).min(len - got) as usize;
                if keep && block.len() < self.cap {
                    let room = self.cap - block.len();
                    block.extend_from_slice(&b[..n.min(room)]);
                }
                n
            };
            self.stream.consume(used);
            got += used as u64;
        }
        Ok((block, got))
    }

    fn io_bad(&mut self, pos: Pos, e: io::Error) -> Item {
        self.flush_events();
        let reason = if e.kind() == io::ErrorKind::UnexpectedEof {
            "gzip_truncated"
        } else {
            "gzip_corrupt"
        };
        Item::Bad {
            pos,
            reason,
            detail: e.to_string(),
        }
    }

    fn read_item(&mut self) -> io::Result<Option<Item>> {
        // 1. First non-blank line.
        let (pos, first) = loop {
            match self.next_line()? {
                None => return Ok(None),
                Some((p, l)) if !is_blank(&l) => break (p, l),
                Some(_) => continue,
            }
        };
        if is_warc_line(&first) {
            self.format.get_or_insert(Format::Warc);
            return self.read_warc(pos, first).map(Some);
        }
        if let Some(arc) = parse_arc_header(&first).filter(|_| self.format != Some(Format::Warc)) {
            self.format.get_or_insert(Format::Arc);
            return self.read_arc(pos, arc).map(Some);
        }
        let preview = String::from_utf8_lossy(&first[..first.len().min(60)]).into_owned();
        self.resync()?;
        Ok(Some(Item::Bad {
            pos,
            reason: "garbage",
            detail: format!("expected a WARC/ARC record header, found {preview:?}"),
        }))
    }

    fn read_warc(&mut self, pos: Pos, version: Vec<u8>) -> io::Result<Item> {
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut line = Vec::new();
        loop {
            let lpos = self.stream.pos();
            if !self.read_line(&mut line)? {
                return Ok(Item::Bad {
                    pos,
                    reason: "truncated",
                    detail: "end of input inside the WARC header".into(),
                });
            }
            if line.is_empty() {
                break;
            }
            if headers.len() >= MAX_HEADERS {
                self.resync()?;
                return Ok(Item::Bad {
                    pos,
                    reason: "header_too_long",
                    detail: format!("more than {MAX_HEADERS} header lines"),
                });
            }
            if matches!(line[0], b' ' | b'\t') {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(String::from_utf8_lossy(&line).trim());
                }
                continue;
            }
            if is_warc_line(&line) {
                // A new record starts inside this header: the previous one was cut.
                self.pending = Some((lpos, std::mem::take(&mut line)));
                return Ok(Item::Bad {
                    pos,
                    reason: "truncated",
                    detail: "WARC header interrupted by another record".into(),
                });
            }
            match memchr::memchr(b':', &line) {
                Some(c) => headers.push((
                    String::from_utf8_lossy(&line[..c]).trim().to_string(),
                    String::from_utf8_lossy(&line[c + 1..]).trim().to_string(),
                )),
                None => {
                    let preview = String::from_utf8_lossy(&line[..line.len().min(60)]).into_owned();
                    self.resync()?;
                    return Ok(Item::Bad {
                        pos,
                        reason: "bad_header",
                        detail: format!("WARC header line without a colon: {preview:?}"),
                    });
                }
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
            .and_then(|(_, v)| v.trim().parse::<u64>().ok());
        let Some(len) = len else {
            self.resync()?;
            return Ok(Item::Bad {
                pos,
                reason: "no_content_length",
                detail: "missing or invalid Content-Length".into(),
            });
        };
        let wtype = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("WARC-Type"))
            .map(|(_, v)| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let version = String::from_utf8_lossy(&version).trim().to_string();
        let rec = Record {
            pos,
            format: Format::Warc,
            version,
            headers,
            declared_len: len,
            block: Vec::new(),
            too_large: false,
            loaded: false,
        };
        self.finish_record(rec, &wtype)
    }

    fn read_arc(&mut self, pos: Pos, arc: (String, String, String, Option<u64>)) -> io::Result<Item> {
        let (url, date, ctype, len) = arc;
        let Some(len) = len else {
            self.resync()?;
            return Ok(Item::Bad {
                pos,
                reason: "arc_bad_length",
                detail: format!("ARC header for {url} has no valid length"),
            });
        };
        let wtype = if url.starts_with("filedesc:") {
            "warcinfo"
        } else if url.starts_with("http") {
            "response"
        } else {
            "resource"
        };
        let mut headers = vec![
            ("WARC-Type".to_string(), wtype.to_string()),
            ("WARC-Target-URI".to_string(), url),
            ("WARC-Date".to_string(), arc_date_to_iso(&date)),
            ("ARC-Content-Type".to_string(), ctype.clone()),
        ];
        headers.push((
            "Content-Type".to_string(),
            if wtype == "response" {
                "application/http; msgtype=response".to_string()
            } else {
                ctype
            },
        ));
        let rec = Record {
            pos,
            format: Format::Arc,
            version: "ARC".into(),
            headers,
            declared_len: len,
            block: Vec::new(),
            too_large: false,
            loaded: false,
        };
        self.finish_record(rec, wtype)
    }

    /// Read the block and check that the record ends where its length says.
    fn finish_record(&mut self, mut rec: Record, wtype: &str) -> io::Result<Item> {
        let keep = self.wanted.iter().any(|w| w == wtype);
        let (block, got) = self.read_block(rec.declared_len, keep)?;
        if got < rec.declared_len {
            return Ok(Item::Bad {
                pos: rec.pos,
                reason: "truncated",
                detail: format!(
                    "{} record for {} ends after {got} of {} bytes",
                    wtype,
                    rec.header("WARC-Target-URI").unwrap_or("?"),
                    rec.declared_len
                ),
            });
        }
        rec.loaded = keep;
        if keep && rec.declared_len > self.cap as u64 {
            rec.too_large = true;
        } else {
            rec.block = block;
        }
        // The record must be followed by blank lines and then a record header or the end.
        loop {
            match self.next_line()? {
                None => break,
                Some((_, l)) if is_blank(&l) => continue,
                Some((p, l)) => {
                    if self.is_record_start(&l) {
                        self.pending = Some((p, l));
                        break;
                    }
                    self.resync()?;
                    return Ok(Item::Bad {
                        pos: rec.pos,
                        reason: "content_length_mismatch",
                        detail: format!(
                            "{} record for {}: Content-Length {} is not followed by the next record",
                            wtype,
                            rec.header("WARC-Target-URI").unwrap_or("?"),
                            rec.declared_len
                        ),
                    });
                }
            }
        }
        Ok(Item::Record(rec))
    }
}

impl<R: Read> Iterator for RecordReader<R> {
    type Item = Item;
    fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(it) = self.queue.pop_front() {
                return Some(it);
            }
            if self.done {
                return None;
            }
            let pos = self.stream.pos();
            match self.read_item() {
                Ok(Some(it)) => {
                    self.flush_events();
                    self.queue.push_back(it);
                }
                Ok(None) => {
                    self.flush_events();
                    self.done = true;
                }
                Err(e) => {
                    let is_gz = self.stream.is_gzip();
                    let bad = self.io_bad(pos, e);
                    self.queue.push_back(bad);
                    self.pending = None;
                    if !is_gz {
                        // A plain file that fails to read will not get better.
                        self.done = true;
                    } else if let Err(e2) = self.resync() {
                        let bad = self.io_bad(self.stream.pos(), e2);
                        self.queue.push_back(bad);
                        // Each error consumed input; keep going until the end.
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn warc_record(t: &str, uri: &str, body: &[u8]) -> Vec<u8> {
        let mut v = format!(
            "WARC/1.1\r\nWARC-Type: {t}\r\nWARC-Target-URI: {uri}\r\nContent-Type: application/http; msgtype=response\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        v.extend_from_slice(body);
        v.extend_from_slice(b"\r\n\r\n");
        v
    }

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn summarize(items: Vec<Item>) -> Vec<String> {
        items
            .into_iter()
            .map(|i| match i {
                Item::Record(r) => format!("{}@{}:{}", r.warc_type(), r.pos, r.block.len()),
                Item::Bad { pos, reason, .. } => format!("bad:{reason}@{pos}"),
            })
            .collect()
    }

    #[test]
    fn plain_records_and_positions() {
        let a = warc_record("response", "http://a/", b"HTTP/1.1 200 OK\r\n\r\nhi");
        let b = warc_record("request", "http://a/", b"GET / HTTP/1.1\r\n\r\n");
        let mut all = a.clone();
        all.extend_from_slice(&b);
        let r = RecordReader::new(&all[..], 1 << 20, &["response"]).unwrap();
        assert_eq!(summarize(r.collect()), vec!["response@0:23".to_string(), format!("request@{}:0", a.len())]);
    }

    #[test]
    fn per_record_gzip_and_corrupt_member_resumes() {
        let a = gz(&warc_record("response", "http://a/", b"HTTP/1.1 200 OK\r\n\r\nA"));
        let b = gz(&warc_record("response", "http://b/", b"HTTP/1.1 200 OK\r\n\r\nB"));
        let c = gz(&warc_record("response", "http://c/", b"HTTP/1.1 200 OK\r\n\r\nC"));
        let mut bad = b.clone();
        let mid = bad.len() / 2;
        for x in &mut bad[12..mid] {
            *x ^= 0x5a;
        }
        let mut all = a.clone();
        all.extend_from_slice(&bad);
        all.extend_from_slice(&c);
        let items: Vec<Item> = RecordReader::new(&all[..], 1 << 20, &["response"]).unwrap().collect();
        let s = summarize(items);
        assert_eq!(s.first().unwrap(), "response@0:22");
        assert_eq!(s.last().unwrap(), &format!("response@{}:22", a.len() + bad.len()));
        assert!(s.iter().any(|x| x.starts_with("bad:gzip")), "{s:?}");
    }

    #[test]
    fn whole_file_gzip_positions_are_member_plus_inner() {
        let a = warc_record("response", "http://a/", b"HTTP/1.1 200 OK\r\n\r\nA");
        let b = warc_record("response", "http://b/", b"HTTP/1.1 200 OK\r\n\r\nB");
        let mut all = a.clone();
        all.extend_from_slice(&b);
        let z = gz(&all);
        let s = summarize(RecordReader::new(&z[..], 1 << 20, &["response"]).unwrap().collect());
        assert_eq!(s, vec!["response@0:22".to_string(), format!("response@0+{}:22", a.len())]);
    }

    #[test]
    fn truncated_and_length_mismatch() {
        let a = warc_record("response", "http://a/", b"HTTP/1.1 200 OK\r\n\r\nhello");
        let cut = &a[..a.len() - 8];
        let s = summarize(RecordReader::new(cut, 1 << 20, &["response"]).unwrap().collect());
        assert_eq!(s, vec!["bad:truncated@0"]);
        // Content-Length too short: the record is bad, the next one is still read.
        let mut lying = String::from_utf8(a.clone()).unwrap().replace("Content-Length: 24", "Content-Length: 20").into_bytes();
        let off = lying.len();
        lying.extend_from_slice(&a);
        let s = summarize(RecordReader::new(&lying[..], 1 << 20, &["response"]).unwrap().collect());
        assert_eq!(s, vec!["bad:content_length_mismatch@0".to_string(), format!("response@{off}:24")]);
    }

    #[test]
    fn cap_limits_memory_and_flags_too_large() {
        let big = vec![b'x'; 5000];
        let a = warc_record("response", "http://a/", &big);
        let items: Vec<Item> = RecordReader::new(&a[..], 1000, &["response"]).unwrap().collect();
        match &items[0] {
            Item::Record(r) => assert!(r.too_large && r.block.is_empty() && r.declared_len == 5000),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_never_loops() {
        for junk in [&b""[..], b"\n\n\n", b"garbage\nmore", b"\x1f\x8b", b"\x1f\x8b\x08\x00garbage", b"WARC/1.0\r\n", b"WARC/1.0\r\nContent-Length: 99999999999\r\n\r\nx"] {
            let n = RecordReader::new(junk, 1000, &["response"]).unwrap().take(100).count();
            assert!(n < 100);
        }
    }

    #[test]
    fn arc_headers() {
        assert_eq!(
            parse_arc_header(b"http://example.com/a b 93.184.216.119 20140216050221 text/html 1591"),
            Some(("http://example.com/a b".into(), "20140216050221".into(), "text/html".into(), Some(1591)))
        );
        assert_eq!(parse_arc_header(b"1 0 LiveWeb Capture"), None);
        assert_eq!(arc_date_to_iso("20140216050221"), "2014-02-16T05:02:21Z");
    }
}
