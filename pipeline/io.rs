//! File I/O shared by sources and sinks: opening inputs (plain, `.gz`, `.zst`),
//! expanding input globs deterministically, and atomic outputs.
//!
//! **Input progress.** While a source reads a split, the runtime registers a counter for
//! the thread ([`track_input_position`]); [`open_input`] counts the raw (still
//! compressed) bytes it reads from the file into it, and readers of their own report
//! their position with [`CountingReader`] or [`report_input_position`]. Progress and ETA
//! are then fractions of the input files' sizes, right for `.gz` and `.zst` too.
//!
//! Every output file is written as `name.tmp`, fsynced, then renamed, so a crash never
//! leaves a partial file under a final name. The sha256 is computed while writing, so a
//! manifest entry costs no second read; big outputs (shards) hash on a thread of their own
//! ([`AtomicFile::hash_in_background`]) so the writer's thread never waits on sha256.

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Open an input file for buffered reading, decompressing by extension
/// (`.gz` — multi-member aware — and `.zst`).
/// Object-store URLs (`s3://`, `gs://`, `az://`) stream through [`crate::storage::open`].
/// The raw bytes read count towards the input progress of the thread that opens it.
pub fn open_input(path: &str) -> Result<Box<dyn BufRead + Send>> {
    if crate::storage::is_remote(path) {
        let raw =
            BufReader::with_capacity(1 << 16, CountingReader::new(crate::storage::open(path)?));
        return wrap_decoder(path, raw);
    }
    let f = File::open(path).map_err(|e| Error::io_doing("cannot open input", path, e))?;
    let raw = BufReader::with_capacity(1 << 16, CountingReader::new(f));
    wrap_decoder(path, raw)
}

thread_local! {
    /// Where readers opened on this thread report their position in the input file.
    static INPUT_POSITION: RefCell<Option<Arc<AtomicU64>>> = const { RefCell::new(None) };
}

/// Make readers opened on this thread from now on report their position in the input
/// file to `counter` (`None`: stop). Returns the previous counter. The runtime sets one
/// per split a source reads.
pub fn track_input_position(counter: Option<Arc<AtomicU64>>) -> Option<Arc<AtomicU64>> {
    INPUT_POSITION.with(|c| std::mem::replace(&mut *c.borrow_mut(), counter))
}

/// Report the position reached in the input file being read on this thread (for readers
/// that know it, e.g. a Parquet reader's rows of the file's total). A no-op when no
/// counter is tracked.
pub fn report_input_position(pos: u64) {
    INPUT_POSITION.with(|c| {
        if let Some(c) = &*c.borrow() {
            c.fetch_max(pos, Ordering::Relaxed);
        }
    });
}

/// A reader that reports how many bytes were read through it as the position in the
/// input file, to the counter tracked on the thread that created it (see
/// [`track_input_position`]; without one it only counts).
pub struct CountingReader<R> {
    inner: R,
    pos: u64,
    counter: Option<Arc<AtomicU64>>,
}

impl<R> CountingReader<R> {
    /// Wrap `inner`, which starts at position 0 of the input file.
    pub fn new(inner: R) -> Self {
        CountingReader {
            inner,
            pos: 0,
            counter: INPUT_POSITION.with(|c| c.borrow().clone()),
        }
    }
    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.pos
    }
    /// The wrapped reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
    fn advance(&mut self, n: usize) {
        self.pos += n as u64;
        if let Some(c) = &self.counter {
            c.fetch_max(self.pos, Ordering::Relaxed);
        }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.advance(k);
        Ok(k)
    }
}

/// Wrap a raw reader in the decoder its name implies.
pub fn wrap_decoder<R: BufRead + Send + 'static>(
    name: &str,
    raw: R,
) -> Result<Box<dyn BufRead + Send>> {
    if name.ends_with(".gz") {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(raw),
        )))
    } else if name.ends_with(".zst") || name.ends_with(".zstd") {
        let d = zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| Error::io(name, e))?;
        Ok(Box::new(BufReader::with_capacity(1 << 16, d)))
    } else {
        Ok(Box::new(raw))
    }
}

