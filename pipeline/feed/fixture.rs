//! Packed-shard fixtures for tests and benchmarks of the loader and the training step.
//!
//! Writes Parquet files with the packed schema exactly as `parquet_shards` writes them for
//! packed documents (`id` utf8, `input_ids` list<uint32>, `n_tokens` uint32, `doc_offsets`
//! list<uint32>, `doc_ids` list<utf8>, `source_mix` list<struct<source utf8, tokens
//! uint32>>, `n_pad` uint32), from real token sequences. The packing is a plain greedy
//! concatenation (a document that does not fit continues in the next row); the real
//! packer is the `pack` stage: this exists so the loader's tests do not depend on it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, ListBuilder, StringBuilder, StructBuilder, UInt32Builder};
use arrow::datatypes::{DataType, Field, Fields, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};

/// One packed row.
#[derive(Debug, Clone, Default)]
pub struct PackedRow {
    /// Tokens, padding included.
    pub input_ids: Vec<u32>,
    /// Start of each document segment.
    pub doc_offsets: Vec<u32>,
    /// Ids of the segments' documents.
    pub doc_ids: Vec<String>,
    /// Padding tokens at the end.
    pub n_pad: u32,
}

/// Greedily pack `(doc_id, tokens)` into rows of `row_len` tokens, padding the last row
/// with `pad_id`.
pub fn pack_greedy(docs: &[(String, Vec<u32>)], row_len: usize, pad_id: u32) -> Vec<PackedRow> {
    let mut rows = Vec::new();
    let mut cur = PackedRow::default();
    for (id, toks) in docs {
        let mut rest: &[u32] = toks;
        while !rest.is_empty() {
            let room = row_len - cur.input_ids.len();
            let take = room.min(rest.len());
            cur.doc_offsets.push(cur.input_ids.len() as u32);
            cur.doc_ids.push(id.clone());
            cur.input_ids.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if cur.input_ids.len() == row_len {
                rows.push(std::mem::take(&mut cur));
            }
        }
    }
    if !cur.input_ids.is_empty() {
        cur.n_pad = (row_len - cur.input_ids.len()) as u32;
        cur.input_ids.resize(row_len, pad_id);
        rows.push(cur);
    }
    rows
}

/// The packed-shard Arrow schema.
pub fn packed_schema() -> Arc<Schema> {
    let item_u32 = Arc::new(Field::new("item", DataType::UInt32, true));
    let item_str = Arc::new(Field::new("item", DataType::Utf8, true));
    let mix_fields = Fields::from(vec![
        Field::new("source", DataType::Utf8, true),
        Field::new("tokens", DataType::UInt32, true),
    ]);
    let item_mix = Arc::new(Field::new("item", DataType::Struct(mix_fields), true));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("input_ids", DataType::List(item_u32.clone()), true),
        Field::new("n_tokens", DataType::UInt32, false),
        Field::new("doc_offsets", DataType::List(item_u32), true),
        Field::new("doc_ids", DataType::List(item_str), true),
        Field::new("source_mix", DataType::List(item_mix), true),
        Field::new("n_pad", DataType::UInt32, true),
    ]))
}

