//! Per-rank locks: an exclusive `flock` on `ranks/r<rank>.lock`, held by the attempt
//! running the rank, with the holder's pid, host and start time for the refusal message.

use super::*;

pub(super) fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(super) fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "?".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Try an exclusive, non-blocking `flock` on `path` (created if missing). `Ok(None)`: another
/// open file description holds it.
pub(super) fn try_flock(path: &Path) -> Result<Option<File>> {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(f));
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        return Ok(None);
    }
    Err(Error::msg(format!(
        "{}: cannot lock: {e}; the run directory's filesystem must support flock (on Lustre, mount with -o flock)",
        path.display()
    )))
}

/// Who holds a lock, from what the holder wrote into the lock file.
pub(super) fn holder(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match (v["pid"].as_u64(), v["host"].as_str(), v["started"].as_u64()) {
        (Some(pid), Some(host), Some(t)) => format!(
            "pid {pid} on host {host}, started {}s ago",
            unix_secs().saturating_sub(t)
        ),
        _ => "pid unknown: it is just starting".into(),
    }
}

/// The exclusive lock of one rank, held for an attempt's lifetime (see the module doc).
/// Released when dropped or when the process dies.
#[derive(Debug)]
pub struct RankLock {
    _file: File,
}

impl RankLock {
    /// Lock rank `rank` of the run directory `out`, or fail with [`Error::RankBusy`].
    pub fn acquire(out: &Path, rank: usize) -> Result<RankLock> {
        Self::acquire_at(&lock_path(out, rank), rank)
    }

    /// Lock rank `rank` with the lock file `path`.
    pub fn acquire_at(path: &Path, rank: usize) -> Result<RankLock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let Some(mut f) = try_flock(path)? else {
            return Err(Error::RankBusy {
                rank,
                holder: holder(path),
                path: path.to_path_buf(),
            });
        };
        let info = json!({"pid": std::process::id(), "host": host_name(), "started": unix_secs()});
        // Only the holder writes, and only right after locking.
        f.set_len(0)
            .and_then(|_| f.write_all(format!("{info}\n").as_bytes()))
            .map_err(|e| Error::io(path, e))?;
        Ok(RankLock { _file: f })
    }
}
