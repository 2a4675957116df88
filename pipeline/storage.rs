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

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload};

use crate::error::{Error, Result};

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

/// The shared runtime that drives object-store I/O (2 worker threads: the work is I/O
/// waiting, not CPU).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sluice-io")
            .enable_all()
            .build()
            .expect("cannot start the I/O runtime") // no data involved: OS refused threads
    })
}

type StoreMap = HashMap<String, Arc<dyn ObjectStore>>;

fn stores() -> &'static Mutex<StoreMap> {
    static STORES: OnceLock<Mutex<StoreMap>> = OnceLock::new();
    STORES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Use `store` for every URL under `base` (`scheme://bucket`), instead of one built from the
/// environment. For tests and embedding; the CLI builds stores from the environment.
pub fn register_store(base: &str, store: Arc<dyn ObjectStore>) {
    let mut m = stores().lock().unwrap_or_else(|e| e.into_inner());
    m.insert(base.trim_end_matches('/').to_string(), store);
}

/// A parsed remote location.
#[derive(Clone)]
pub struct Remote {
    /// The client for the bucket.
    pub store: Arc<dyn ObjectStore>,
    /// Key inside the bucket.
    pub key: ObjPath,
    /// `scheme://bucket` (no trailing slash).
    pub base: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.key)
    }
}

fn oerr(uri: &str, e: object_store::Error) -> Error {
    Error::msg(format!("{uri}: {e}"))
}

/// Resolve a remote URL to its store (cached per bucket) and key.
pub fn resolve(uri: &str) -> Result<Remote> {
    let url = url::Url::parse(uri).map_err(|e| Error::msg(format!("{uri}: not a URL: {e}")))?;
    let host = url.host_str().unwrap_or("");
    let base = format!("{}://{}", url.scheme(), host);
    let key = url.path().trim_start_matches('/');
    let key = ObjPath::parse(key).map_err(|e| oerr(uri, e.into()))?;
    let mut m = stores().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = m.get(&base) {
        return Ok(Remote {
            store: s.clone(),
            key,
            base,
        });
    }
    let (scheme, _) = ObjectStoreScheme::parse(&url).map_err(|e| oerr(uri, e.into()))?;
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::AmazonS3 => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(base.as_str())
                .build()
                .map_err(|e| oerr(uri, e))?,
        ),
        ObjectStoreScheme::GoogleCloudStorage => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(base.as_str())
                .build()
                .map_err(|e| oerr(uri, e))?,
        ),
        ObjectStoreScheme::MicrosoftAzure => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(base.as_str())
                .build()
                .map_err(|e| oerr(uri, e))?,
        ),
        other => {
            return Err(Error::msg(format!(
                "{uri}: unsupported storage scheme {other:?}"
            )))
        }
    };
    m.insert(base.clone(), store.clone());
    Ok(Remote { store, key, base })
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

// ---------------------------------------------------------------- reading

/// A blocking reader over a streaming GET; see the module doc.
pub struct RemoteReader {
    rx: tokio::sync::mpsc::Receiver<std::result::Result<Bytes, String>>,
    cur: Bytes,
    uri: String,
    task: tokio::task::JoinHandle<()>,
}

impl Read for RemoteReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(std::io::Error::other(format!("{}: {e}", self.uri))),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        bytes::Buf::advance(&mut self.cur, n);
        Ok(n)
    }
}

impl Drop for RemoteReader {
    fn drop(&mut self) {
        // Stop downloading an object the caller no longer wants.
        self.task.abort();
    }
}

/// Open a local path or remote URL for streaming reading.
pub fn open(path: &str) -> Result<Box<dyn Read + Send>> {
    if !is_remote(path) {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        return Ok(Box::new(std::io::BufReader::with_capacity(1 << 16, f)));
    }
    let r = resolve(path)?;
    let rt = runtime();
    // The GET itself is awaited here so a missing object fails at open, like a local file.
    let get = rt
        .block_on(r.store.get(&r.key))
        .map_err(|e| oerr(path, e))?;
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD_CHUNKS);
    let task = rt.spawn(async move {
        let mut stream = get.into_stream();
        while let Some(item) = stream.next().await {
            let stop = item.is_err();
            if tx.send(item.map_err(|e| e.to_string())).await.is_err() || stop {
                break;
            }
        }
    });
    Ok(Box::new(RemoteReader {
        rx,
        cur: Bytes::new(),
        uri: path.to_string(),
        task,
    }))
}

/// Read a whole (small) file or object: configs, markers, manifests.
pub fn read_all(path: &str) -> Result<Vec<u8>> {
    if !is_remote(path) {
        return std::fs::read(path).map_err(|e| Error::io(path, e));
    }
    let r = resolve(path)?;
    runtime()
        .block_on(async { r.store.get(&r.key).await?.bytes().await })
        .map(|b| b.to_vec())
        .map_err(|e| oerr(path, e))
}

/// Whether a file or object exists.
pub fn exists(path: &str) -> Result<bool> {
    if !is_remote(path) {
        return Ok(Path::new(path).exists());
    }
    let r = resolve(path)?;
    match runtime().block_on(r.store.head(&r.key)) {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(oerr(path, e)),
    }
}

/// Size in bytes of a file or object.
pub fn size(path: &str) -> Result<u64> {
    if !is_remote(path) {
        return std::fs::metadata(path)
            .map(|m| m.len())
            .map_err(|e| Error::io(path, e));
    }
    let r = resolve(path)?;
    runtime()
        .block_on(r.store.head(&r.key))
        .map(|m| m.size)
        .map_err(|e| oerr(path, e))
}

