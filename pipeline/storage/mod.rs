//! Object storage: `s3://`, `gs://` and `az://` paths next to local ones.
//!
//! Every input or output path in sluice may be a local path or an object-store URL:
//!
//! | scheme | store | credentials (standard environment variables) |
//! |---|---|---|
//! | `s3://bucket/key`, `s3a://` | Amazon S3 and S3-compatible (MinIO, Ceph, R2, moto) | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL` (non-AWS servers), `AWS_ALLOW_HTTP=true` (plain-HTTP endpoints), or the instance's IAM role |
//! | `gs://bucket/key` | Google Cloud Storage | `GOOGLE_SERVICE_ACCOUNT` / `GOOGLE_APPLICATION_CREDENTIALS`, ... |
//! | `az://container/key`, `abfs://`, `azure://` | Azure Blob Storage | `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, ... |
//!
//! The clients are `object_store` 0.13 (the version DataFusion 55 already links, so there is
//! one copy), each built with `from_env()`. Credentials are read by `object_store` and never
//! pass through sluice's own logging: errors name the URL, never a key.
//!
//! **Why blocking.** The engine is plain threads (the work is CPU-bound), so this module
//! exposes blocking `Read`/`Write` adapters and drives the async clients on one small shared
//! tokio runtime ([`runtime`]). Nothing here may be called from inside that runtime.
//!
//! **Reads stream.** [`open`] starts one GET and a task that pushes the body's chunks into a
//! bounded channel ([`READ_AHEAD_CHUNKS`] chunks, each what the HTTP layer delivers, typically
//! 8-64 KiB); the `Read` side pulls from it. A multi-GB WARC never sits in memory: memory per
//! open object is bounded by the read-ahead. The download overlaps with the caller's
//! decoding.
//!
//! **Writes are all-or-nothing.** [`create`] returns an [`AtomicWriter`]: locally a
//! `name.tmp` file that is fsynced and renamed on [`AtomicWriter::commit`]; on an object
//! store, the bytes go to a multipart upload (parts of [`part_size`] bytes, up to
//! [`UPLOAD_CONCURRENCY`] in flight) that is *completed* only by `commit`. An upload that is
//! dropped, fails, or whose process dies is never completed, so no partial object is ever
//! visible under the final key (a dropped writer also aborts the upload so the parts are
//! freed; a killed process leaves parts that the bucket's lifecycle rule for incomplete
//! multipart uploads removes). Objects smaller than one part are sent with a single PUT,
//! which is atomic too. Markers are written with [`put`] after their outputs are committed.
//!
//! Memory: one part buffer per open writer plus up to [`UPLOAD_CONCURRENCY`] parts in flight
//! (default 8 MiB each, so about 40 MiB per writer).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[cfg(not(feature = "cloud"))]
#[path = "disabled.rs"]
mod object;
#[cfg(feature = "cloud")]
mod object;
#[cfg(feature = "cloud")]
pub use object::{register_store, resolve, runtime, Remote};

/// Chunks buffered ahead of the reader per open remote object.
pub const READ_AHEAD_CHUNKS: usize = 16;
/// Multipart parts uploading at once per writer.
pub const UPLOAD_CONCURRENCY: usize = 4;
/// Default multipart part size (S3's minimum is 5 MiB for all parts but the last).
pub const DEFAULT_PART_SIZE: usize = 8 << 20;

/// Multipart part size in bytes: `SLUICE_UPLOAD_PART_BYTES` or 8 MiB (at least 5 MiB).
pub fn part_size() -> usize {
    std::env::var("SLUICE_UPLOAD_PART_BYTES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map(|v| v.max(5 << 20))
        .unwrap_or(DEFAULT_PART_SIZE)
}

/// Whether a path names an object store (`s3://`, `gs://`, `az://`, ...) rather than a local file.
pub fn is_remote(path: &str) -> bool {
    const SCHEMES: &[&str] = &[
        "s3://", "s3a://", "gs://", "az://", "abfs://", "abfss://", "azure://", "adl://",
    ];
    SCHEMES.iter().any(|s| path.starts_with(s))
}

/// Join a relative path onto a base directory or URL with `/`.
pub fn join(base: &str, rel: &str) -> String {
    if is_remote(base) {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            rel.trim_start_matches('/')
        )
    } else {
        Path::new(base).join(rel).to_string_lossy().into_owned()
    }
}

/// Open a local path or remote URL for streaming reading.
pub fn open(path: &str) -> Result<Box<dyn Read + Send>> {
    if is_remote(path) {
        return object::open(path);
    }
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(Box::new(std::io::BufReader::with_capacity(1 << 16, f)))
}

