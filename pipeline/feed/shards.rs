//! Shard discovery, fingerprinting and decoding for the `feed` loader.
//!
//! A [`ShardSet`] is the canonical, content-addressed list of packed shards: sorted by
//! `(sha256, path)`, so moving or renaming a run directory changes nothing, while a
//! changed, added or removed shard changes the [`ShardSet::fingerprint`] that a resumed
//! loader checks. [`ShardRows`] is one decoded shard: the three packed columns the loader
//! needs (`input_ids`, `doc_offsets`, `n_pad`), flattened, with every row checked.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, ListArray, UInt32Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One packed shard file.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardInfo {
    /// Where the file is.
    pub path: PathBuf,
    /// Hex sha256 of the file's bytes (from `manifest.json`, or computed).
    pub sha256: String,
    /// Rows in the file (from the Parquet footer).
    pub rows: u64,
}

/// The canonical list of shards a loader reads.
#[derive(Debug, Clone)]
pub struct ShardSet {
    /// Shards sorted by `(sha256, path)`; a shard's index here is its canonical id.
    pub shards: Vec<ShardInfo>,
}

use crate::io::sha256_file;

/// Rows of a Parquet file and whether it has the packed schema (an `input_ids` column).
fn footer(path: &Path) -> Result<(u64, bool)> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| Error::parquet_at(path, e))?;
    let rows = b.metadata().file_metadata().num_rows().max(0) as u64;
    let packed = b.schema().field_with_name("input_ids").is_ok();
    Ok((rows, packed))
}

/// Shard paths with their manifest sha256, when the manifest has one.
type ShardList = Vec<(PathBuf, Option<String>)>;

fn manifest_shards(dir: &Path) -> Result<Option<ShardList>> {
    let m = dir.join("manifest.json");
    if !m.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&m).map_err(|e| Error::io(&m, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::msg(format!("{}: not a sluice manifest: {e}", m.display())))?;
    let list = v
        .get("shards")
        .and_then(|s| s.as_array())
        .ok_or_else(|| Error::msg(format!("{}: no `shards` list", m.display())))?;
    let mut out = Vec::new();
    for s in list {
        let Some(p) = s.get("path").and_then(|p| p.as_str()) else {
            return Err(Error::msg(format!(
                "{}: a shard entry has no `path`",
                m.display()
            )));
        };
        let p = Path::new(p);
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        };
        let sha = s.get("sha256").and_then(|h| h.as_str()).map(str::to_string);
        out.push((full, sha));
    }
    Ok(Some(out))
}

fn parquet_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for e in rd {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let p = e.path();
        if p.extension().is_some_and(|x| x == "parquet") && p.is_file() {
            out.push(p);
        }
    }
    Ok(out)
}

