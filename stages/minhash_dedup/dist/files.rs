//! Checksummed record files of the distributed phases, random access into the ranks'
//! signature and id files, and unit markers.

use super::*;

// ---------------------------------------------------------------------------------------
// Checksummed record files: magic (8) · records · count (u64) · xxh3-64 of all before (u64).

pub(super) struct CheckedWriter {
    w: BufWriter<AtomicFile>,
    h: Xxh3,
    count: u64,
    path: PathBuf,
}

impl CheckedWriter {
    pub(super) fn create(path: PathBuf, magic: &[u8; 8]) -> Result<Self> {
        let mut w = CheckedWriter {
            w: BufWriter::with_capacity(1 << 20, AtomicFile::create(&path)?),
            h: Xxh3::new(),
            count: 0,
            path,
        };
        w.raw(magic)?;
        Ok(w)
    }
    pub(super) fn raw(&mut self, b: &[u8]) -> Result<()> {
        self.h.update(b);
        self.w.write_all(b).map_err(|e| Error::io(&self.path, e))
    }
    pub(super) fn record(&mut self, parts: &[&[u8]]) -> Result<()> {
        for p in parts {
            self.raw(p)?;
        }
        self.count += 1;
        Ok(())
    }
    pub(super) fn commit(mut self) -> Result<()> {
        let c = self.count.to_le_bytes();
        self.raw(&c)?;
        let d = self.h.digest().to_le_bytes();
        self.w.write_all(&d).map_err(|e| Error::io(&self.path, e))?;
        let f = self
            .w
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        f.commit()?;
        Ok(())
    }
}

pub(super) struct CheckedReader {
    r: BufReader<File>,
    h: Xxh3,
    path: PathBuf,
    left: u64,
    count: u64,
}

impl CheckedReader {
    pub(super) fn open(path: &Path, magic: &[u8; 8]) -> Result<Self> {
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < 24 {
            return Err(Error::msg(format!("{}: truncated file", path.display())));
        }
        let mut r = CheckedReader {
            r: BufReader::with_capacity(1 << 18, f),
            h: Xxh3::new(),
            path: path.to_path_buf(),
            left: len - 8,
            count: 0,
        };
        let m = r.bytes::<8>()?;
        if &m != magic {
            return Err(Error::msg(format!(
                "{}: not a {magic:?} file",
                path.display()
            )));
        }
        r.left -= 8; // the count word
        Ok(r)
    }
    pub(super) fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|e| Error::io(&self.path, e))?;
        self.h.update(&b);
        self.left = self.left.saturating_sub(N as u64);
        Ok(b)
    }
    pub(super) fn vec(&mut self, n: usize) -> Result<Vec<u8>> {
        if n as u64 > self.left {
            return Err(Error::msg(format!(
                "{}: corrupt record",
                self.path.display()
            )));
        }
        let mut b = vec![0u8; n];
        self.r
            .read_exact(&mut b)
            .map_err(|e| Error::io(&self.path, e))?;
        self.h.update(&b);
        self.left -= n as u64;
        Ok(b)
    }
    pub(super) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes::<8>()?))
    }
    pub(super) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes::<4>()?))
    }
    /// Whether records remain; at the end, verify the count and the checksum.
    pub(super) fn more(&mut self) -> Result<bool> {
        if self.left > 0 {
            self.count += 1;
            return Ok(true);
        }
        let mut t = [0u8; 16];
        self.r
            .read_exact(&mut t)
            .map_err(|e| Error::io(&self.path, e))?;
        self.h.update(&t[..8]);
        let count = u64::from_le_bytes(t[..8].try_into().unwrap_or([0; 8]));
        let sum = u64::from_le_bytes(t[8..].try_into().unwrap_or([0; 8]));
        if count != self.count || sum != self.h.digest() {
            return Err(Error::msg(format!(
                "{}: checksum mismatch (corrupt or truncated)",
                self.path.display()
            )));
        }
        Ok(false)
    }
}