/// Expand path patterns (globs allowed) into a sorted, de-duplicated list of files.
/// A pattern that matches nothing is an error, so a typo never yields an empty run.
pub fn expand_paths(patterns: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for p in patterns {
        if crate::storage::is_remote(p) {
            // Object-store patterns: listed by prefix, matched key by key (storage::expand).
            let found = crate::storage::expand(p)?;
            if p.contains(['*', '?', '[']) || p.ends_with('/') {
                if found.is_empty() {
                    return Err(Error::msg(format!("no input objects match `{p}`")));
                }
            } else if !crate::storage::exists(p)? {
                return Err(Error::msg(format!("input object not found: {p}")));
            }
            out.extend(found);
        } else if p.contains(['*', '?', '[']) {
            let mut found: Vec<String> = glob::glob(p)
                .map_err(|e| Error::msg(format!("bad glob `{p}`: {e}")))?
                .filter_map(|r| r.ok())
                .filter(|pb| pb.is_file())
                .map(|pb| pb.to_string_lossy().into_owned())
                .collect();
            if found.is_empty() {
                return Err(Error::msg(format!("no input files match `{p}`")));
            }
            found.sort();
            out.extend(found);
        } else if Path::new(p).is_file() {
            out.push(p.clone());
        } else {
            return Err(Error::msg(format!("input file not found: {p}")));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Check path patterns for `validate`: one problem per pattern that matches nothing.
pub fn check_paths(field: &str, patterns: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    if patterns.is_empty() {
        problems.push(format!("field \"{field}\": at least one path is required"));
    }
    for p in patterns {
        if let Err(e) = expand_paths(std::slice::from_ref(p)) {
            problems.push(format!("field \"{field}\": {e}"));
        }
    }
    problems
}

/// The file name of a path (for ids): the last component.
pub fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// A file written under `name.tmp` and renamed into place by [`AtomicFile::commit`].
/// Dropped without commit, the temp file is removed.
pub struct AtomicFile {
    final_path: PathBuf,
    tmp_path: PathBuf,
    file: Option<File>,
    hasher: Hasher,
    bytes: u64,
    /// Bytes already handed to the kernel's writeback (see `WRITEBACK_EVERY`).
    flushed: u64,
}

/// Start writeback of a big file every this many bytes (Linux `sync_file_range`, as
/// RocksDB's `bytes_per_sync` does): the disk works while the file is still being written,
/// so the fsync at commit has little left to wait for, and dirty pages never pile up.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Bytes handed to the background hasher at a time.
const HASH_CHUNK: usize = 1 << 20;

/// An empty chunk buffer for the background hasher (room for one more write past a full chunk).
fn hash_buf() -> Vec<u8> {
    Vec::with_capacity(HASH_CHUNK + (64 << 10))
}

/// Where an [`AtomicFile`]'s sha256 is computed.
enum Hasher {
    /// On the writing thread.
    Inline(Sha256),
    /// On a thread of its own, fed chunks of `HASH_CHUNK` bytes through a bounded channel
    /// (at most 4 chunks queued: the memory is bounded and a slow hasher slows the writer
    /// instead of growing a backlog).
    Background {
        buf: Vec<u8>,
        tx: Option<crossbeam_channel::Sender<Vec<u8>>>,
        thread: Option<std::thread::JoinHandle<Sha256>>,
    },
}

impl Hasher {
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Inline(h) => h.update(b),
            Hasher::Background { buf, tx, .. } => {
                buf.extend_from_slice(b);
                if buf.len() >= HASH_CHUNK {
                    let full = std::mem::replace(buf, hash_buf());
                    if let Some(tx) = tx {
                        // A closed channel means the hasher thread died; `finish` reports it.
                        let _ = tx.send(full);
                    }
                }
            }
        }
    }

    fn finish(&mut self) -> Result<String> {
        let h = match self {
            Hasher::Inline(h) => std::mem::take(h),
            Hasher::Background { buf, tx, thread } => {
                if let Some(tx) = tx.take() {
                    if !buf.is_empty() {
                        let _ = tx.send(std::mem::take(buf));
                    }
                }
                thread
                    .take()
                    .ok_or_else(|| Error::msg("file already committed"))?
                    .join()
                    .map_err(|_| Error::msg("the sha256 thread panicked"))?
            }
        };
        Ok(hex::encode(h.finalize()))
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        if let Hasher::Background { tx, thread, .. } = self {
            drop(tx.take());
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// What a committed file was.
#[derive(Debug, Clone)]
pub struct Committed {
    /// Final path.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256 hex.
    pub sha256: String,
}

impl AtomicFile {
    /// Create `path.tmp` (parent directories included).
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let final_path: PathBuf = path.into();
        if let Some(parent) = final_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut tmp = final_path.clone().into_os_string();
        // The pid makes the temp name unique per process: when the last ranks of a run
        // finish together, each writes the merged stats.json/manifest.json at once.
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp_path = PathBuf::from(tmp);
        let file = File::create(&tmp_path).map_err(|e| Error::io(&tmp_path, e))?;
        Ok(AtomicFile {
            final_path,
            tmp_path,
            file: Some(file),
            hasher: Hasher::Inline(Sha256::new()),
            bytes: 0,
            flushed: 0,
        })
    }

    /// Hash on a background thread from now on (call before the first write): for big
    /// files, so that the writing thread spends no time on sha256.
    pub fn hash_in_background(mut self) -> Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(4);
        let thread = std::thread::Builder::new()
            .name("sha256".into())
            .spawn(move || {
                let mut h = Sha256::new();
                for chunk in rx {
                    h.update(&chunk);
                }
                h
            })
            .map_err(|e| Error::msg(format!("spawn: {e}")))?;
        self.hasher = Hasher::Background {
            buf: hash_buf(),
            tx: Some(tx),
            thread: Some(thread),
        };
        Ok(self)
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// fsync, rename into place, fsync the directory; return size and sha256.
    pub fn commit(mut self) -> Result<Committed> {
        let file = self
            .file
            .take()
            .ok_or_else(|| Error::msg("file already committed"))?;
        file.sync_all().map_err(|e| Error::io(&self.tmp_path, e))?;
        drop(file);
        std::fs::rename(&self.tmp_path, &self.final_path)
            .map_err(|e| Error::io(&self.final_path, e))?;
        if let Some(parent) = self.final_path.parent() {
            if let Ok(d) = File::open(parent) {
                let _ = d.sync_all();
            }
        }
        let sha = self.hasher.finish()?;
        Ok(Committed {
            path: self.final_path.clone(),
            bytes: self.bytes,
            sha256: sha,
        })
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("write after commit"))?;
        let n = f.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        if self.bytes - self.flushed >= WRITEBACK_EVERY {
            #[cfg(target_os = "linux")]
            {
                use std::os::fd::AsRawFd;
                // SAFETY: a valid open descriptor and a byte range of it; the call only
                // starts asynchronous writeback (errors are left for the fsync to report).
                unsafe {
                    libc::sync_file_range(
                        f.as_raw_fd(),
                        self.flushed as libc::off64_t,
                        (self.bytes - self.flushed) as libc::off64_t,
                        libc::SYNC_FILE_RANGE_WRITE,
                    )
                };
            }
            self.flushed = self.bytes;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

/// Write bytes atomically to `path`.
pub fn write_atomic(path: impl Into<PathBuf>, bytes: &[u8]) -> Result<Committed> {
    let path = path.into();
    let mut f = AtomicFile::create(&path)?;
    f.write_all(bytes).map_err(|e| Error::io(&path, e))?;
    f.commit()
}

/// sha256 of a file's bytes, hex.
pub fn sha256_file(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_file_commit_and_abort() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b.txt");
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_all(b"hello").unwrap();
        assert!(!p.exists());
        let c = f.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        assert_eq!(c.bytes, 5);
        assert_eq!(c.sha256, sha256_file(&p).unwrap());
        let q = dir.path().join("c.txt");
        {
            let mut g = AtomicFile::create(&q).unwrap();
            g.write_all(b"partial").unwrap();
        }
        assert!(!q.exists());
        assert!(!dir.path().join("c.txt.tmp").exists());
    }

    #[test]
    fn background_hash_equals_inline_hash() {
        let dir = tempfile::tempdir().unwrap();
        // Several chunks and a ragged tail, written in odd-sized pieces.
        let data: Vec<u8> = (0..3 * HASH_CHUNK + 12_345)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let p = dir.path().join("big.bin");
        let mut f = AtomicFile::create(&p)
            .unwrap()
            .hash_in_background()
            .unwrap();
        for piece in data.chunks(70_001) {
            f.write_all(piece).unwrap();
        }
        let c = f.commit().unwrap();
        assert_eq!(c.bytes, data.len() as u64);
        assert_eq!(c.sha256, sha256_file(&p).unwrap());
        // Dropped uncommitted: the temp file goes and the hasher thread ends.
        let q = dir.path().join("gone.bin");
        {
            let mut g = AtomicFile::create(&q)
                .unwrap()
                .hash_in_background()
                .unwrap();
            g.write_all(&data).unwrap();
        }
        assert!(!q.exists());
    }

    #[test]
    fn input_position_counts_compressed_bytes() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("a.jsonl.gz");
        let mut e = flate2::write::GzEncoder::new(
            File::create(&gz).unwrap(),
            flate2::Compression::default(),
        );
        for i in 0..20_000 {
            writeln!(e, "{{\"text\": \"line {i} of a compressible input\"}}").unwrap();
        }
        e.finish().unwrap();
        let size = std::fs::metadata(&gz).unwrap().len();
        let counter = Arc::new(AtomicU64::new(0));
        let prev = track_input_position(Some(counter.clone()));
        let mut text = String::new();
        open_input(gz.to_str().unwrap())
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        track_input_position(prev);
        // The position is in the file's (compressed) bytes, not the decoded text's.
        assert!(text.len() as u64 > 5 * size, "{} vs {size}", text.len());
        assert_eq!(counter.load(Ordering::Relaxed), size);
        // Readers opened with no counter tracked report nowhere.
        let mut r = open_input(gz.to_str().unwrap()).unwrap();
        r.read_to_string(&mut String::new()).unwrap();
        assert_eq!(counter.load(Ordering::Relaxed), size);
        report_input_position(1);
    }

    #[test]
    fn gz_and_zst_inputs_decode() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("x.jsonl.gz");
        let mut e =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        e.write_all(b"line1\n").unwrap();
        e.finish().unwrap();
        let zs = dir.path().join("x.jsonl.zst");
        std::fs::write(&zs, zstd::encode_all(&b"line2\n"[..], 3).unwrap()).unwrap();
        let mut s = String::new();
        open_input(gz.to_str().unwrap())
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        open_input(zs.to_str().unwrap())
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "line1\nline2\n");
    }
}
