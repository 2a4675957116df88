//! A rotating Parquet writer: zstd, row groups sized for readers, a new file at a size or
//! row limit, atomic commits. Used by the `parquet_shards` sink and the rejects writer.

use std::path::PathBuf;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::io::AtomicFile;
use crate::stage::ShardInfo;

/// Limits for one output stream.
#[derive(Debug, Clone)]
pub struct ShardLimits {
    /// Start a new file once the current one reaches this many bytes (compressed).
    pub shard_size_bytes: u64,
    /// Start a new file after this many rows.
    pub shard_rows: u64,
    /// Maximum rows per row group.
    pub row_group_rows: usize,
    /// Flush a row group once its buffered (uncompressed) size passes this many bytes.
    pub row_group_bytes: usize,
    /// zstd level.
    pub zstd_level: i32,
}

/// Writes a stream of record batches into `dir/<stem>-<idx:05>.parquet` files.
pub struct RotatingWriter {
    out_dir: PathBuf,
    rel_dir: String,
    stem: String,
    node: String,
    schema: SchemaRef,
    limits: ShardLimits,
    cur: Option<ArrowWriter<AtomicFile>>,
    cur_rows: u64,
    cur_tokens: u64,
    next_idx: usize,
    done: Vec<ShardInfo>,
}

impl RotatingWriter {
    /// `out_dir/rel_dir/<stem>-<idx>.parquet`.
    pub fn new(
        out_dir: PathBuf,
        rel_dir: &str,
        stem: String,
        node: String,
        schema: SchemaRef,
        limits: ShardLimits,
    ) -> Self {
        RotatingWriter {
            out_dir,
            rel_dir: rel_dir.to_string(),
            stem,
            node,
            schema,
            limits,
            cur: None,
            cur_rows: 0,
            cur_tokens: 0,
            next_idx: 0,
            done: Vec::new(),
        }
    }

    fn rel_path(&self, idx: usize) -> String {
        format!("{}/{}-{:05}.parquet", self.rel_dir, self.stem, idx)
    }

    fn open(&mut self) -> Result<()> {
        let path = self.out_dir.join(self.rel_path(self.next_idx));
        let file = AtomicFile::create(&path)?;
        let level =
            ZstdLevel::try_new(self.limits.zstd_level).map_err(|e| Error::msg(e.to_string()))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(self.limits.row_group_rows.max(1)))
            .build();
        self.cur = Some(ArrowWriter::try_new(
            file,
            self.schema.clone(),
            Some(props),
        )?);
        self.cur_rows = 0;
        self.cur_tokens = 0;
        Ok(())
    }

    /// Write a batch; `tokens` gives each row's token count (for the manifest).
    pub fn write(&mut self, batch: &RecordBatch, tokens: &[u64]) -> Result<()> {
        let mut start = 0usize;
        while start < batch.num_rows() {
            if self.cur.is_none() {
                self.open()?;
            }
            let room = (self.limits.shard_rows.max(1) - self.cur_rows) as usize;
            let take = room.min(batch.num_rows() - start);
            let slice = batch.slice(start, take);
            let w = self.cur.as_mut().expect("open");
            w.write(&slice)?;
            if w.in_progress_size() >= self.limits.row_group_bytes {
                w.flush()?;
            }
            self.cur_rows += take as u64;
            self.cur_tokens += tokens[start..start + take].iter().sum::<u64>();
            start += take;
            let w = self.cur.as_ref().expect("open");
            let size = w.inner().bytes_written() + w.in_progress_size() as u64 / 4;
            if self.cur_rows >= self.limits.shard_rows || size >= self.limits.shard_size_bytes {
                self.close_current()?;
            }
        }
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some(w) = self.cur.take() {
            let file = w.into_inner()?;
            let c = file.commit()?;
            self.done.push(ShardInfo {
                path: self.rel_path(self.next_idx),
                node: self.node.clone(),
                rows: self.cur_rows,
                tokens: self.cur_tokens,
                bytes: c.bytes,
                sha256: c.sha256,
            });
            self.next_idx += 1;
        }
        Ok(())
    }

    /// Close the open file (if any) and return every file written.
    pub fn finish(&mut self) -> Result<Vec<ShardInfo>> {
        self.close_current()?;
        Ok(std::mem::take(&mut self.done))
    }
}
