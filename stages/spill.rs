//! Spill files and a seeded PRNG, shared by the stateful stages that must see a whole
//! stream before they can emit (`mix` needs token totals, `pack` shuffles globally).
//!
//! Not a stage kind. A spill file is a private scratch file under `BuildCtx::scratch_dir`:
//! an 8-byte magic + version header (`SLSPILL1`), then length-prefixed records, each one
//! [`Document`] in a compact little-endian binary form (strings as `u32` length + UTF-8,
//! token ids as raw `u32`). Writing and reading are sequential and buffered (64 KiB), so
//! memory stays at the buffer size whatever the file size. Rejection info is not spilled:
//! rejected documents never enter these stages' state.
//!
//! [`SplitMix64`] is the PRNG behind every seeded choice (bucket assignment, Fisher-Yates,
//! interleaving). It is tiny, fast, has a fixed, documented output for a given seed on every
//! platform, and so keeps outputs byte-identical across machines and versions of `rand`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::document::{Document, Packed};
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"SLSPILL1";
const BUF: usize = 1 << 16;

/// A seeded SplitMix64 generator (Steele, Lea & Flood 2014).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed; `stream` separates independent uses of one seed.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut g = SplitMix64(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        g.next_u64();
        g
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`), by Lemire's multiply-shift (bias < n / 2^64).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Fisher-Yates shuffle in place.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// Buffered writer of a spill file.
pub struct SpillWriter {
    path: PathBuf,
    w: BufWriter<File>,
    buf: Vec<u8>,
    /// Records written.
    pub records: u64,
    /// Bytes written (header included).
    pub bytes: u64,
}

impl SpillWriter {
    /// Create (truncate) a spill file, creating parent directories.
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
        }
        let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = BufWriter::with_capacity(BUF, f);
        w.write_all(MAGIC).map_err(|e| Error::io(&path, e))?;
        Ok(SpillWriter {
            path,
            w,
            buf: Vec::new(),
            records: 0,
            bytes: MAGIC.len() as u64,
        })
    }
    /// Append one document.
    pub fn write(&mut self, doc: &Document) -> Result<()> {
        self.buf.clear();
        encode(doc, &mut self.buf);
        let len = self.buf.len() as u32;
        self.w
            .write_all(&len.to_le_bytes())
            .and_then(|_| self.w.write_all(&self.buf))
            .map_err(|e| Error::io(&self.path, e))?;
        self.records += 1;
        self.bytes += 4 + self.buf.len() as u64;
        // Do not keep a huge record's buffer: many writers are open at once (the pack
        // shuffle's 64), and 1M-token sequences are 4 MB each.
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
        Ok(())
    }
    /// Flush and close; returns the path.
    pub fn close(mut self) -> Result<PathBuf> {
        self.w.flush().map_err(|e| Error::io(&self.path, e))?;
        Ok(self.path)
    }
    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Sequential reader of a spill file.
pub struct SpillReader {
    path: PathBuf,
    r: BufReader<File>,
    buf: Vec<u8>,
}

impl SpillReader {
    /// Open a spill file and check its header.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let f = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut r = BufReader::with_capacity(BUF, f);
        let mut m = [0u8; 8];
        r.read_exact(&mut m).map_err(|e| Error::io(&path, e))?;
        if &m != MAGIC {
            return Err(Error::msg(format!(
                "{}: not a sluice spill file (bad magic)",
                path.display()
            )));
        }
        Ok(SpillReader {
            path,
            r,
            buf: Vec::new(),
        })
    }
    /// The next document, or `None` at end of file.
    pub fn next_doc(&mut self) -> Result<Option<Document>> {
        let mut l = [0u8; 4];
        match self.r.read_exact(&mut l) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(Error::io(&self.path, e)),
        }
        let len = u32::from_le_bytes(l) as usize;
        self.buf.resize(len, 0);
        self.r
            .read_exact(&mut self.buf)
            .map_err(|e| Error::io(&self.path, e))?;
        let mut c = Cursor { b: &self.buf, i: 0 };
        decode(&mut c)
            .map_err(|m| {
                Error::msg(format!(
                    "{}: corrupt spill record: {m}",
                    self.path.display()
                ))
            })
            .map(Some)
    }
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_str(b: &mut Vec<u8>, s: &str) {
    put_u32(b, s.len() as u32);
    b.extend_from_slice(s.as_bytes());
}

fn encode(d: &Document, b: &mut Vec<u8>) {
    put_str(b, &d.id);
    put_str(b, &d.source);
    put_str(b, &d.text);
    let mut flags = 0u8;
    if d.lang.is_some() {
        flags |= 1;
    }
    if d.words.is_some() {
        flags |= 2;
    }
    if d.tokens.is_some() {
        flags |= 4;
    }
    if d.packed.is_some() {
        flags |= 8;
    }
    b.push(flags);
    if let Some(l) = &d.lang {
        put_str(b, l);
    }
    if let Some(w) = &d.words {
        put_u32(b, w.len() as u32);
        for r in w {
            put_u32(b, r.start);
            put_u32(b, r.end);
        }
    }
    if let Some(t) = &d.tokens {
        put_u32(b, t.len() as u32);
        for x in t {
            put_u32(b, *x);
        }
    }
    put_u32(b, d.attrs.len() as u32);
    for (k, v) in &d.attrs {
        put_str(b, k);
        b.extend_from_slice(&v.to_le_bytes());
    }
    put_u32(b, d.meta.len() as u32);
    for (k, v) in &d.meta {
        put_str(b, k);
        put_str(b, v);
    }
    if let Some(p) = &d.packed {
        put_u32(b, p.doc_offsets.len() as u32);
        for x in &p.doc_offsets {
            put_u32(b, *x);
        }
        put_u32(b, p.doc_ids.len() as u32);
        for s in &p.doc_ids {
            put_str(b, s);
        }
        for s in &p.doc_urls {
            put_str(b, s);
        }
        put_u32(b, p.source_mix.len() as u32);
        for ((s, l), v) in &p.source_mix {
            put_str(b, s);
            put_str(b, l);
            put_u32(b, *v);
        }
        put_u32(b, p.n_pad);
        put_u32(b, p.doc_starts.len() as u32);
        for x in &p.doc_starts {
            b.extend_from_slice(&x.to_le_bytes());
        }
        put_u32(b, p.bucket.unwrap_or(0));
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], &'static str> {
        let end = self.i.checked_add(n).ok_or("length overflow")?;
        let s = self.b.get(self.i..end).ok_or("truncated record")?;
        self.i = end;
        Ok(s)
    }
    fn u8(&mut self) -> std::result::Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> std::result::Result<u32, &'static str> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn f64(&mut self) -> std::result::Result<f64, &'static str> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(f64::from_le_bytes(a))
    }
    fn string(&mut self) -> std::result::Result<String, &'static str> {
        let n = self.u32()? as usize;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| "invalid UTF-8")
    }
    fn u32s(&mut self) -> std::result::Result<Vec<u32>, &'static str> {
        let n = self.u32()? as usize;
        let s = self.take(n.checked_mul(4).ok_or("length overflow")?)?;
        Ok(s.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

fn decode(c: &mut Cursor) -> std::result::Result<Document, &'static str> {
    let mut d = Document {
        id: c.string()?,
        source: c.string()?,
        text: c.string()?,
        ..Default::default()
    };
    let flags = c.u8()?;
    if flags & 1 != 0 {
        d.lang = Some(c.string()?);
    }
    if flags & 2 != 0 {
        let n = c.u32()? as usize;
        let mut w: Vec<Range<u32>> = Vec::with_capacity(n.min(1 << 20));
        for _ in 0..n {
            let s = c.u32()?;
            let e = c.u32()?;
            w.push(s..e);
        }
        d.words = Some(w);
    }
    if flags & 4 != 0 {
        d.tokens = Some(c.u32s()?);
    }
    for _ in 0..c.u32()? {
        let k = c.string()?;
        let v = c.f64()?;
        d.attrs.insert(k, v);
    }
    for _ in 0..c.u32()? {
        let k = c.string()?;
        let v = c.string()?;
        d.meta.insert(k, v);
    }
    if flags & 8 != 0 {
        let doc_offsets = c.u32s()?;
        let n = c.u32()? as usize;
        let mut doc_ids = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            doc_ids.push(c.string()?);
        }
        let mut doc_urls = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            doc_urls.push(c.string()?);
        }
        let mut p = Packed {
            doc_offsets,
            doc_ids,
            doc_urls,
            ..Default::default()
        };
        for _ in 0..c.u32()? {
            let s = c.string()?;
            let l = c.string()?;
            let v = c.u32()?;
            p.source_mix.insert((s, l), v);
        }
        p.n_pad = c.u32()?;
        let n = c.u32()? as usize;
        let s = c.take(n.checked_mul(8).ok_or("length overflow")?)?;
        p.doc_starts = s
            .chunks_exact(8)
            .map(|x| u64::from_le_bytes(x.try_into().expect("8 bytes")))
            .collect();
        p.bucket = Some(c.u32()?).filter(|&b| b > 0);
        d.packed = Some(p);
    }
    if c.i != c.b.len() {
        return Err("trailing bytes");
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Document::new("a:1", "web", "中文维基百科 text");
        a.lang = Some("zh".into());
        a.words = Some(vec![0..6, 6..18]);
        a.tokens = Some(vec![1, 2, 151643]);
        a.attrs.insert("dedup.cluster_size".into(), 3.0);
        a.meta.insert("url".into(), "https://例子.cn/".into());
        let mut b = Document::new("b", "pack", "");
        b.packed = Some(Packed {
            doc_offsets: vec![0, 5],
            doc_ids: vec!["x".into(), "y@12".into()],
            doc_urls: vec!["https://例子.cn/".into(), String::new()],
            source_mix: [(("web".to_string(), "CC-BY-SA-4.0".to_string()), 7u32)]
                .into_iter()
                .collect(),
            n_pad: 3,
            doc_starts: vec![0, 12],
            bucket: Some(4096),
        });
        let p = dir.path().join("s/x.spill");
        let mut w = SpillWriter::create(&p).unwrap();
        w.write(&a).unwrap();
        w.write(&b).unwrap();
        w.close().unwrap();
        let mut r = SpillReader::open(&p).unwrap();
        assert_eq!(r.next_doc().unwrap(), Some(a));
        assert_eq!(r.next_doc().unwrap(), Some(b));
        assert_eq!(r.next_doc().unwrap(), None);
    }

    #[test]
    fn corrupt_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad");
        std::fs::write(&p, b"SLSPILL1\x10\x00\x00\x00abc").unwrap();
        let mut r = SpillReader::open(&p).unwrap();
        assert!(r.next_doc().is_err());
        std::fs::write(&p, b"nope").unwrap();
        assert!(SpillReader::open(&p).is_err());
    }

    #[test]
    fn prng_is_fixed_and_shuffle_is_a_permutation() {
        let mut g = SplitMix64::new(7, 0);
        let a: Vec<u64> = (0..3).map(|_| g.next_u64()).collect();
        let mut g2 = SplitMix64::new(7, 0);
        let b: Vec<u64> = (0..3).map(|_| g2.next_u64()).collect();
        assert_eq!(a, b);
        assert_ne!(SplitMix64::new(7, 1).next_u64(), a[1]);
        let mut v: Vec<u32> = (0..100).collect();
        SplitMix64::new(1, 0).shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