/// Delete a file or object (missing is not an error).
pub fn delete(path: &str) -> Result<()> {
    if !is_remote(path) {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
            _ => Ok(()),
        };
    }
    let r = resolve(path)?;
    match runtime().block_on(r.store.delete(&r.key)) {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(oerr(path, e)),
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
    let r = resolve(pattern)?;
    let raw_key = pattern[r.base.len()..].trim_start_matches('/');
    let wild = raw_key.find(['*', '?', '[']).unwrap_or(raw_key.len());
    let prefix_dir = match raw_key[..wild].rfind('/') {
        Some(i) => &raw_key[..i],
        None => "",
    };
    let matcher = if has_glob {
        Some(glob::Pattern::new(raw_key).map_err(|e| Error::msg(format!("{pattern}: {e}")))?)
    } else {
        None
    };
    let prefix = if prefix_dir.is_empty() {
        None
    } else {
        Some(ObjPath::from(prefix_dir))
    };
    let metas: Vec<_> = runtime()
        .block_on(async { r.store.list(prefix.as_ref()).collect::<Vec<_>>().await })
        .into_iter()
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| oerr(pattern, e))?;
    let opts = glob::MatchOptions {
        require_literal_separator: true,
        ..Default::default()
    };
    let mut out: Vec<String> = metas
        .into_iter()
        .map(|m| m.location.to_string())
        .filter(|k| match &matcher {
            Some(p) => p.matches_with(k, opts),
            None => true,
        })
        .map(|k| format!("{}/{}", r.base, k))
        .collect();
    out.sort();
    Ok(out)
}

// ---------------------------------------------------------------- writing

enum Target {
    Local {
        tmp: PathBuf,
        dst: PathBuf,
        file: Option<std::io::BufWriter<std::fs::File>>,
    },
    Remote {
        r: Remote,
        buf: Vec<u8>,
        part: usize,
        upload: Option<Box<dyn MultipartUpload>>,
        inflight: VecDeque<tokio::task::JoinHandle<object_store::Result<()>>>,
        failed: Option<String>,
    },
}

/// An output that becomes visible under its final name only on [`AtomicWriter::commit`].
/// Dropping it uncommitted removes the temporary file or aborts the multipart upload.
pub struct AtomicWriter {
    path: String,
    target: Target,
    bytes: u64,
    done: bool,
}

/// Create an all-or-nothing writer for a local path or remote URL (see the module doc).
pub fn create(path: &str) -> Result<AtomicWriter> {
    let target = if is_remote(path) {
        Target::Remote {
            r: resolve(path)?,
            buf: Vec::new(),
            part: part_size(),
            upload: None,
            inflight: VecDeque::new(),
            failed: None,
        }
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

    /// Send full parts; keep at most `UPLOAD_CONCURRENCY` in flight.
    fn pump(&mut self, final_flush: bool) -> std::io::Result<()> {
        let Target::Remote {
            r,
            buf,
            part,
            upload,
            inflight,
            failed,
        } = &mut self.target
        else {
            return Ok(());
        };
        if let Some(f) = failed {
            return Err(std::io::Error::other(f.clone()));
        }
        let rt = runtime();
        while buf.len() >= *part || (final_flush && upload.is_some() && !buf.is_empty()) {
            if upload.is_none() {
                let u = rt
                    .block_on(r.store.put_multipart(&r.key))
                    .map_err(|e| std::io::Error::other(format!("{}: {e}", self.path)))?;
                *upload = Some(u);
            }
            let take = buf.len().min(*part);
            let rest = buf.split_off(take);
            let chunk = std::mem::replace(buf, rest);
            let fut = upload
                .as_mut()
                .map(|u| u.put_part(PutPayload::from(chunk)))
                .ok_or_else(|| std::io::Error::other("no upload"))?;
            inflight.push_back(rt.spawn(fut));
            while inflight.len() >= UPLOAD_CONCURRENCY
                || (final_flush && buf.is_empty() && !inflight.is_empty())
            {
                let Some(h) = inflight.pop_front() else { break };
                let res = rt.block_on(h);
                let err = match res {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(e) = err {
                    let msg = format!("{}: upload part failed: {e}", self.path);
                    *failed = Some(msg.clone());
                    return Err(std::io::Error::other(msg));
                }
            }
        }
        Ok(())
    }

    /// Make the output visible under its final name. Returns the bytes written.
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
            Target::Remote { .. } => {
                self.pump(true).map_err(|e| Error::io(&path, e))?;
                let Target::Remote { r, buf, upload, .. } = &mut self.target else {
                    unreachable!()
                };
                let rt = runtime();
                match upload.as_mut() {
                    Some(u) => {
                        rt.block_on(u.complete()).map_err(|e| oerr(&path, e))?;
                    }
                    None => {
                        let data = std::mem::take(buf);
                        rt.block_on(r.store.put(&r.key, PutPayload::from(data)))
                            .map_err(|e| oerr(&path, e))?;
                    }
                }
                *upload = None;
            }
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
            Target::Remote { buf, part, .. } => {
                buf.extend_from_slice(data);
                self.bytes += data.len() as u64;
                if buf.len() >= *part {
                    self.pump(false)?;
                }
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
        match &mut self.target {
            Target::Local { tmp, file, .. } => {
                drop(file.take());
                let _ = std::fs::remove_file(&*tmp);
            }
            Target::Remote {
                upload, inflight, ..
            } => {
                let rt = runtime();
                for h in inflight.drain(..) {
                    h.abort();
                }
                if let Some(mut u) = upload.take() {
                    if let Err(e) = rt.block_on(u.abort()) {
                        tracing::warn!("{}: aborting multipart upload failed: {e}", self.path);
                    }
                }
            }
        }
    }
}

/// Copy a local file to a path or URL, atomically (streaming, multipart for large files).
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
