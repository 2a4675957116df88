//! The object-store half of [`crate::storage`] (feature `cloud`): clients, streaming GETs,
//! listings and multipart uploads. Every function here takes a remote URL; the local half
//! and the dispatch live in `mod.rs`.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload};

use super::{part_size, READ_AHEAD_CHUNKS, UPLOAD_CONCURRENCY};
use crate::error::{Error, Result};

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

/// Open a remote object for streaming reading.
pub fn open(path: &str) -> Result<Box<dyn Read + Send>> {
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

/// Read a whole (small) object.
pub fn read_all(path: &str) -> Result<Vec<u8>> {
    let r = resolve(path)?;
    runtime()
        .block_on(async { r.store.get(&r.key).await?.bytes().await })
        .map(|b| b.to_vec())
        .map_err(|e| oerr(path, e))
}

/// Whether an object exists.
pub fn exists(path: &str) -> Result<bool> {
    let r = resolve(path)?;
    match runtime().block_on(r.store.head(&r.key)) {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(oerr(path, e)),
    }
}

/// Size of an object in bytes.
pub fn size(path: &str) -> Result<u64> {
    let r = resolve(path)?;
    runtime()
        .block_on(r.store.head(&r.key))
        .map(|m| m.size)
        .map_err(|e| oerr(path, e))
}

/// Delete an object (missing is not an error).
pub fn delete(path: &str) -> Result<()> {
    let r = resolve(path)?;
    match runtime().block_on(r.store.delete(&r.key)) {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(oerr(path, e)),
    }
}

/// Expand a remote pattern (see [`super::expand`]).
pub fn expand(pattern: &str, has_glob: bool) -> Result<Vec<String>> {
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

/// A multipart upload that becomes visible only on [`RemoteWriter::commit`]; dropped
/// uncommitted, it is aborted.
pub struct RemoteWriter {
    path: String,
    r: Remote,
    buf: Vec<u8>,
    part: usize,
    upload: Option<Box<dyn MultipartUpload>>,
    inflight: VecDeque<tokio::task::JoinHandle<object_store::Result<()>>>,
    failed: Option<String>,
    done: bool,
}

impl RemoteWriter {
    /// Start writing `path` (nothing is sent before the first full part).
    pub fn new(path: &str) -> Result<Self> {
        Ok(RemoteWriter {
            path: path.to_string(),
            r: resolve(path)?,
            buf: Vec::new(),
            part: part_size(),
            upload: None,
            inflight: VecDeque::new(),
            failed: None,
            done: false,
        })
    }

    /// Buffer `data`, uploading full parts.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= self.part {
            self.pump(false)?;
        }
        Ok(())
    }

    fn pump(&mut self, final_flush: bool) -> std::io::Result<()> {
        if let Some(f) = &self.failed {
            return Err(std::io::Error::other(f.clone()));
        }
        let rt = runtime();
        while self.buf.len() >= self.part
            || (final_flush && self.upload.is_some() && !self.buf.is_empty())
        {
            if self.upload.is_none() {
                let u = rt
                    .block_on(self.r.store.put_multipart(&self.r.key))
                    .map_err(|e| std::io::Error::other(format!("{}: {e}", self.path)))?;
                self.upload = Some(u);
            }
            let take = self.buf.len().min(self.part);
            let rest = self.buf.split_off(take);
            let chunk = std::mem::replace(&mut self.buf, rest);
            let fut = self
                .upload
                .as_mut()
                .map(|u| u.put_part(PutPayload::from(chunk)))
                .ok_or_else(|| std::io::Error::other("no upload"))?;
            self.inflight.push_back(rt.spawn(fut));
            while self.inflight.len() >= UPLOAD_CONCURRENCY
                || (final_flush && self.buf.is_empty() && !self.inflight.is_empty())
            {
                let Some(h) = self.inflight.pop_front() else {
                    break;
                };
                let err = match rt.block_on(h) {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(e) = err {
                    let msg = format!("{}: upload part failed: {e}", self.path);
                    self.failed = Some(msg.clone());
                    return Err(std::io::Error::other(msg));
                }
            }
        }
        Ok(())
    }

    /// Complete the upload (or send one PUT when everything fit in one part).
    pub fn commit(&mut self) -> Result<()> {
        let path = self.path.clone();
        self.pump(true).map_err(|e| Error::io(&path, e))?;
        let rt = runtime();
        match self.upload.as_mut() {
            Some(u) => {
                rt.block_on(u.complete()).map_err(|e| oerr(&path, e))?;
            }
            None => {
                let data = std::mem::take(&mut self.buf);
                rt.block_on(self.r.store.put(&self.r.key, PutPayload::from(data)))
                    .map_err(|e| oerr(&path, e))?;
            }
        }
        self.upload = None;
        self.done = true;
        Ok(())
    }
}

impl Drop for RemoteWriter {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let rt = runtime();
        for h in self.inflight.drain(..) {
            h.abort();
        }
        if let Some(mut u) = self.upload.take() {
            if let Err(e) = rt.block_on(u.abort()) {
                tracing::warn!("{}: aborting multipart upload failed: {e}", self.path);
            }
        }
    }
}
