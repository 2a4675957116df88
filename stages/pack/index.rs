//! The `pack` stage's document index: `docs_index/<node>-r<rank>-NNNNN.parquet` in the run
//! directory, one row per document that went into a sequence.
//!
//! Packed shards hold sequences, not documents: once documents are joined, their language,
//! length, attrs (quality scores, dedup cluster size) and text are gone from the output.
//! `sluice report` and `sluice audit` need them to describe a packed run (languages,
//! lengths, dedup clusters, kept samples), so `pack` writes them on the side as it packs.
//!
//! **Schema.** The document-shard schema ([`crate::arrow_io::doc_schema`] with text), so
//! every audit query written for `docs` runs on the `docs_index` table unchanged:
//! `id, source, text, lang, url, tokens, n_tokens, n_chars, attrs, meta`, where
//! * `tokens` is always NULL (the tokens are in the packed rows);
//! * `n_tokens` counts the document's tokens as packed (EOS included), `n_chars` its
//!   characters (the whole text, even where `text` is cut);
//! * `text` is empty except for a bounded sample: the [`SAMPLE_DOCS`] documents with the
//!   smallest hash of their id (xxh3, seeded), cut to [`SAMPLE_CHARS`] characters. A
//!   bottom-k sample by hash is the same set whatever the arrival order or thread count.
//!
//! **Memory.** One pending batch of [`BATCH_DOCS`] rows without text, the sample (at most
//! `SAMPLE_DOCS × SAMPLE_CHARS` characters), and the writer's row group.
//! **Disk.** About 40–100 bytes per document (zstd); text only for the sample.
//! Upsampled copies are one row (the document as received), not one per copy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array, UInt64Array};
use parquet::basic::{Compression, ZstdLevel};

use crate::document::Document;
use crate::error::{Error, Result};
use crate::shard_writer::{RotatingWriter, ShardLimits};

/// Documents whose text is kept (per node and rank).
pub const SAMPLE_DOCS: usize = 64;
/// Characters of text kept per sampled document.
pub const SAMPLE_CHARS: usize = 600;
/// Rows buffered before they are handed to the writer.
const BATCH_DOCS: usize = 2048;
/// Directory of the index in the run directory.
pub const DIR: &str = "docs_index";

/// One indexed document: text emptied (or cut), no tokens, with its true counts.
struct Entry {
    doc: Document,
    n_tokens: u32,
    n_chars: u64,
}

/// The document index writer of one `pack` node and rank.
pub struct DocIndex {
    out_dir: PathBuf,
    stem: String,
    node: String,
    seed: u64,
    writer: Option<RotatingWriter>,
    pending: Vec<Entry>,
    /// Bottom-k by (hash, id): the sampled documents, text cut to `SAMPLE_CHARS`.
    sample: BTreeMap<(u64, String), Entry>,
    /// Rows written (sample included, once finished).
    pub rows: u64,
    /// The run's `attrs` column type (given by the runtime before the first document).
    pub attrs: Arc<crate::attrs::AttrSchema>,
}

impl DocIndex {
    /// The index of node `node`, rank `rank`, under `out_dir/docs_index/`. Nothing is
    /// created before the first document.
    pub fn new(out_dir: PathBuf, node: &str, rank: usize, seed: u64) -> Self {
        DocIndex {
            out_dir,
            stem: format!("{node}-r{rank:04}"),
            node: node.to_string(),
            seed,
            writer: None,
            pending: Vec::new(),
            sample: BTreeMap::new(),
            rows: 0,
            attrs: Arc::default(),
        }
    }