// ---------------------------------------------------------------------------------------
// Random access into the ranks' signature and id files.

pub(super) struct RankFiles {
    sig_dir: PathBuf,
    num_perm: usize,
    open: HashMap<usize, (File, File, File)>,
    buf: Vec<u8>,
}

impl RankFiles {
    pub(super) fn new(sig_dir: PathBuf, num_perm: usize) -> Self {
        RankFiles {
            sig_dir,
            num_perm,
            open: HashMap::new(),
            buf: Vec::new(),
        }
    }
    pub(super) fn files(&mut self, rank: usize) -> Result<&(File, File, File)> {
        if !self.open.contains_key(&rank) {
            let d = self.sig_dir.join(format!("r{rank:04}"));
            let o = |n: &str| File::open(d.join(n)).map_err(|e| Error::io(d.join(n), e));
            self.open
                .insert(rank, (o("sketches.u32")?, o("ids.bin")?, o("ids.idx")?));
        }
        Ok(&self.open[&rank])
    }
    pub(super) fn sig(&mut self, rank: usize, local: u32, out: &mut Vec<u32>) -> Result<()> {
        let n = (self.num_perm + 1) * 4;
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(n, 0);
        let dir = self.sig_dir.clone();
        let f = &self.files(rank)?.0;
        f.read_exact_at(&mut buf, local as u64 * n as u64)
            .map_err(|e| Error::io(dir.join(format!("r{rank:04}/sketches.u32")), e))?;
        out.clear();
        out.extend(
            buf.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        self.buf = buf;
        Ok(())
    }
    pub(super) fn id(&mut self, rank: usize, local: u32) -> Result<String> {
        let dir = self.sig_dir.clone();
        let (_, ids, idx) = self.files(rank)?;
        let err = |e| Error::io(dir.join(format!("r{rank:04}/ids")), e);
        let mut b = [0u8; 16];
        let (start, end) = if local == 0 {
            idx.read_exact_at(&mut b[8..], 0).map_err(err)?;
            (0, u64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8])))
        } else {
            idx.read_exact_at(&mut b, (local as u64 - 1) * 8)
                .map_err(err)?;
            (
                u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])),
                u64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8])),
            )
        };
        let mut s = vec![0u8; end.saturating_sub(start) as usize];
        ids.read_exact_at(&mut s, start).map_err(err)?;
        String::from_utf8(s).map_err(|_| Error::msg("corrupt id file"))
    }
}

pub(super) fn write_marker(path: &Path, v: &serde_json::Value) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(
        serde_json::to_string_pretty(v)
            .unwrap_or_default()
            .as_bytes(),
    )
    .map_err(|e| Error::io(path, e))?;
    f.commit()?;
    Ok(())
}

pub(super) fn require_markers(
    out: &Path,
    plan: &Plan,
    phase: &str,
    units: usize,
    world: usize,
) -> Result<()> {
    for u in 0..units {
        if let Some(m) = unit_marker(out, plan, phase, u, world) {
            if !m.exists() {
                return Err(Error::msg(format!(
                    "phase {phase} unit {u} is not done ({} missing); run the earlier phases first",
                    m.display()
                )));
            }
        }
    }
    Ok(())
}

/// Stream the records of a checksummed file (checksum verified at the end); the first error
/// ends the stream.
pub(super) fn records<T>(
    path: &Path,
    magic: &[u8; 8],
    mut read: impl FnMut(&mut CheckedReader) -> Result<T>,
) -> Result<impl Iterator<Item = Result<T>>> {
    let mut r = CheckedReader::open(path, magic)?;
    let mut done = false;
    Ok(std::iter::from_fn(move || {
        if done {
            return None;
        }
        let rec = match r.more() {
            Ok(true) => read(&mut r).map(Some),
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        };
        match rec {
            Ok(Some(x)) => Some(Ok(x)),
            Ok(None) => {
                done = true;
                None
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    }))
}
