//! `sluice takedown RUN --urls FILE | --domains FILE | --ids FILE`: remove documents from a
//! finished run directory in place, for a rightsholder's or data subject's request.
//!
//! * **What is affected.** A request file lists one entry per line (`#` comments, blank
//!   lines ignored): exact URLs, domains (a domain covers its subdomains, as in
//!   `url_filter`), or document ids (`web:warcfile.warc.gz:940`; a `doc_ids` entry such as
//!   `…#1@4096` stands for its document, so every copy and segment of it is taken). A
//!   document shard row is affected when its `id` or `url` matches; a **packed row is
//!   removed whole** when any of its `doc_ids` / `doc_urls` matches (the other segments of
//!   that row go with it and are listed as `collateral`). Rows of `rejects/` that match are
//!   removed too (they keep a text prefix). So are the rows of the `pack` stage's document
//!   index (`docs_index/`: id, URL, meta, attrs and, for a sampled document, text) of every
//!   matched document, and of every collateral document no packed row holds any more (a
//!   collateral document with a segment left in another row keeps its index row).
//! * **What is rewritten.** Only the files that hold an affected row: read, filtered, and
//!   written again with the same schema and compression (temp file, fsync, rename). Every
//!   other file is left byte-identical.
//! * **The record.** `manifest.json` (and the rank manifest under `ranks/` that lists each
//!   rewritten file) gets the new rows, tokens, bytes and sha256 of the rewritten files
//!   (in `shards`, `rejects` and `docs_index`), the `pack` nodes' `docs_index.rows` less
//!   the index rows removed, new totals, `nodes.<sink>.licenses` less what was removed, `version` + 1 (a run starts
//!   at version 1) and a `takedowns` entry: the request (kind, file, its sha256, entries),
//!   what matched (documents, per entry), every removed row (file, row, id, its doc ids;
//!   index rows under `removed_index_rows`),
//!   the collateral documents and the files rewritten with their old and new sha256. So a
//!   later `sluice run --verify` on the directory, `sluice audit` and the loaders all see a
//!   consistent run; `stats.json` stays the record of the run as it ran.
//!
//! `--dry-run` reports what would be removed and changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde_json::{json, Value};
use sha2::Digest;

use crate::cli_trace::list_strings;
use crate::error::{Error, Result};
use crate::provenance::parse_entry;
use crate::rundir::{node_index_files, DOCS_INDEX};
use crate::stages::url_filter::normalize_host;

/// `sluice takedown` arguments.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("request").required(true).args(["urls", "domains", "ids"])))]
pub struct TakedownArgs {
    /// Run directory.
    pub run: PathBuf,
    /// File of URLs, one per line (exact match).
    #[arg(long)]
    pub urls: Option<PathBuf>,
    /// File of domains, one per line (subdomains included).
    #[arg(long)]
    pub domains: Option<PathBuf>,
    /// File of document ids (or `doc_ids` entries), one per line.
    #[arg(long)]
    pub ids: Option<PathBuf>,
    /// Report what would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the takedown record as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a request matches.
#[derive(Debug, Clone)]
pub enum Request {
    /// Exact URLs.
    Urls(BTreeSet<String>),
    /// Domains (with subdomains).
    Domains(BTreeSet<String>),
    /// Document ids.
    Ids(BTreeSet<String>),
}

impl Request {
    /// Parse a request file's lines.
    pub fn parse(kind: &str, text: &str) -> std::result::Result<Request, String> {
        let lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        Ok(match kind {
            "urls" => Request::Urls(lines.map(str::to_string).collect()),
            "domains" => Request::Domains(lines.filter_map(normalize_host).collect()),
            "ids" => {
                let mut ids = BTreeSet::new();
                for l in lines {
                    ids.insert(parse_entry(l)?.doc_id);
                }
                Request::Ids(ids)
            }
            k => return Err(format!("unknown request kind {k}")),
        })
    }

    fn kind(&self) -> &'static str {
        match self {
            Request::Urls(_) => "urls",
            Request::Domains(_) => "domains",
            Request::Ids(_) => "ids",
        }
    }

    fn entries(&self) -> Vec<String> {
        match self {
            Request::Urls(s) | Request::Domains(s) | Request::Ids(s) => s.iter().cloned().collect(),
        }
    }

