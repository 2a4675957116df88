//! Append-only record store that keeps the newest records in memory and spills the rest
//! to a scratch file, so per-document signatures (and, for exact verification, shingle
//! sets) cost disk, not RAM.
//!
//! Records are `u32` words. Fixed-size stores (signatures) need no per-record memory;
//! variable-size stores (shingle sets) keep one `u64` offset per record (8 bytes/doc).
//! Reads of spilled records use positional reads (`pread`), served by the OS page cache
//! when hot. The file is little-endian and private to one stage instance; it is deleted
//! when the store is dropped.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// See the module docs.
#[derive(Debug)]
pub struct SpillStore {
    path: PathBuf,
    file: Option<File>,
    /// `Some(words)` for fixed-size records.
    fixed: Option<usize>,
    /// Start word of every record (variable-size stores only).
    offsets: Vec<u64>,
    /// Words already written to the file.
    flushed: u64,
    /// Words not yet written (they follow `flushed`).
    buf: Vec<u32>,
    buf_cap: usize,
    records: u64,
}

impl SpillStore {
    /// A store spilling to `path` once more than `buf_words` words are buffered.
    /// `fixed` is the record size in words for fixed-size records.
    pub fn new(path: PathBuf, fixed: Option<usize>, buf_words: usize) -> Self {
        SpillStore {
            path,
            file: None,
            fixed,
            offsets: Vec::new(),
            flushed: 0,
            buf: Vec::new(),
            buf_cap: buf_words.max(1),
            records: 0,
        }
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.records
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Resident bytes (buffer + offsets), excluding the file.
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity() * 4 + self.offsets.capacity() * 8
    }

    /// Bytes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.flushed * 4
    }

    /// Append a record; return its number.
    pub fn push(&mut self, rec: &[u32]) -> Result<u64> {
        if let Some(w) = self.fixed {
            if rec.len() != w {
                return Err(Error::msg(format!(
                    "record of {} words in a store of {w}-word records",
                    rec.len()
                )));
            }
        } else {
            self.offsets.push(self.flushed + self.buf.len() as u64);
        }
        if self.buf.capacity() == 0 {
            // Reserve once so the buffer never reallocates past its cap.
            self.buf.reserve_exact(self.buf_cap + rec.len().max(1024));
        }
        self.buf.extend_from_slice(rec);
        self.records += 1;
        if self.buf.len() > self.buf_cap {
            self.spill()?;
        }
        Ok(self.records - 1)
    }

    fn spill(&mut self) -> Result<()> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            let f = File::options()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(&self.path)
                .map_err(|e| Error::io(&self.path, e))?;
            self.file = Some(f);
        }
        let mut bytes = Vec::with_capacity(self.buf.len() * 4);
        for w in &self.buf {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(&bytes).map_err(|e| Error::io(&self.path, e))?;
        }
        self.flushed += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Read record `i` into `out` (cleared first).
    pub fn get(&self, i: u64, out: &mut Vec<u32>) -> Result<()> {
        out.clear();
        if i >= self.records {
            return Err(Error::msg(format!(
                "record {i} out of range ({} records)",
                self.records
            )));
        }
        let (start, end) = match self.fixed {
            Some(w) => (i * w as u64, (i + 1) * w as u64),
            None => {
                let s = self.offsets[i as usize];
                let e = self
                    .offsets
                    .get(i as usize + 1)
                    .copied()
                    .unwrap_or(self.flushed + self.buf.len() as u64);
                (s, e)
            }
        };
        let mut pos = start;
        if pos < self.flushed {
            let disk_end = end.min(self.flushed);
            let mut bytes = vec![0u8; ((disk_end - pos) * 4) as usize];
            let f = self
                .file
                .as_ref()
                .ok_or_else(|| Error::msg("spill file missing"))?;
            f.read_exact_at(&mut bytes, pos * 4)
                .map_err(|e| Error::io(&self.path, e))?;
            out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            pos = disk_end;
        }
        if pos < end {
            let s = (pos - self.flushed) as usize;
            let e = (end - self.flushed) as usize;
            out.extend_from_slice(&self.buf[s..e]);
        }
        Ok(())
    }
}

impl Drop for SpillStore {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_and_variable_records_round_trip_across_the_spill_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = SpillStore::new(dir.path().join("s/sig.bin"), Some(3), 5);
        let mut v = SpillStore::new(dir.path().join("s/sh.bin"), None, 4);
        for i in 0..50u32 {
            f.push(&[i, i + 1, i + 2]).unwrap();
            let rec: Vec<u32> = (0..(i % 4)).map(|k| i * 10 + k).collect();
            v.push(&rec).unwrap();
        }
        assert!(f.disk_bytes() > 0 && v.disk_bytes() > 0);
        let mut out = Vec::new();
        for i in 0..50u32 {
            f.get(i as u64, &mut out).unwrap();
            assert_eq!(out, vec![i, i + 1, i + 2]);
            v.get(i as u64, &mut out).unwrap();
            assert_eq!(out, (0..(i % 4)).map(|k| i * 10 + k).collect::<Vec<_>>());
        }
        assert!(f.get(50, &mut out).is_err());
        assert!(f.push(&[1]).is_err());
        let p = dir.path().join("s/sig.bin");
        assert!(p.exists());
        drop(f);
        assert!(!p.exists());
    }
}
