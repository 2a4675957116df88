//! Audits: SQL over one or more run directories, with DataFusion.
//!
//! The people who build corpora spend as much time auditing as building: why did 40% of
//! a dump disappear, which rule ate the good pages, did the mixture come out as planned.
//! This module turns a run directory (see the engine's run-dir layout) into SQL tables:
//!
//! | table      | one row per                         | from |
//! |------------|-------------------------------------|------|
//! | `docs`     | output document, or packed sequence | `shards/*.parquet` (all sinks, all ranks) |
//! | `rejects`  | rejected document                   | `rejects/*.parquet` |
//! | `docs_index` | document that went into a packed sequence | `docs_index/*.parquet` (written by `pack`) |
//! | `stats`    | node × metric × key                 | `stats.json` (flattened, see below) |
//! | `nodes`    | node                                | `stats.json` (wide: in / out / rejected) |
//! | `manifest` | shard or reject file                | `manifest.json` |
//! | `mixture`  | mix node × source                   | `manifest.json` `nodes.<mix>` target/achieved |
//!
//! * `docs` has the union of the columns of every shard file (missing ones read as NULL)
//!   and always has the canonical document columns (`id, source, text, lang, url, tokens,
//!   n_tokens, n_chars, attrs, meta`) and packed columns (`input_ids, doc_offsets, doc_ids,
//!   doc_urls, source_mix, n_pad`), so a query written for one kind of run still plans on the other.
//!   Document rows have `n_chars` set; packed sequences have `source_mix` set.
//! * `docs_index` has the `docs` columns: the documents of a packed run before packing
//!   (`n_tokens`, `n_chars`, `lang`, `attrs`, ...; `tokens` NULL; `text` empty except for a
//!   seeded sample), so document queries run on packed runs with `FROM docs_index`.
//! * `stats` columns: `run, node, kind, role, metric, key, docs, bytes` where `metric` is
//!   `docs_in` (key ''), `port` (key = port name), `reject` (key = reason) or `bad_record`
//!   (key = reason). `nodes` columns: `run, node, kind, role, docs_in, bytes_in, docs_out,
//!   rejected, bad_records, busy_secs, extra` (`extra` is the stage's JSON stats).
//! * `manifest` columns: `run, kind ('shard' | 'reject'), path, node, rows, tokens, bytes, sha256`.
//! * `mixture` columns: `run, node, source, target, achieved, tokens`.
//!
//! Several run directories (all ranks of a partitioned run written to separate `--out`
//! dirs, or several runs) are one logical table: every table reads the files of all of
//! them; the JSON-derived tables carry a `run` column (the directory as given). In a
//! directory, the merged top-level `stats.json` / `manifest.json` is used when present,
//! else the per-rank files under `ranks/` (a run still in progress, or not merged yet).
//!
//! `attrs` is the run's nested struct (see `crate::attrs`); in a table with no shard (or
//! only runs without attributes) it is a NULL string column, so SQL over it still plans.
//!
//! UDFs, for `meta` (JSON), `attrs` (struct, or the JSON of older runs) and URLs (see [`udf`]):
//! `json_get(json, key)`, `json_get_f64(json, key)`, `json_find_f64(json, suffix)`,
//! `json_keys(json)`, `domain(url)`, `sample_key(id, seed)`.
//!
//! Memory: the Parquet tables are scanned, streaming, by DataFusion; only the JSON files
//! are loaded whole (they are small: one entry per node or per shard).

pub mod diff;
mod json_tables;
pub mod presets;
pub mod report;
pub mod udf;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use serde_json::Value;

use crate::error::{Error, Result};
use json_tables::{manifest_batch, mixture_batch, nodes_batch, stats_batch};

/// Output format of query results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects (one per row).
    Json,
}

/// Map any displayable error (DataFusion's, tokio's) into ours.
pub(crate) fn df_err(e: impl std::fmt::Display) -> Error {
    Error::msg(format!("sql: {e}"))
}

/// One JSON file read from a run directory, tagged with the run it came from.
#[derive(Debug, Clone)]
struct RunJson {
    run: String,
    value: Value,
}

/// The files of one or more run directories, found on disk.
#[derive(Debug, Default, Clone)]
pub struct RunFiles {
    /// Run directories, as given.
    pub dirs: Vec<PathBuf>,
    /// All `shards/*.parquet`, sorted per directory.
    pub shards: Vec<PathBuf>,
    /// All `rejects/*.parquet`, sorted per directory.
    pub rejects: Vec<PathBuf>,
    /// The `pack` stage's document index files (`docs_index/*.parquet`) the manifests list.
    pub docs_index: Vec<PathBuf>,
    stats: Vec<RunJson>,
    manifests: Vec<RunJson>,
}

fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = e.map_err(|e| Error::io(dir, e))?.path();
        // `.tmp` files are shards still being written: never read them.
        if p.extension().is_some_and(|x| x == "parquet") && p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn read_json(path: &Path) -> Result<Value> {
    let s = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&s).map_err(|e| Error::msg(format!("{}: {e}", path.display())))
}

/// The top-level `<name>.json` of a run dir, or else every `ranks/r*.<name>.json`.
fn run_jsons(dir: &Path, name: &str) -> Result<Vec<Value>> {
    let top = dir.join(format!("{name}.json"));
    if top.is_file() {
        return Ok(vec![read_json(&top)?]);
    }
    let ranks = dir.join("ranks");
    let mut found = Vec::new();
    if ranks.is_dir() {
        for e in std::fs::read_dir(&ranks).map_err(|e| Error::io(&ranks, e))? {
            let p = e.map_err(|e| Error::io(&ranks, e))?.path();
            let fname = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
            if fname.starts_with('r') && fname.ends_with(&format!(".{name}.json")) {
                found.push(p);
            }
        }
    }
    found.sort();
    found.iter().map(|p| read_json(p)).collect()
}

impl RunFiles {
    /// Find the files of the given run directories. A directory with none of `shards/`,
    /// `rejects/`, `stats.json`, `manifest.json` or `ranks/` is an error (a typo'd path
    /// should not look like an empty run).
    pub fn discover(dirs: &[PathBuf]) -> Result<Self> {
        if dirs.is_empty() {
            return Err(Error::msg("no run directory given"));
        }
        let mut rf = RunFiles {
            dirs: dirs.to_vec(),
            ..Default::default()
        };
        for dir in dirs {
            let markers = ["shards", "rejects", "stats.json", "manifest.json", "ranks"];
            if !markers.iter().any(|m| dir.join(m).exists()) {
                return Err(Error::msg(format!(
                    "{}: not a sluice run directory (no shards/, rejects/, stats.json, manifest.json or ranks/)",
                    dir.display()
                )));
            }
            rf.shards.extend(parquet_files(&dir.join("shards"))?);
            rf.rejects.extend(parquet_files(&dir.join("rejects"))?);
            let run = dir.display().to_string();
            for value in run_jsons(dir, "stats")? {
                rf.stats.push(RunJson {
                    run: run.clone(),
                    value,
                });
            }
            for value in run_jsons(dir, "manifest")? {
                // Only the index files a manifest lists: a stale `docs_index/` left by an
                // earlier run in the same directory is never read.
                let mut listed = Vec::new();
                docs_index_files(&value["nodes"], &mut listed);
                listed.sort();
                listed.dedup();
                rf.docs_index
                    .extend(listed.iter().map(|p| dir.join(p)).filter(|p| p.is_file()));
                rf.manifests.push(RunJson {
                    run: run.clone(),
                    value,
                });
            }
        }
        Ok(rf)
    }
}

/// Every path under a `docs_index.files` list in a manifest's `nodes` (the `pack` stage's
/// document index; merged runs keep node entries `per_rank`).
fn docs_index_files(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(files) = m.get("docs_index").and_then(|d| d["files"].as_array()) {
                out.extend(files.iter().filter_map(|f| f.as_str()).map(String::from));
            }
            for (k, x) in m {
                if k != "docs_index" {
                    docs_index_files(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| docs_index_files(x, out)),
        _ => {}
    }
}

/// Canonical `docs` columns (document shards, then packed shards), all nullable.
pub fn canonical_docs_schema() -> Schema {
    let u32_list = DataType::List(Arc::new(Field::new("item", DataType::UInt32, true)));
    let mix = DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(Fields::from(vec![
            Field::new("source", DataType::Utf8, true),
            Field::new("tokens", DataType::UInt32, true),
            Field::new("license", DataType::Utf8, true),
        ])),
        true,
    )));
    Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, true),
        Field::new("text", DataType::Utf8, true),
        Field::new("lang", DataType::Utf8, true),
        Field::new("url", DataType::Utf8, true),
        Field::new("tokens", u32_list.clone(), true),
        Field::new("n_tokens", DataType::UInt32, true),
        Field::new("n_chars", DataType::UInt64, true),
        Field::new("attrs", DataType::Utf8, true),
        Field::new("meta", DataType::Utf8, true),
        Field::new("input_ids", u32_list.clone(), true),
        Field::new("doc_offsets", u32_list, true),
        Field::new(
            "doc_ids",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new(
            "doc_urls",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new("source_mix", mix, true),
        Field::new("n_pad", DataType::UInt32, true),
    ])
}