    /// The request entry a document (id, url) matches, if any.
    fn matches(&self, doc_id: &str, url: &str) -> Option<String> {
        match self {
            Request::Urls(s) => s.get(url).cloned(),
            Request::Domains(s) => {
                let host = normalize_host(url)?;
                let mut h = host.as_str();
                loop {
                    if s.contains(h) {
                        return Some(h.to_string());
                    }
                    h = &h[h.find('.')? + 1..];
                }
            }
            Request::Ids(s) => {
                let id = parse_entry(doc_id).map(|e| e.doc_id).ok()?;
                s.get(&id).cloned()
            }
        }
    }
}

/// One removed row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RemovedRow {
    /// File, relative to the run directory.
    pub file: String,
    /// Row index in the file before the takedown.
    pub row: usize,
    /// The row's `id`.
    pub id: String,
    /// The documents in the row (`doc_ids`, or the row's own id).
    pub doc_ids: Vec<String>,
    /// Tokens in the row (padding excluded).
    pub tokens: u64,
}

/// One rewritten file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rewritten {
    /// File, relative to the run directory.
    pub file: String,
    /// Rows before and after.
    pub rows_before: u64,
    /// Rows after.
    pub rows_after: u64,
    /// sha256 before.
    pub sha256_before: String,
    /// sha256 after.
    pub sha256_after: String,
    /// Size after.
    pub bytes_after: u64,
}

/// The result of one takedown.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Outcome {
    /// Matched documents per request entry.
    pub matched: BTreeMap<String, BTreeSet<String>>,
    /// Removed shard rows.
    pub removed_rows: Vec<RemovedRow>,
    /// Removed reject rows.
    pub removed_rejects: Vec<RemovedRow>,
    /// Removed rows of the `pack` stage's document index (`docs_index/`).
    pub removed_index_rows: Vec<RemovedRow>,
    /// Documents removed only because they shared a packed row with a matched one.
    pub collateral: BTreeSet<String>,
    /// Files rewritten.
    pub rewritten: Vec<Rewritten>,
    /// Removed per licence (packed rows' `source_mix`, documents' `meta.license`).
    pub by_license: BTreeMap<String, LicenseDelta>,
}

/// What a takedown removed under one licence (subtracted from `nodes.<sink>.licenses`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LicenseDelta {
    /// Tokens.
    pub tokens: u64,
    /// Packed rows holding this licence.
    pub rows: u64,
    /// Document rows.
    pub documents: u64,
    /// Text bytes of document rows.
    pub bytes: u64,
}

fn string_col(b: &RecordBatch, name: &str) -> Vec<String> {
    crate::arrow_io::string_column(b, name)
        .ok()
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect()
}

/// Per row of a batch: the documents it holds as (entry, url), its tokens, and what it holds
/// per licence.
type RowInfo = (Vec<(String, String)>, u64, BTreeMap<String, LicenseDelta>);