/// Read a whole (small) file or object: configs, markers, manifests.
pub fn read_all(path: &str) -> Result<Vec<u8>> {
    if is_remote(path) {
        return object::read_all(path);
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Whether a file or object exists.
pub fn exists(path: &str) -> Result<bool> {
    if is_remote(path) {
        return object::exists(path);
    }
    Ok(Path::new(path).exists())
}

/// Size in bytes of a file or object.
pub fn size(path: &str) -> Result<u64> {
    if is_remote(path) {
        return object::size(path);
    }
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| Error::io(path, e))
}

/// Delete a file or object (missing is not an error).
pub fn delete(path: &str) -> Result<()> {
    if is_remote(path) {
        return object::delete(path);
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Write a small file or object in one atomic step (markers, manifests): local files go
/// through tmp + fsync + rename, objects through one PUT.
pub fn put(path: &str, data: &[u8]) -> Result<()> {
    let mut w = create(path)?;
    w.write_all(data).map_err(|e| Error::io(path, e))?;
    w.commit()?;
    Ok(())
}

/// Expand a path pattern into a sorted list of files or objects.
///
/// Local patterns use `glob`. Remote patterns may use `*`, `?` and `[..]` in the key: the
/// prefix before the first wildcard is listed, and keys are matched against the pattern.
/// A remote URL without wildcards ending in `/` lists everything under that prefix; one
/// without wildcards otherwise names one object.
pub fn expand(pattern: &str) -> Result<Vec<String>> {
    let has_glob = pattern.contains(['*', '?', '[']);
    if !is_remote(pattern) {
        if !has_glob {
            return Ok(vec![pattern.to_string()]);
        }
        let mut out = Vec::new();
        for p in glob::glob(pattern).map_err(|e| Error::msg(format!("{pattern}: {e}")))? {
            let p = p.map_err(|e| Error::msg(format!("{pattern}: {e}")))?;
            if p.is_file() {
                out.push(p.to_string_lossy().into_owned());
            }
        }
        out.sort();
        return Ok(out);
    }
    if !has_glob && !pattern.ends_with('/') {
        return Ok(vec![pattern.to_string()]);
    }
    object::expand(pattern, has_glob)
}

// ---------------------------------------------------------------- writing

/// Where an [`AtomicWriter`] writes.
enum Target {
    Local {
        tmp: PathBuf,
        dst: PathBuf,
        file: Option<std::io::BufWriter<std::fs::File>>,
    },
    Remote(object::RemoteWriter),
}

/// An all-or-nothing writer (see the module doc).
pub struct AtomicWriter {
    path: String,
    target: Target,
    bytes: u64,
    done: bool,
}

/// Start writing `path` atomically: nothing appears under the name before `commit`.
pub fn create(path: &str) -> Result<AtomicWriter> {
    let target = if is_remote(path) {
        Target::Remote(object::RemoteWriter::new(path)?)
    } else {
        let dst = PathBuf::from(path);
        if let Some(dir) = dst.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut tmp = dst.clone().into_os_string();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Target::Local {
            tmp,
            dst,
            file: Some(std::io::BufWriter::with_capacity(1 << 20, f)),
        }
    };
    Ok(AtomicWriter {
        path: path.to_string(),
        target,
        bytes: 0,
        done: false,
    })
}

impl AtomicWriter {
    /// The final path or URL.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Make the file or object visible under its name; returns its size.
    pub fn commit(mut self) -> Result<u64> {
        let path = self.path.clone();
        match &mut self.target {
            Target::Local { tmp, dst, file } => {
                let f = file
                    .take()
                    .ok_or_else(|| Error::msg(format!("{path}: already committed")))?;
                let f = f
                    .into_inner()
                    .map_err(|e| Error::io(&*tmp, e.into_error()))?;
                f.sync_all().map_err(|e| Error::io(&*tmp, e))?;
                drop(f);
                std::fs::rename(&*tmp, &*dst).map_err(|e| Error::io(&*dst, e))?;
                if let Some(dir) = dst.parent().filter(|d| !d.as_os_str().is_empty()) {
                    if let Ok(d) = std::fs::File::open(dir) {
                        let _ = d.sync_all();
                    }
                }
            }
            Target::Remote(w) => w.commit()?,
        }
        self.done = true;
        Ok(self.bytes)
    }
}

impl Write for AtomicWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match &mut self.target {
            Target::Local { file, .. } => {
                let n = file
                    .as_mut()
                    .ok_or_else(|| std::io::Error::other("write after commit"))?
                    .write(data)?;
                self.bytes += n as u64;
                Ok(n)
            }
            Target::Remote(w) => {
                w.write(data)?;
                self.bytes += data.len() as u64;
                Ok(data.len())
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.target {
            Target::Local { file: Some(f), .. } => f.flush(),
            _ => Ok(()),
        }
    }
}

impl Drop for AtomicWriter {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // A remote writer aborts its own upload when dropped.
        if let Target::Local { tmp, file, .. } = &mut self.target {
            drop(file.take());
            let _ = std::fs::remove_file(&*tmp);
        }
    }
}

/// Copy a local file to a path or URL, atomically.
pub fn upload_file(local: &Path, dst: &str) -> Result<u64> {
    let mut src = std::fs::File::open(local).map_err(|e| Error::io(local, e))?;
    let mut w = create(dst)?;
    std::io::copy(&mut src, &mut w).map_err(|e| Error::io(dst, e))?;
    w.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_detection_and_join() {
        assert!(is_remote("s3://b/k"));
        assert!(is_remote("gs://b/k"));
        assert!(is_remote("az://c/k"));
        assert!(!is_remote("/tmp/x"));
        assert!(!is_remote("samples/x.jsonl"));
        assert_eq!(
            join("s3://b/run/", "shards/a.parquet"),
            "s3://b/run/shards/a.parquet"
        );
        assert_eq!(join("out", "ranks/x.done"), "out/ranks/x.done");
    }

    #[test]
    fn local_writer_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/a.txt");
        let ps = p.to_str().unwrap();
        {
            let mut w = create(ps).unwrap();
            w.write_all(b"half").unwrap();
            assert!(!p.exists());
            // dropped uncommitted: nothing visible, no tmp left
        }
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 0);
        let mut w = create(ps).unwrap();
        w.write_all("完整的文件".as_bytes()).unwrap();
        assert_eq!(w.commit().unwrap(), 15);
        assert_eq!(read_all(ps).unwrap(), "完整的文件".as_bytes());
        let mut s = String::new();
        open(ps).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "完整的文件");
        assert!(exists(ps).unwrap());
        let pat = format!("{}/sub/*.txt", dir.path().display());
        assert_eq!(expand(&pat).unwrap(), vec![ps.to_string()]);
    }
}