/// The `rejects/*.parquet` columns, all nullable.
pub fn canonical_rejects_schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, true),
        Field::new("stage", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
        Field::new("detail", DataType::Utf8, true),
        Field::new("url", DataType::Utf8, true),
        Field::new("n_chars", DataType::UInt64, true),
        Field::new("text_prefix", DataType::Utf8, true),
        Field::new("attrs", DataType::Utf8, true),
        Field::new("meta", DataType::Utf8, true),
    ])
}

/// An audit session: a DataFusion context with the run's tables and UDFs registered,
/// and the tokio runtime that drives it. Blocking API (the CLI and the report are sync).
pub struct Audit {
    rt: tokio::runtime::Runtime,
    ctx: SessionContext,
    /// The files the tables read.
    pub files: RunFiles,
}

impl Audit {
    /// Open one or more run directories as one logical run.
    pub fn open(dirs: &[PathBuf]) -> Result<Self> {
        let files = RunFiles::discover(dirs)?;
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .map_err(|e| Error::msg(format!("tokio runtime: {e}")))?;
        let config = SessionConfig::new()
            .with_target_partitions(threads)
            .with_information_schema(true);
        let ctx = SessionContext::new_with_config(config);
        udf::register_all(&ctx);
        let audit = Audit { rt, ctx, files };
        audit.rt.block_on(audit.register_tables())?;
        Ok(audit)
    }

    /// Run one SQL statement and collect its result. Also returns the result schema, so an
    /// empty result still has a header.
    pub fn sql(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        self.rt.block_on(async {
            let df = self.ctx.sql(sql).await.map_err(df_err)?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await.map_err(df_err)?;
            Ok((schema, batches))
        })
    }

    /// The DataFusion context (for callers that want the async API).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    async fn parquet_table(
        &self,
        files: &[PathBuf],
        canonical: Schema,
    ) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
        if files.is_empty() {
            let schema = Arc::new(canonical);
            let t = MemTable::try_new(schema, vec![vec![]]).map_err(df_err)?;
            return Ok(Arc::new(t));
        }
        let state = self.ctx.state();
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let mut urls = Vec::with_capacity(files.len());
        let mut schemas: Vec<Schema> = Vec::new();
        for f in files {
            let abs = std::path::absolute(f).map_err(|e| Error::io(f, e))?;
            let url = ListingTableUrl::parse(abs.to_string_lossy()).map_err(df_err)?;
            // Per-file footer read: shards of different sinks may differ in columns
            // (`write_text: false`, packed vs documents); the table is their union.
            let s = options
                .infer_schema(&state, &url)
                .await
                .map_err(|e| Error::msg(format!("{}: {e}", f.display())))?;
            if !schemas.iter().any(|x| x == s.as_ref()) {
                schemas.push(s.as_ref().clone());
            }
            urls.push(url);
        }
        let merged = Schema::try_merge(schemas)
            .map_err(|e| Error::msg(format!("shards disagree on a column type: {e}")))?;
        let mut fields: Vec<Field> = merged
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        for f in canonical.fields() {
            if !fields.iter().any(|x| x.name() == f.name()) {
                fields.push(f.as_ref().clone());
            }
        }
        let schema = Arc::new(Schema::new(fields));
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(schema);
        Ok(Arc::new(ListingTable::try_new(config).map_err(df_err)?))
    }

    async fn register_tables(&self) -> Result<()> {
        let docs = self
            .parquet_table(&self.files.shards, canonical_docs_schema())
            .await?;
        self.ctx.register_table("docs", docs).map_err(df_err)?;
        let rejects = self
            .parquet_table(&self.files.rejects, canonical_rejects_schema())
            .await?;
        self.ctx
            .register_table("rejects", rejects)
            .map_err(df_err)?;
        let index = self
            .parquet_table(&self.files.docs_index, canonical_docs_schema())
            .await?;
        self.ctx
            .register_table("docs_index", index)
            .map_err(df_err)?;
        for (name, batch) in [
            ("stats", stats_batch(&self.files.stats)?),
            ("nodes", nodes_batch(&self.files.stats)?),
            ("manifest", manifest_batch(&self.files.manifests)?),
            ("mixture", mixture_batch(&self.files.manifests)?),
        ] {
            let t = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(df_err)?;
            self.ctx.register_table(name, Arc::new(t)).map_err(df_err)?;
        }
        Ok(())
    }
}