impl ShardSet {
    /// Discover packed shards under `inputs`. Each input is a run directory (its
    /// `manifest.json` lists shards and their sha256; otherwise `shards/*.parquet` or
    /// `*.parquet` are hashed here), a directory of Parquet files, or one Parquet file.
    /// Files without an `input_ids` column (document shards, rejects) are skipped.
    pub fn discover(inputs: &[PathBuf]) -> Result<ShardSet> {
        let mut cands: Vec<(PathBuf, Option<String>)> = Vec::new();
        for inp in inputs {
            if inp.is_dir() {
                if let Some(m) = manifest_shards(inp)? {
                    cands.extend(m);
                } else {
                    let sub = inp.join("shards");
                    let d = if sub.is_dir() { sub } else { inp.clone() };
                    cands.extend(parquet_files_in(&d)?.into_iter().map(|p| (p, None)));
                }
            } else if inp.is_file() {
                cands.push((inp.clone(), None));
            } else {
                return Err(Error::msg(format!(
                    "{}: no such run directory or Parquet file",
                    inp.display()
                )));
            }
        }
        let mut shards = Vec::new();
        let mut unpacked = 0usize;
        for (path, sha) in cands {
            let (rows, packed) = footer(&path)?;
            if !packed {
                unpacked += 1;
                continue;
            }
            let sha256 = match sha {
                Some(s) => s,
                None => sha256_file(&path)?,
            };
            shards.push(ShardInfo { path, sha256, rows });
        }
        shards.sort_by(|a, b| (&a.sha256, &a.path).cmp(&(&b.sha256, &b.path)));
        if shards.is_empty() {
            let hint = match unpacked {
                0 => String::new(),
                n => format!(
                    "; the {n} shard(s) there hold documents, not training sequences: add a `tokenize` \
                     and a `pack` node before the sink (as configs/quickstart_packed.yaml does) \
                     and run again"
                ),
            };
            return Err(Error::msg(format!(
                "no packed shards (Parquet with an `input_ids` column) under {}{hint}",
                inputs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(ShardSet { shards })
    }

    /// sha256 over `"<sha256> <rows>\n"` of every shard in canonical order: equal for the
    /// same shard contents wherever they live, different after any shard change.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for s in &self.shards {
            h.update(format!("{} {}\n", s.sha256, s.rows).as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// One decoded shard: the packed columns, flattened.
#[derive(Debug, Default)]
pub struct ShardRows {
    /// All `input_ids`, row after row.
    pub ids: Vec<u32>,
    /// Row `r` is `ids[row_start[r]..row_start[r + 1]]`.
    pub row_start: Vec<usize>,
    /// All `doc_offsets`, row after row.
    pub offs: Vec<u32>,
    /// Row `r`'s offsets are `offs[off_start[r]..off_start[r + 1]]`.
    pub off_start: Vec<usize>,
    /// Padding tokens at the end of each row.
    pub n_pad: Vec<u32>,
    /// Whether each row passed the checks in [`row_ok`]; bad rows are skipped.
    pub valid: Vec<bool>,
}

/// A row is usable when it has at least one real token, `n_pad <= len`, and its
/// `doc_offsets` start at 0, strictly increase and stay below the real length.
/// (`python/sluice_feed` applies the same rule.)
pub fn row_ok(len: usize, n_pad: u32, offs: &[u32]) -> bool {
    let n_pad = n_pad as usize;
    if n_pad >= len {
        return false;
    }
    let real = len - n_pad;
    if offs.first() != Some(&0) {
        return false;
    }
    offs.windows(2).all(|w| w[0] < w[1]) && offs.iter().all(|&o| (o as usize) < real)
}

impl ShardRows {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.n_pad.len()
    }
    /// Row `r`'s tokens.
    pub fn row(&self, r: usize) -> &[u32] {
        &self.ids[self.row_start[r]..self.row_start[r + 1]]
    }
    /// Row `r`'s document offsets.
    pub fn row_offs(&self, r: usize) -> &[u32] {
        &self.offs[self.off_start[r]..self.off_start[r + 1]]
    }
    /// Real (non-padding) tokens of row `r`.
    pub fn real_len(&self, r: usize) -> usize {
        self.row(r).len() - self.n_pad[r] as usize
    }
    /// Bad rows in this shard.
    pub fn bad_rows(&self) -> usize {
        self.valid.iter().filter(|v| !**v).count()
    }

    /// Decode the packed columns of `path`. A row with a null in any of the three
    /// columns, or failing [`row_ok`], is kept as an invalid row (so row numbers stay
    /// those of the file) and skipped by the loader.
    pub fn load(path: &Path) -> Result<ShardRows> {
        let perr = |e: &dyn std::fmt::Display| Error::schema(path, e.to_string());
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        let b =
            ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| Error::parquet_at(path, e))?;
        let schema = b.schema().clone();
        let mut roots = Vec::new();
        for name in ["input_ids", "doc_offsets", "n_pad"] {
            let i = schema
                .index_of(name)
                .map_err(|_| perr(&format!("packed shard has no `{name}` column")))?;
            roots.push(i);
        }
        let mask = ProjectionMask::roots(b.parquet_schema(), roots);
        let reader = b
            .with_projection(mask)
            .with_batch_size(1024)
            .build()
            .map_err(|e| Error::parquet_at(path, e))?;
        let mut out = ShardRows {
            row_start: vec![0],
            off_start: vec![0],
            ..Default::default()
        };
        for batch in reader {
            let batch = batch.map_err(|e| Error::parquet_at(path, e))?;
            let list = |name: &str| -> Result<ListArray> {
                let c = batch
                    .column_by_name(name)
                    .ok_or_else(|| perr(&format!("missing column `{name}`")))?;
                c.as_any()
                    .downcast_ref::<ListArray>()
                    .cloned()
                    .ok_or_else(|| {
                        perr(&format!("`{name}` is {}, want list<uint32>", c.data_type()))
                    })
            };
            let ids = list("input_ids")?;
            let offs = list("doc_offsets")?;
            let pad_col = batch
                .column_by_name("n_pad")
                .ok_or_else(|| perr(&"missing column `n_pad`"))?;
            let pads = pad_col
                .as_any()
                .downcast_ref::<UInt32Array>()
                .ok_or_else(|| perr(&format!("`n_pad` is {}, want uint32", pad_col.data_type())))?;
            let ids_v = ids
                .values()
                .as_any()
                .downcast_ref::<UInt32Array>()
                .ok_or_else(|| perr(&"`input_ids` items are not uint32"))?;
            let offs_v = offs
                .values()
                .as_any()
                .downcast_ref::<UInt32Array>()
                .ok_or_else(|| perr(&"`doc_offsets` items are not uint32"))?;
            let io = ids.value_offsets();
            let oo = offs.value_offsets();
            for r in 0..batch.num_rows() {
                let present = ids.is_valid(r) && offs.is_valid(r) && pads.is_valid(r);
                let (i0, i1) = (io[r] as usize, io[r + 1] as usize);
                let (o0, o1) = (oo[r] as usize, oo[r + 1] as usize);
                let pad = if pads.is_valid(r) { pads.value(r) } else { 0 };
                let ok = present && row_ok(i1 - i0, pad, &offs_v.values()[o0..o1]);
                if ok {
                    out.ids.extend_from_slice(&ids_v.values()[i0..i1]);
                    out.offs.extend_from_slice(&offs_v.values()[o0..o1]);
                }
                out.row_start.push(out.ids.len());
                out.off_start.push(out.offs.len());
                out.n_pad.push(if ok { pad } else { 0 });
                out.valid.push(ok);
            }
        }
        Ok(out)
    }
}