fn rows_of(b: &RecordBatch) -> Result<Vec<RowInfo>> {
    let n = b.num_rows();
    let tokens: Vec<u64> = match b
        .column_by_name("n_tokens")
        .and_then(|c| c.as_any().downcast_ref::<arrow::array::UInt32Array>())
    {
        Some(a) => (0..n).map(|i| a.value(i) as u64).collect(),
        None => vec![0; n],
    };
    if b.column_by_name("doc_ids").is_some() {
        let ids = list_strings(b, "doc_ids")?;
        let urls = list_strings(b, "doc_urls").unwrap_or_default();
        let mut lic: Vec<BTreeMap<String, LicenseDelta>> = vec![BTreeMap::new(); n];
        if let Some(mix) = b
            .column_by_name("source_mix")
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::ListArray>())
        {
            for (i, l) in lic.iter_mut().enumerate() {
                let v = mix.value(i);
                let s = v
                    .as_any()
                    .downcast_ref::<arrow::array::StructArray>()
                    .ok_or_else(|| Error::msg("source_mix is not a list of structs"))?;
                let toks = s
                    .column_by_name("tokens")
                    .and_then(|c| c.as_any().downcast_ref::<arrow::array::UInt32Array>());
                let lics = s
                    .column_by_name("license")
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>());
                for k in 0..s.len() {
                    let name = lics
                        .filter(|a| !a.is_null(k))
                        .map_or(crate::stage::UNKNOWN_LICENSE, |a| a.value(k));
                    let e = l.entry(name.to_string()).or_default();
                    e.tokens += toks.map_or(0, |t| t.value(k) as u64);
                    e.rows = 1;
                }
            }
        }
        Ok(ids
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let u = urls.get(i).cloned().unwrap_or_default();
                let docs = d
                    .into_iter()
                    .enumerate()
                    .map(|(k, e)| (e, u.get(k).cloned().unwrap_or_default()))
                    .collect();
                (docs, tokens[i], std::mem::take(&mut lic[i]))
            })
            .collect())
    } else {
        let ids = string_col(b, "id");
        let urls = string_col(b, "url");
        let metas = string_col(b, "meta");
        let texts = string_col(b, "text");
        Ok((0..n)
            .map(|i| {
                let lic = serde_json::from_str::<Value>(metas.get(i).map_or("{}", |s| s))
                    .ok()
                    .and_then(|m| m["license"].as_str().map(str::to_string))
                    .unwrap_or_else(|| crate::stage::UNKNOWN_LICENSE.to_string());
                (
                    vec![(
                        ids.get(i).cloned().unwrap_or_default(),
                        urls.get(i).cloned().unwrap_or_default(),
                    )],
                    tokens[i],
                    [(
                        lic,
                        LicenseDelta {
                            tokens: tokens[i],
                            rows: 0,
                            documents: 1,
                            bytes: texts.get(i).map_or(0, |t| t.len() as u64),
                        },
                    )]
                    .into_iter()
                    .collect(),
                )
            })
            .collect())
    }
}

/// Writer properties for a rewritten file: the compression its first column chunk used
/// (zstd at the sink's `zstd_level`), and the sink's dictionary and statistics choices.
fn props_for(meta: &parquet::file::metadata::ParquetMetaData, zstd_level: i32) -> WriterProperties {
    let codec = meta
        .row_groups()
        .first()
        .and_then(|rg| rg.columns().first())
        .map(|c| c.compression())
        .unwrap_or(Compression::UNCOMPRESSED);
    let codec = match codec {
        Compression::ZSTD(_) => {
            Compression::ZSTD(ZstdLevel::try_new(zstd_level).unwrap_or_default())
        }
        c => c,
    };
    let max_rows = meta
        .row_groups()
        .iter()
        .map(|r| r.num_rows() as usize)
        .max()
        .unwrap_or(8192)
        .max(1);
    let mut b = WriterProperties::builder()
        .set_compression(codec)
        .set_max_row_group_row_count(Some(max_rows));
    let schema = meta.file_metadata().schema_descr();
    let has = |c: &str| schema.columns().iter().any(|x| x.path().string() == c);
    for c in crate::shard_writer::NO_DICTIONARY {
        if has(c) {
            b = b.set_column_dictionary_enabled(ColumnPath::from(*c), false);
        }
    }
    for c in crate::shard_writer::NO_STATISTICS {
        if has(c) {
            b = b.set_column_statistics_enabled(ColumnPath::from(*c), EnabledStatistics::None);
        }
    }
    b.build()
}

/// Which output folder a file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// `shards/`: document or packed rows.
    Shards,
    /// `rejects/`.
    Rejects,
    /// `docs_index/`: one row per document that went into a packed row.
    Index,
}

impl Part {
    /// The manifest key listing its files.
    fn key(self) -> &'static str {
        match self {
            Part::Shards => "shards",
            Part::Rejects => "rejects",
            Part::Index => DOCS_INDEX,
        }
    }
}

/// zstd level of the document index (`stages/pack/index.rs` writes it at level 3).
const INDEX_ZSTD_LEVEL: i32 = 3;