/// Render query results in the given format.
fn is_nested(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Struct(_)
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::Map(..)
    )
}

/// The schema CSV output has: nested columns (the `attrs` struct, lists) become JSON text.
fn csv_schema(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                if is_nested(f.data_type()) {
                    Field::new(f.name(), DataType::Utf8, true)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect::<Vec<_>>(),
    ))
}

/// A batch with its nested columns written as JSON text, one value per cell (CSV has no
/// nested values).
fn nested_as_json(b: &RecordBatch) -> Result<RecordBatch> {
    if !b.schema().fields().iter().any(|f| is_nested(f.data_type())) {
        return Ok(b.clone());
    }
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(b.num_columns());
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if !is_nested(f.data_type()) {
            cols.push(c.clone());
            continue;
        }
        let one = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "v",
                f.data_type().clone(),
                true,
            )])),
            vec![c.clone()],
        )?;
        let mut buf = Vec::new();
        {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
            w.write(&one)?;
            w.finish()?;
        }
        let text = String::from_utf8(buf).map_err(|e| Error::msg(format!("csv: {e}")))?;
        let mut out = StringBuilder::new();
        for line in text.lines() {
            let v: Value =
                serde_json::from_str(line).map_err(|e| Error::msg(format!("csv: {e}")))?;
            out.append_option(v.get("v").map(|x| x.to_string()));
        }
        cols.push(Arc::new(out.finish()));
    }
    Ok(RecordBatch::try_new(csv_schema(&b.schema()), cols)?)
}

pub fn format_batches(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: Format,
) -> Result<String> {
    let nonempty: Vec<RecordBatch> = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .cloned()
        .collect();
    match format {
        Format::Table => {
            let t =
                arrow::util::pretty::pretty_format_batches_with_schema(schema.clone(), &nonempty)?;
            Ok(format!("{t}\n"))
        }
        Format::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                if nonempty.is_empty() {
                    w.write(&RecordBatch::new_empty(csv_schema(schema)))?;
                }
                for b in &nonempty {
                    w.write(&nested_as_json(b)?)?;
                }
            }
            String::from_utf8(buf).map_err(|e| Error::msg(format!("csv: {e}")))
        }
        Format::Json => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::json::ArrayWriter::new(&mut buf);
                let refs: Vec<&RecordBatch> = nonempty.iter().collect();
                w.write_batches(&refs)?;
                w.finish()?;
            }
            let mut s = String::from_utf8(buf).map_err(|e| Error::msg(format!("json: {e}")))?;
            if s.is_empty() {
                s.push_str("[]");
            }
            s.push('\n');
            Ok(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::json_tables::mixture_rows;
    use super::*;

    #[test]
    fn mixture_shapes() {
        let a: Value = serde_json::json!({"sources": {
            "web": {"target_share": 0.85, "achieved_share": 0.849, "emitted_tokens": 849},
            "syn": {"target_share": 0.15, "achieved_share": 0.151, "emitted_tokens": 151}}});
        let r = mixture_rows(&a);
        assert_eq!(r.len(), 2);
        assert!(r.contains(&("web".to_string(), Some(0.85), Some(0.849), Some(849))));
        let rank = |w: u64, y: u64| {
            serde_json::json!({"sources": {
                "web": {"target_share": 0.5, "achieved_share": w as f64 / 100.0, "emitted_tokens": w},
                "syn": {"target_share": 0.5, "achieved_share": y as f64 / 100.0, "emitted_tokens": y}}})
        };
        let per: Value = serde_json::json!({"per_rank": [rank(60, 40), rank(40, 60)]});
        assert_eq!(
            mixture_rows(&per),
            vec![
                ("syn".to_string(), Some(0.5), Some(0.5), Some(100)),
                ("web".to_string(), Some(0.5), Some(0.5), Some(100))
            ]
        );
        let tok: Value = serde_json::json!({"tokenizer": "x.json", "sha256": "ab"});
        assert!(mixture_rows(&tok).is_empty());
    }
}