    /// Index one document packed with `n_tokens` tokens.
    pub fn add(&mut self, doc: &Document, n_tokens: usize) -> Result<()> {
        let key = (
            xxhash_rust::xxh3::xxh3_64_with_seed(doc.id.as_bytes(), self.seed),
            doc.id.clone(),
        );
        let entry = |text: String| Entry {
            doc: Document {
                id: doc.id.clone(),
                source: doc.source.clone(),
                text,
                lang: doc.lang.clone(),
                attrs: doc.attrs.clone(),
                meta: doc.meta.clone(),
                ..Default::default()
            },
            n_tokens: n_tokens.min(u32::MAX as usize) as u32,
            n_chars: doc.text.chars().count() as u64,
        };
        let full = self.sample.len() >= SAMPLE_DOCS;
        if full && self.sample.last_key_value().is_some_and(|(k, _)| *k < key) {
            self.pending.push(entry(String::new()));
        } else {
            let text: String = doc.text.chars().take(SAMPLE_CHARS).collect();
            self.sample.insert(key, entry(text));
            if self.sample.len() > SAMPLE_DOCS {
                let (_, mut out) = self.sample.pop_last().expect("non-empty");
                out.doc.text.clear();
                self.pending.push(out);
            }
        }
        if self.pending.len() >= BATCH_DOCS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut self.pending);
        self.write(entries)
    }

    fn write(&mut self, entries: Vec<Entry>) -> Result<()> {
        let schema = crate::arrow_io::doc_schema(true, &self.attrs);
        let w = self.writer.get_or_insert_with(|| {
            RotatingWriter::new(
                self.out_dir.clone(),
                DIR,
                self.stem.clone(),
                self.node.clone(),
                schema.clone(),
                ShardLimits {
                    shard_size_bytes: 256 << 20,
                    shard_rows: u64::MAX,
                    row_group_rows: 65536,
                    row_group_bytes: 16 << 20,
                    compression: Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")),
                },
            )
        });
        let n_tokens: Vec<u32> = entries.iter().map(|e| e.n_tokens).collect();
        let n_chars: Vec<u64> = entries.iter().map(|e| e.n_chars).collect();
        let tokens: Vec<u64> = n_tokens.iter().map(|&t| t as u64).collect();
        let docs: Vec<Document> = entries.into_iter().map(|e| e.doc).collect();
        let batch = crate::arrow_io::docs_to_batch(&docs, true, &self.attrs)?;
        // The batch counted the (emptied) text and the absent tokens: put the true counts in.
        let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
        for (name, col) in [
            (
                "n_tokens",
                Arc::new(UInt32Array::from(n_tokens)) as ArrayRef,
            ),
            ("n_chars", Arc::new(UInt64Array::from(n_chars)) as ArrayRef),
        ] {
            let i = schema
                .index_of(name)
                .map_err(|_| Error::msg(format!("docs_index: no `{name}` column")))?;
            cols[i] = col;
        }
        let batch = RecordBatch::try_new(batch.schema(), cols)?;
        self.rows += batch.num_rows() as u64;
        w.write(&batch, &tokens)
    }

    /// Write the sample and what is pending, and close the files. Returns the files'
    /// paths relative to the run directory.
    pub fn finish(&mut self) -> Result<Vec<String>> {
        self.flush()?;
        let sample: Vec<Entry> = std::mem::take(&mut self.sample).into_values().collect();
        if !sample.is_empty() {
            self.write(sample)?;
        }
        match self.writer.as_mut() {
            Some(w) => Ok(w.finish()?.into_iter().map(|s| s.path).collect()),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn doc(i: usize) -> Document {
        Document {
            id: format!("d{i}"),
            source: if i % 3 == 0 { "wiki" } else { "web" }.into(),
            text: "中文文本。".repeat(1 + i % 400),
            lang: Some("zh".into()),
            ..Default::default()
        }
    }

    fn read(dir: &std::path::Path) -> Vec<(String, String, u32, u64)> {
        let mut out = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(dir.join(DIR))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
                .unwrap()
                .build()
                .unwrap();
            for b in r {
                let b = b.unwrap();
                let ids = crate::arrow_io::string_column(&b, "id").unwrap().unwrap();
                let texts = crate::arrow_io::string_column(&b, "text").unwrap().unwrap();
                let nt = b.column_by_name("n_tokens").unwrap();
                let nt = nt.as_any().downcast_ref::<UInt32Array>().unwrap();
                let nc = b.column_by_name("n_chars").unwrap();
                let nc = nc.as_any().downcast_ref::<UInt64Array>().unwrap();
                for i in 0..b.num_rows() {
                    out.push((
                        ids[i].clone().unwrap(),
                        texts[i].clone().unwrap(),
                        nt.value(i),
                        nc.value(i),
                    ));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn every_document_once_true_counts_and_a_bounded_order_free_sample() {
        let n = 5000;
        let mut runs = Vec::new();
        for reverse in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let mut ix = DocIndex::new(tmp.path().to_path_buf(), "pack", 0, 7);
            let order: Vec<usize> = if reverse {
                (0..n).rev().collect()
            } else {
                (0..n).collect()
            };
            for i in order {
                ix.add(&doc(i), 10 + i).unwrap();
            }
            let files = ix.finish().unwrap();
            assert_eq!(files.len(), 1);
            assert!(files[0].starts_with("docs_index/pack-r0000-"), "{files:?}");
            assert_eq!(ix.rows, n as u64);
            runs.push(read(tmp.path()));
        }
        let rows = &runs[0];
        assert_eq!(rows.len(), n);
        let sampled: Vec<_> = rows.iter().filter(|r| !r.1.is_empty()).collect();
        assert_eq!(sampled.len(), SAMPLE_DOCS);
        assert!(sampled.iter().all(|r| r.1.chars().count() <= SAMPLE_CHARS));
        for (id, _, nt, nc) in rows {
            let i: usize = id[1..].parse().unwrap();
            assert_eq!(*nt as usize, 10 + i);
            assert_eq!(*nc as usize, 5 * (1 + i % 400));
        }
        // Same rows and the same sample whatever the arrival order.
        assert_eq!(runs[0], runs[1]);
    }
}