/// The document-index files a manifest lists, (path, node): its top-level `docs_index`
/// list, or for a manifest written before that list existed, the `pack` nodes' entries.
fn index_files(m: &Value) -> Vec<(String, String)> {
    match m[DOCS_INDEX].as_array() {
        Some(a) => a
            .iter()
            .map(|s| {
                (
                    s["path"].as_str().unwrap_or("").to_string(),
                    s["node"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
        None => {
            let mut v = Vec::new();
            node_index_files(&m["nodes"], &mut v);
            v.sort();
            v.dedup();
            v.into_iter().map(|(n, p)| (p, n)).collect()
        }
    }
}

/// The document an entry (`id`, `id#epoch`, `id#epoch@start`) stands for.
fn doc_of(entry: &str) -> String {
    parse_entry(entry)
        .map(|e| e.doc_id)
        .unwrap_or_else(|_| entry.to_string())
}

/// Of the `collateral` documents, those a packed row still holds after the takedown (in a
/// row not removed): read from the shards' `doc_ids` column only.
fn still_packed(
    run: &Path,
    shards: &[String],
    removed: &[RemovedRow],
    collateral: &BTreeSet<String>,
) -> Result<BTreeSet<String>> {
    let gone: BTreeSet<(&str, usize)> = removed.iter().map(|r| (r.file.as_str(), r.row)).collect();
    let mut found = BTreeSet::new();
    for rel in shards {
        let path = run.join(rel);
        let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(f)?;
        let Ok(i) = builder.schema().index_of("doc_ids") else {
            continue;
        };
        let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [i]);
        let mut row = 0usize;
        for b in builder.with_projection(mask).build()? {
            let b = b?;
            for (k, docs) in list_strings(&b, "doc_ids")?.into_iter().enumerate() {
                if gone.contains(&(rel.as_str(), row + k)) {
                    continue;
                }
                for d in docs {
                    let d = doc_of(&d);
                    if collateral.contains(&d) {
                        found.insert(d);
                    }
                }
            }
            row += b.num_rows();
        }
    }
    Ok(found)
}

/// Filter one file. Returns None when no row matches. `drop_docs`: documents removed
/// besides those the request matches (index rows of collateral documents no packed row
/// holds any more).
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn filter_file(
    run: &Path,
    rel: &str,
    req: &Request,
    zstd_level: i32,
    out: &mut Outcome,
    part: Part,
    drop_docs: &BTreeSet<String>,
    dry_run: bool,
) -> Result<Option<(Vec<u8>, u64, u64)>> {
    let path = run.join(rel);
    let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f)?;
    let schema = builder.schema().clone();
    let props = props_for(builder.metadata(), zstd_level);
    let reader = builder.build()?;
    let mut kept: Vec<RecordBatch> = Vec::new();
    let mut row = 0usize;
    let (mut any, mut rows_before, mut rows_after) = (false, 0u64, 0u64);
    for b in reader {
        let b = b?;
        let ids = string_col(&b, "id");
        let infos = rows_of(&b)?;
        let mut keep = Vec::with_capacity(b.num_rows());
        for (i, (docs, tokens, lic)) in infos.into_iter().enumerate() {
            let hits: Vec<(String, String)> = docs
                .iter()
                .filter_map(|(d, u)| req.matches(d, u).map(|m| (m, d.clone())))
                .collect();
            let dropped =
                !drop_docs.is_empty() && docs.iter().any(|(d, _)| drop_docs.contains(&doc_of(d)));
            if hits.is_empty() && !dropped {
                keep.push(true);
                continue;
            }
            any = true;
            keep.push(false);
            let hit_docs: BTreeSet<String> = hits
                .iter()
                .map(|(_, d)| {
                    parse_entry(d)
                        .map(|e| e.doc_id)
                        .unwrap_or_else(|_| d.clone())
                })
                .collect();
            for (m, d) in &hits {
                let d = parse_entry(d)
                    .map(|e| e.doc_id)
                    .unwrap_or_else(|_| d.clone());
                out.matched.entry(m.clone()).or_default().insert(d);
            }
            if part == Part::Shards {
                for (d, _) in &docs {
                    let d = parse_entry(d)
                        .map(|e| e.doc_id)
                        .unwrap_or_else(|_| d.clone());
                    if !hit_docs.contains(&d) {
                        out.collateral.insert(d);
                    }
                }
                for (l, d) in lic {
                    let e = out.by_license.entry(l).or_default();
                    e.tokens += d.tokens;
                    e.rows += d.rows;
                    e.documents += d.documents;
                    e.bytes += d.bytes;
                }
            }
            let r = RemovedRow {
                file: rel.to_string(),
                row: row + i,
                id: ids.get(i).cloned().unwrap_or_default(),
                doc_ids: docs.into_iter().map(|(d, _)| d).collect(),
                tokens: if part == Part::Rejects { 0 } else { tokens },
            };
            match part {
                Part::Shards => out.removed_rows.push(r),
                Part::Rejects => out.removed_rejects.push(r),
                Part::Index => out.removed_index_rows.push(r),
            }
        }
        row += b.num_rows();
        rows_before += b.num_rows() as u64;
        let mask = BooleanArray::from(keep);
        let f = arrow::compute::filter_record_batch(&b, &mask)?;
        rows_after += f.num_rows() as u64;
        if f.num_rows() > 0 {
            kept.push(f);
        }
    }
    if !any || dry_run {
        return Ok(if any {
            Some((Vec::new(), rows_before, rows_after))
        } else {
            None
        });
    }
    let mut buf = Vec::new();
    {
        let mut w = ArrowWriter::try_new(&mut buf, Arc::clone(&schema), Some(props))?;
        for b in &kept {
            w.write(b)?;
        }
        w.close()?;
    }
    Ok(Some((buf, rows_before, rows_after)))
}

/// Apply a takedown to a run directory. Returns what was removed (also recorded in the
/// manifest unless `dry_run`).
pub fn takedown(run: &Path, req: &Request, request_file: &str, dry_run: bool) -> Result<Outcome> {
    let mpath = run.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&mpath).map_err(|e| Error::io(&mpath, e))?)
            .map_err(|e| Error::msg(format!("{}: {e}", mpath.display())))?;
    // The sinks' zstd levels (from the embedded config).
    let mut levels: BTreeMap<String, i32> = BTreeMap::new();
    for n in manifest["config"]["nodes"].as_array().into_iter().flatten() {
        if n["kind"] == "parquet_shards" {
            let l = n["params"]["zstd_level"].as_i64().unwrap_or(1) as i32;
            levels.insert(n["name"].as_str().unwrap_or("").to_string(), l);
        }
    }
    let mut out = Outcome::default();
    let mut changes: Vec<(String, Vec<u8>, u64, u64, &'static str)> = Vec::new();
    let listed = |key: &str| -> Vec<(String, String)> {
        manifest[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["path"].as_str().unwrap_or("").to_string(),
                    s["node"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let index = index_files(&manifest);
    let mut drop_docs = BTreeSet::new();
    for part in [Part::Shards, Part::Rejects, Part::Index] {
        let files = match part {
            Part::Index => index.clone(),
            p => listed(p.key()),
        };
        if part == Part::Index && !out.collateral.is_empty() {
            let shards: Vec<String> = listed("shards").into_iter().map(|f| f.0).collect();
            let kept = still_packed(run, &shards, &out.removed_rows, &out.collateral)?;
            drop_docs = out.collateral.difference(&kept).cloned().collect();
        }
        for (rel, node) in files {
            let level = match part {
                Part::Index => INDEX_ZSTD_LEVEL,
                _ => levels.get(&node).copied().unwrap_or(1),
            };
            if let Some((bytes, before, after)) =
                filter_file(run, &rel, req, level, &mut out, part, &drop_docs, dry_run)?
            {
                changes.push((rel, bytes, before, after, part.key()));
            }
        }
    }
    if dry_run {
        return Ok(out);
    }
    let removed_tokens: BTreeMap<String, u64> =
        out.removed_rows.iter().fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r.file.clone()).or_default() += r.tokens;
            m
        });
    for (rel, bytes, before, after, key) in &changes {
        let path = run.join(rel);
        let old_sha = manifest[*key]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["path"] == rel.as_str()))
            .and_then(|s| s["sha256"].as_str())
            .unwrap_or("")
            .to_string();
        let c = crate::io::write_atomic(&path, bytes)?;
        out.rewritten.push(Rewritten {
            file: rel.clone(),
            rows_before: *before,
            rows_after: *after,
            sha256_before: old_sha,
            sha256_after: c.sha256.clone(),
            bytes_after: c.bytes,
        });
    }
    let update = |m: &mut Value, out: &Outcome| {
        for key in ["shards", "rejects", DOCS_INDEX] {
            if let Some(list) = m[key].as_array_mut() {
                for s in list.iter_mut() {
                    let Some(rw) = out.rewritten.iter().find(|r| s["path"] == r.file.as_str())
                    else {
                        continue;
                    };
                    s["rows"] = json!(rw.rows_after);
                    s["bytes"] = json!(rw.bytes_after);
                    s["sha256"] = json!(rw.sha256_after);
                    if let Some(t) = removed_tokens.get(&rw.file) {
                        let old = s["tokens"].as_u64().unwrap_or(0);
                        s["tokens"] = json!(old.saturating_sub(*t));
                    }
                }
            }
        }
        // The `pack` nodes' index row counts (per rank in a merged manifest).
        fn index_rows(v: &mut Value, out: &Outcome) {
            match v {
                Value::Object(o) => {
                    if let Some(ix) = o.get_mut(DOCS_INDEX).filter(|d| d["files"].is_array()) {
                        let removed = out
                            .removed_index_rows
                            .iter()
                            .filter(|r| {
                                ix["files"]
                                    .as_array()
                                    .is_some_and(|f| f.iter().any(|f| *f == r.file.as_str()))
                            })
                            .count() as u64;
                        if let Some(rows) = ix["rows"].as_u64() {
                            ix["rows"] = json!(rows.saturating_sub(removed));
                        }
                    }
                    o.iter_mut()
                        .filter(|(k, _)| *k != DOCS_INDEX)
                        .for_each(|(_, x)| index_rows(x, out));
                }
                Value::Array(a) => a.iter_mut().for_each(|x| index_rows(x, out)),
                _ => {}
            }
        }
        if !out.removed_index_rows.is_empty() {
            index_rows(&mut m["nodes"], out);
        }
        // Totals from the file lists.
        let sum = |k: &str, f: &str| -> u64 {
            m[k].as_array()
                .into_iter()
                .flatten()
                .map(|s| s[f].as_u64().unwrap_or(0))
                .sum()
        };
        if m.get("totals").is_some() {
            let (rows, tokens, bytes) = (
                sum("shards", "rows"),
                sum("shards", "tokens"),
                sum("shards", "bytes"),
            );
            let rej = sum("rejects", "rows");
            m["totals"]["rows"] = json!(rows);
            m["totals"]["tokens"] = json!(tokens);
            m["totals"]["bytes"] = json!(bytes);
            m["totals"]["reject_rows"] = json!(rej);
        }
        // Licence totals of the sinks whose files changed.
        let sinks: BTreeSet<String> = m["shards"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| out.rewritten.iter().any(|r| s["path"] == r.file.as_str()))
            .filter_map(|s| s["node"].as_str().map(str::to_string))
            .collect();
        for sink in sinks {
            let lic = &mut m["nodes"][&sink]["licenses"];
            if !lic.is_object() {
                continue;
            }
            for (l, d) in &out.by_license {
                if let Some(e) = lic.get_mut(l) {
                    for (k, v) in [
                        ("tokens", d.tokens),
                        ("rows", d.rows),
                        ("documents", d.documents),
                        ("bytes", d.bytes),
                    ] {
                        if let Some(old) = e[k].as_u64() {
                            e[k] = json!(old.saturating_sub(v));
                        }
                    }
                }
            }
        }
    };
    update(&mut manifest, &out);
    // Rank manifests that list a rewritten file.
    let ranks = run.join("ranks");
    if let Ok(rd) = std::fs::read_dir(&ranks) {
        let mut paths: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".manifest.json"))
            .collect();
        paths.sort();
        for p in paths {
            let mut rm: Value =
                serde_json::from_slice(&std::fs::read(&p).map_err(|e| Error::io(&p, e))?)
                    .map_err(|e| Error::msg(format!("{}: {e}", p.display())))?;
            let lists = |v: &Value| {
                ["shards", "rejects"].iter().any(|k| {
                    v[*k]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|s| out.rewritten.iter().any(|r| s["path"] == r.file.as_str()))
                }) || index_files(v)
                    .iter()
                    .any(|(p, _)| out.rewritten.iter().any(|r| *p == r.file))
            };
            if !lists(&rm) {
                continue;
            }
            update(&mut rm, &out);
            bump(&mut rm, req, request_file, &out)?;
            crate::io::write_atomic(&p, pretty(&rm).as_bytes())?;
        }
    }
    bump(&mut manifest, req, request_file, &out)?;
    crate::io::write_atomic(&mpath, pretty(&manifest).as_bytes())?;
    Ok(out)
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// `version` + 1 and a `takedowns` entry.
fn bump(m: &mut Value, req: &Request, request_file: &str, out: &Outcome) -> Result<()> {
    let version = m["version"].as_u64().unwrap_or(1) + 1;
    m["version"] = json!(version);
    let req_sha = std::fs::read(request_file)
        .map(|b| hex::encode(sha2::Sha256::digest(&b)))
        .unwrap_or_default();
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let entry = json!({
        "version": version,
        "at_unix": at,
        "request": {"kind": req.kind(), "file": request_file, "sha256": req_sha, "entries": req.entries()},
        "matched": out.matched,
        "removed_rows": out.removed_rows,
        "removed_rejects": out.removed_rejects,
        "removed_index_rows": out.removed_index_rows,
        "collateral": out.collateral,
        "tokens_removed": out.removed_rows.iter().map(|r| r.tokens).sum::<u64>(),
        "by_license": out.by_license,
        "rewritten": out.rewritten,
    });
    match m["takedowns"].as_array_mut() {
        Some(a) => a.push(entry),
        None => m["takedowns"] = json!([entry]),
    }
    Ok(())
}

