//! A rotating Parquet writer: zstd, row groups sized for readers, a new file at a size or
//! row limit, atomic commits. Used by the `parquet_shards` sink and the rejects writer.
//!
//! **Parallel encoding.** Encoding and compressing a row group is most of a sink's work, so
//! when the writer is given the run's worker pool it cuts the incoming rows into row groups
//! and encodes each one as a pool task (`ArrowColumnWriter`s per column), while it goes on
//! receiving rows; the encoded column chunks are appended to the file strictly in row-group
//! order. The cut points depend only on the rows (row and byte limits), never on timing or
//! the thread count, and a row group encodes to the same bytes on any thread, so the files
//! are byte-identical for any `--threads`.
//!
//! **Memory.** At most `max(2, threads + 1)` row groups are being encoded at once, plus the
//! one being filled: about `(threads + 2) × row_group_bytes` of Arrow data in the worst case.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use crossbeam_channel::{bounded, Receiver};
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

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
    /// Cut a row group once its buffered (uncompressed Arrow) size reaches this many bytes.
    pub row_group_bytes: usize,
    /// Page compression.
    pub compression: Compression,
}

/// Columns of (nearly) unique strings: a dictionary never pays off there (the encoder would
/// hash every value before falling back to plain encoding).
pub const NO_DICTIONARY: &[&str] = &["id", "text", "url", "meta", "text_prefix", "detail"];
/// Columns whose min/max statistics help no reader (document text, JSON blobs).
pub const NO_STATISTICS: &[&str] = &["text", "meta", "text_prefix", "detail"];

/// One row group cut from the input: its encoding (in flight or done) and its counts.
struct RowGroup {
    result: Receiver<Result<Vec<ArrowColumnChunk>>>,
    rows: u64,
    tokens: u64,
    /// The planned shard is full after this row group (`shard_rows`).
    ends_shard: bool,
}

/// Run `f` as a task on `pool` (or right here, without one); its result arrives on the
/// returned receiver. Callers keep the receivers in submission order and take results with
/// [`take_ordered`], which is how pool work comes back in a deterministic order.
pub(crate) fn spawn_ordered<T: Send + 'static>(
    pool: Option<&rayon::ThreadPool>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Receiver<T> {
    let (tx, rx) = bounded(1);
    match pool {
        Some(pool) => pool.spawn(move || {
            let _ = tx.send(f());
        }),
        None => {
            let _ = tx.send(f());
        }
    }
    rx
}

/// The result of a task from [`spawn_ordered`]: waiting for it when `wait`, else only if it
/// is already done (`None` when not).
pub(crate) fn take_ordered<T>(rx: &Receiver<T>, wait: bool) -> Result<Option<T>> {
    if wait {
        rx.recv()
            .map(Some)
            .map_err(|_| Error::msg("a sink's pool task vanished"))
    } else {
        Ok(rx.try_recv().ok())
    }
}

/// How many tasks a sink keeps in flight on `pool` before it waits for the oldest: enough
/// to keep every worker busy, and bounded so memory is too.
pub(crate) fn inflight_limit(pool: Option<&rayon::ThreadPool>) -> usize {
    pool.map_or(1, |p| (p.current_num_threads() + 1).max(2))
}

/// Writes a stream of record batches into `dir/<stem>-<idx:05>.parquet` files.
pub struct RotatingWriter {
    out_dir: PathBuf,
    rel_dir: String,
    stem: String,
    node: String,
    schema: SchemaRef,
    limits: ShardLimits,
    pool: Option<Arc<rayon::ThreadPool>>,
    max_inflight: usize,
    props: Option<WriterProperties>,
    factory: Option<ArrowRowGroupWriterFactory>,
    // The row group being filled.
    buf: Vec<RecordBatch>,
    buf_rows: usize,
    buf_bytes: usize,
    buf_tokens: u64,
    /// Rows already planned into the current shard (cut row groups + `buf`).
    plan_rows: u64,
    inflight: VecDeque<RowGroup>,
    cur: Option<SerializedFileWriter<AtomicFile>>,
    cur_rows: u64,
    cur_tokens: u64,
    next_idx: usize,
    done: Vec<ShardInfo>,
}