/// Write rows as one zstd Parquet file.
pub fn write_shard(path: &Path, rows: &[PackedRow], source: &str) -> Result<()> {
    let schema = packed_schema();
    let mut id = StringBuilder::new();
    let mut ids = ListBuilder::new(UInt32Builder::new());
    let mut n_tokens = UInt32Builder::new();
    let mut offs = ListBuilder::new(UInt32Builder::new());
    let mut doc_ids = ListBuilder::new(StringBuilder::new());
    let mix_fields = Fields::from(vec![
        Field::new("source", DataType::Utf8, true),
        Field::new("tokens", DataType::UInt32, true),
    ]);
    let mut mix = ListBuilder::new(StructBuilder::from_fields(mix_fields, 1));
    let mut n_pad = UInt32Builder::new();
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("shard");
    for (i, r) in rows.iter().enumerate() {
        id.append_value(format!("{stem}-{i}"));
        ids.values().append_slice(&r.input_ids);
        ids.append(true);
        let real = r.input_ids.len() as u32 - r.n_pad;
        n_tokens.append_value(real);
        offs.values().append_slice(&r.doc_offsets);
        offs.append(true);
        for d in &r.doc_ids {
            doc_ids.values().append_value(d);
        }
        doc_ids.append(true);
        let sb = mix.values();
        sb.field_builder::<StringBuilder>(0)
            .ok_or_else(|| Error::msg("struct builder"))?
            .append_value(source);
        sb.field_builder::<UInt32Builder>(1)
            .ok_or_else(|| Error::msg("struct builder"))?
            .append_value(real);
        sb.append(true);
        mix.append(true);
        n_pad.append_value(r.n_pad);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(ids.finish()),
        Arc::new(n_tokens.finish()),
        Arc::new(offs.finish()),
        Arc::new(doc_ids.finish()),
        Arc::new(mix.finish()),
        Arc::new(n_pad.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let f = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = ArrowWriter::try_new(f, schema, Some(props))?;
    w.write(&batch)?;
    w.close()?;
    Ok(())
}

/// Tokenize the `text` of a JSONL file with a `tokenizer.json`, appending `eos`.
pub fn tokenize_jsonl(
    jsonl: &Path,
    tokenizer: &Path,
    eos: u32,
    max_docs: usize,
) -> Result<Vec<(String, Vec<u32>)>> {
    let tok = tokenizers::Tokenizer::from_file(tokenizer)
        .map_err(|e| Error::msg(format!("{}: {e}", tokenizer.display())))?;
    let text = std::fs::read_to_string(jsonl).map_err(|e| Error::io(jsonl, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().take(max_docs) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let Some(t) = v.get("text").and_then(|t| t.as_str()) else {
            continue;
        };
        let id = v
            .get("id")
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("doc{i}"));
        let enc = tok
            .encode(t, false)
            .map_err(|e| Error::msg(format!("tokenize: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        ids.push(eos);
        out.push((id, ids));
    }
    Ok(out)
}

/// Pack documents into `n_shards` files `packed-<i>.parquet` under `dir` (rows dealt
/// round-robin); returns the paths.
pub fn write_packed_dir(
    dir: &Path,
    docs: &[(String, Vec<u32>)],
    row_len: usize,
    pad_id: u32,
    n_shards: usize,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let rows = pack_greedy(docs, row_len, pad_id);
    let mut per: Vec<Vec<PackedRow>> = vec![Vec::new(); n_shards.max(1)];
    let n = per.len();
    for (i, r) in rows.into_iter().enumerate() {
        per[i % n].push(r);
    }
    let mut paths = Vec::new();
    for (i, rows) in per.iter().enumerate() {
        let p = dir.join(format!("packed-{i:05}.parquet"));
        write_shard(&p, rows, "fixture")?;
        paths.push(p);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_packing_splits_and_pads() {
        let docs = vec![
            ("a".to_string(), vec![1, 2, 3]),
            ("b".to_string(), vec![4, 5, 6, 7, 8]),
        ];
        let rows = pack_greedy(&docs, 4, 0);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].input_ids, vec![1, 2, 3, 4]);
        assert_eq!(rows[0].doc_offsets, vec![0, 3]);
        assert_eq!(rows[1].input_ids, vec![5, 6, 7, 8]);
        assert_eq!(rows[1].doc_offsets, vec![0]);
        assert_eq!(rows[1].n_pad, 0);
        let rows = pack_greedy(&docs[..1], 5, 9);
        assert_eq!(rows[0].input_ids, vec![1, 2, 3, 9, 9]);
        assert_eq!(rows[0].n_pad, 2);
    }
}