/// Run the command.
pub fn run(a: TakedownArgs) -> Result<()> {
    let (kind, file) = match (&a.urls, &a.domains, &a.ids) {
        (Some(f), None, None) => ("urls", f),
        (None, Some(f), None) => ("domains", f),
        (None, None, Some(f)) => ("ids", f),
        _ => return Err(Error::msg("give exactly one of --urls, --domains, --ids")),
    };
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let req = Request::parse(kind, &text).map_err(Error::msg)?;
    let out = takedown(&a.run, &req, &file.to_string_lossy(), a.dry_run)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    let docs: BTreeSet<&String> = out.matched.values().flatten().collect();
    println!(
        "{}{} documents matched {} of {} {kind} entries; {} shard rows ({} tokens), {} reject rows and {} document-index rows removed; {} other documents went with their packed rows",
        if a.dry_run { "dry run: " } else { "" },
        docs.len(),
        out.matched.len(),
        req.entries().len(),
        out.removed_rows.len(),
        out.removed_rows.iter().map(|r| r.tokens).sum::<u64>(),
        out.removed_rejects.len(),
        out.removed_index_rows.len(),
        out.collateral.len()
    );
    for r in &out.rewritten {
        println!(
            "  rewrote {}: {} → {} rows, sha256 {} → {}",
            r.file,
            r.rows_before,
            r.rows_after,
            &r.sha256_before[..12.min(r.sha256_before.len())],
            &r.sha256_after[..12]
        );
    }
    if !a.dry_run {
        println!("  recorded in manifest.json (takedowns, version)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_match_urls_domains_with_subdomains_and_every_copy_of_an_id() {
        let d = Request::parse("domains", "# request\n\nExample.COM\nhttps://b.cn/path\n").unwrap();
        assert_eq!(d.entries(), ["b.cn", "example.com"]);
        assert_eq!(
            d.matches("x", "https://www.example.com/a"),
            Some("example.com".into())
        );
        assert_eq!(d.matches("x", "https://notexample.com/a"), None);
        assert_eq!(d.matches("x", "http://b.cn:8080/"), Some("b.cn".into()));
        assert_eq!(d.matches("x", ""), None);
        let u = Request::parse("urls", "https://a.cn/1\n").unwrap();
        assert!(u.matches("x", "https://a.cn/1").is_some());
        assert!(u.matches("x", "https://a.cn/12").is_none());
        let i = Request::parse("ids", "web:f.jsonl:7@4096\n").unwrap();
        assert_eq!(i.entries(), ["web:f.jsonl:7"]);
        for e in ["web:f.jsonl:7", "web:f.jsonl:7#2", "web:f.jsonl:7#1@8192"] {
            assert!(i.matches(e, "").is_some(), "{e}");
        }
        assert!(i.matches("web:f.jsonl:70", "").is_none());
        assert!(Request::parse("ids", "no-colon\n").is_err());
    }
}