/// Exact bytes of the Arrow data a batch (or a slice of one) holds.
fn batch_bytes(b: &RecordBatch) -> usize {
    b.columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// Encode the batches of one row group into column chunks.
fn encode(
    mut writers: Vec<ArrowColumnWriter>,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<ArrowColumnChunk>> {
    for b in batches {
        let mut w = writers.iter_mut();
        for (field, col) in schema.fields().iter().zip(b.columns()) {
            for leaf in compute_leaves(field, col)? {
                w.next()
                    .ok_or_else(|| Error::msg("parquet writer: more leaves than columns"))?
                    .write(&leaf)?;
            }
        }
    }
    writers
        .into_iter()
        .map(|w| w.close().map_err(Error::from))
        .collect()
}

impl RotatingWriter {
    /// `out_dir/rel_dir/<stem>-<idx>.parquet`. Row groups encode on the calling thread;
    /// see [`RotatingWriter::with_pool`].
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
            pool: None,
            max_inflight: 1,
            props: None,
            factory: None,
            buf: Vec::new(),
            buf_rows: 0,
            buf_bytes: 0,
            buf_tokens: 0,
            plan_rows: 0,
            inflight: VecDeque::new(),
            cur: None,
            cur_rows: 0,
            cur_tokens: 0,
            next_idx: 0,
            done: Vec::new(),
        }
    }

    /// Encode row groups as tasks on `pool` (the run's worker pool). The caller must not be
    /// one of the pool's own threads: it blocks while waiting for the oldest row group.
    pub fn with_pool(mut self, pool: Option<Arc<rayon::ThreadPool>>) -> Self {
        self.max_inflight = inflight_limit(pool.as_deref());
        self.pool = pool;
        self
    }

    fn rel_path(&self, idx: usize) -> String {
        format!("{}/{}-{:05}.parquet", self.rel_dir, self.stem, idx)
    }

    fn props(&mut self) -> Result<WriterProperties> {
        if let Some(p) = &self.props {
            return Ok(p.clone());
        }
        let mut b = WriterProperties::builder()
            .set_compression(self.limits.compression)
            .set_max_row_group_row_count(Some(self.limits.row_group_rows.max(1)));
        for c in NO_DICTIONARY {
            if self.schema.field_with_name(c).is_ok() {
                b = b.set_column_dictionary_enabled(ColumnPath::from(*c), false);
            }
        }
        for c in NO_STATISTICS {
            if self.schema.field_with_name(c).is_ok() {
                b = b.set_column_statistics_enabled(ColumnPath::from(*c), EnabledStatistics::None);
            }
        }
        let p = b.build();
        self.props = Some(p.clone());
        Ok(p)
    }

    /// A Parquet file writer (footer metadata includes the Arrow schema, as `ArrowWriter`
    /// writes it) and the factory of per-row-group column writers.
    fn file_writer<W: std::io::Write + Send>(
        &mut self,
        w: W,
    ) -> Result<(SerializedFileWriter<W>, ArrowRowGroupWriterFactory)> {
        let props = self.props()?;
        Ok(ArrowWriter::try_new(w, self.schema.clone(), Some(props))?.into_serialized_writer()?)
    }

    fn open(&mut self) -> Result<()> {
        let path = self.out_dir.join(self.rel_path(self.next_idx));
        let file = AtomicFile::create(&path)?.hash_in_background()?;
        let (w, _) = self.file_writer(file)?;
        self.cur = Some(w);
        self.cur_rows = 0;
        self.cur_tokens = 0;
        Ok(())
    }

    /// Write a batch; `tokens` gives each row's token count (for the manifest).
    pub fn write(&mut self, batch: &RecordBatch, tokens: &[u64]) -> Result<()> {
        let mut start = 0usize;
        while start < batch.num_rows() {
            let shard_room = self.limits.shard_rows.max(1).saturating_sub(self.plan_rows);
            let rg_room = self.limits.row_group_rows.max(1) - self.buf_rows;
            let take = (shard_room as usize)
                .min(rg_room)
                .min(batch.num_rows() - start)
                .max(1);
            let slice = batch.slice(start, take);
            self.buf_bytes += batch_bytes(&slice);
            self.buf.push(slice);
            self.buf_rows += take;
            self.buf_tokens += tokens[start..start + take].iter().sum::<u64>();
            self.plan_rows += take as u64;
            start += take;
            let ends_shard = self.plan_rows >= self.limits.shard_rows.max(1);
            if ends_shard
                || self.buf_rows >= self.limits.row_group_rows.max(1)
                || self.buf_bytes >= self.limits.row_group_bytes
            {
                self.cut(ends_shard)?;
            }
        }
        self.drain(false)
    }

    /// Close the row group being filled and start encoding it.
    fn cut(&mut self, ends_shard: bool) -> Result<()> {
        if self.buf_rows == 0 {
            return Ok(());
        }
        if self.factory.is_none() {
            let (_, f) = self.file_writer(std::io::sink())?;
            self.factory = Some(f);
        }
        let writers = self
            .factory
            .as_ref()
            .expect("factory")
            .create_column_writers(0)?;
        let batches = std::mem::take(&mut self.buf);
        let schema = self.schema.clone();
        let result = spawn_ordered(self.pool.as_deref(), move || {
            encode(writers, &schema, &batches)
        });
        self.inflight.push_back(RowGroup {
            result,
            rows: self.buf_rows as u64,
            tokens: self.buf_tokens,
            ends_shard,
        });
        if ends_shard {
            self.plan_rows = 0;
        }
        self.buf_rows = 0;
        self.buf_bytes = 0;
        self.buf_tokens = 0;
        Ok(())
    }

    /// Append encoded row groups in order: those already done, and (blocking) the oldest
    /// while too many are in flight, or all of them when `all`.
    fn drain(&mut self, all: bool) -> Result<()> {
        while let Some(front) = self.inflight.front() {
            let wait = all || self.inflight.len() > self.max_inflight;
            let Some(chunks) = take_ordered(&front.result, wait)? else {
                break;
            };
            let rg = self.inflight.pop_front().expect("front");
            self.append(chunks?, &rg)?;
        }
        Ok(())
    }

    fn append(&mut self, chunks: Vec<ArrowColumnChunk>, rg: &RowGroup) -> Result<()> {
        if self.cur.is_none() {
            self.open()?;
        }
        let w = self.cur.as_mut().expect("open");
        let mut g = w.next_row_group()?;
        for c in chunks {
            c.append_to_row_group(&mut g)?;
        }
        g.close()?;
        self.cur_rows += rg.rows;
        self.cur_tokens += rg.tokens;
        let full = w.bytes_written() as u64 >= self.limits.shard_size_bytes;
        if rg.ends_shard || full {
            self.close_current()?;
            if full && !rg.ends_shard {
                // The shard closed on size: the rows planned after this row group (still
                // in flight, or buffered) now open the next shard, unless a later row group
                // already ends a planned shard (then the plan after it is already right).
                if !self.inflight.iter().any(|r| r.ends_shard) {
                    self.plan_rows =
                        self.inflight.iter().map(|r| r.rows).sum::<u64>() + self.buf_rows as u64;
                }
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

    /// Encode what is buffered, close the open file (if any) and return every file written.
    pub fn finish(&mut self) -> Result<Vec<ShardInfo>> {
        self.cut(false)?;
        self.drain(true)?;
        self.close_current()?;
        Ok(std::mem::take(&mut self.done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::ZstdLevel;

    fn zstd(l: i32) -> Compression {
        Compression::ZSTD(ZstdLevel::try_new(l).unwrap())
    }

    fn batches() -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::UInt64, false),
            Field::new("text", DataType::Utf8, false),
        ]));
        let mut out = Vec::new();
        let mut n = 0u64;
        for size in [7usize, 300, 1, 45, 211, 64, 3, 128] {
            let ns: Vec<u64> = (n..n + size as u64).collect();
            let texts: Vec<String> = ns
                .iter()
                .map(|i| format!("文档 {i} ").repeat(1 + (*i as usize * 7) % 23))
                .collect();
            n += size as u64;
            out.push(
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(UInt64Array::from(ns)),
                        Arc::new(StringArray::from(texts)),
                    ],
                )
                .unwrap(),
            );
        }
        (schema, out)
    }

    /// Write everything; return (file name, bytes, rows per row group) per file.
    fn write_all(
        dir: &std::path::Path,
        pool: Option<usize>,
        limits: &ShardLimits,
    ) -> Vec<(String, Vec<u8>, Vec<i64>)> {
        let (schema, bs) = batches();
        let pool = pool.map(|t| {
            Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .unwrap(),
            )
        });
        let mut w = RotatingWriter::new(
            dir.to_path_buf(),
            "shards",
            "s".into(),
            "s".into(),
            schema,
            limits.clone(),
        )
        .with_pool(pool);
        for b in &bs {
            let tokens: Vec<u64> = (0..b.num_rows() as u64).collect();
            w.write(b, &tokens).unwrap();
        }
        let infos = w.finish().unwrap();
        infos
            .iter()
            .map(|i| {
                let bytes = std::fs::read(dir.join(&i.path)).unwrap();
                let r = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes.clone()))
                    .unwrap();
                let rgs: Vec<i64> = r
                    .metadata()
                    .row_groups()
                    .iter()
                    .map(|g| g.num_rows())
                    .collect();
                assert_eq!(rgs.iter().sum::<i64>() as u64, i.rows);
                (i.path.clone(), bytes, rgs)
            })
            .collect()
    }

    #[test]
    fn parallel_encoding_is_byte_identical_and_respects_every_limit() {
        for limits in [
            // Row limits only.
            ShardLimits {
                shard_size_bytes: u64::MAX,
                shard_rows: 250,
                row_group_rows: 64,
                row_group_bytes: usize::MAX,
                compression: zstd(1),
            },
            // Byte limits: small row groups by bytes, shards rotating on size.
            ShardLimits {
                shard_size_bytes: 6_000,
                shard_rows: 10_000,
                row_group_rows: 1_000,
                row_group_bytes: 8_000,
                compression: zstd(3),
            },
        ] {
            let runs: Vec<_> = [None, Some(1), Some(3)]
                .into_iter()
                .map(|p| {
                    let d = tempfile::tempdir().unwrap();
                    write_all(d.path(), p, &limits)
                })
                .collect();
            assert!(runs[0].len() > 1, "several shards: {}", runs[0].len());
            assert_eq!(runs[0], runs[1]);
            assert_eq!(runs[0], runs[2]);
            let total: i64 = runs[0].iter().flat_map(|f| f.2.iter()).sum();
            assert_eq!(total, 759);
            for (name, _, rgs) in &runs[0] {
                assert!(
                    rgs.iter().all(|&r| r as usize <= limits.row_group_rows),
                    "{name} {rgs:?}"
                );
                assert!(
                    rgs.iter().sum::<i64>() as u64 <= limits.shard_rows,
                    "{name} {rgs:?}"
                );
            }
        }
    }

    #[test]
    fn rows_come_back_in_order_with_the_arrow_schema() {
        let d = tempfile::tempdir().unwrap();
        let limits = ShardLimits {
            shard_size_bytes: 20_000,
            shard_rows: 300,
            row_group_rows: 50,
            row_group_bytes: 4_000,
            compression: zstd(1),
        };
        let files = write_all(d.path(), Some(2), &limits);
        let mut next = 0u64;
        for (_, bytes, _) in files {
            let r = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .unwrap()
                .build()
                .unwrap();
            for b in r {
                let b = b.unwrap();
                assert_eq!(b.schema().field(1).data_type(), &DataType::Utf8);
                let n = b.column(0).as_any().downcast_ref::<UInt64Array>().unwrap();
                let t = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
                for i in 0..b.num_rows() {
                    assert_eq!(n.value(i), next);
                    assert!(t.value(i).starts_with(&format!("文档 {next} ")));
                    next += 1;
                }
            }
        }
        assert_eq!(next, 759);
    }
}
