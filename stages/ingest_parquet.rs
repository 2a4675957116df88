//! `ingest_parquet`: read documents from any Parquet file with a text column.
//!
//! Only the needed columns are read (projection), one record batch at a time, so memory
//! stays bounded by `read_batch_rows`. Ids come from `id_column` when set, otherwise
//! `<source>:<file>:<row>`. Rows whose text is null are bad records (counted, not fatal);
//! empty texts go to `rejected` with reason `empty`.
//!
//! * Writes: `id`, `source`, `text`, `lang` (from `lang_column`), `meta` (from `meta_columns`).
//!
//! ```yaml
//! dump:
//!   kind: ingest_parquet
//!   paths: [data/*.parquet]
//!   text_column: text
//!   meta_columns: [url]
//! ```

use std::fs::File;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde::{Deserialize, Serialize};

use crate::arrow_io::string_column;
use crate::document::Document;
use crate::error::{Error, Result};
use crate::io::{check_paths, expand_paths, file_name};
use crate::stage::{
    parse_config, BuildCtx, Checks, Kind, Node, Role, Source, SourceSink, StageConfig, OUT_REJECTED,
};

/// Config for `ingest_parquet`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Input files or globs. Required.
    pub paths: Vec<String>,
    /// String column holding the text. Default `text`.
    #[serde(default = "default_text")]
    pub text_column: String,
    /// String column holding an id. Default: none (`<source>:<file>:<row>`).
    #[serde(default)]
    pub id_column: Option<String>,
    /// String column holding a language code. Default: none.
    #[serde(default)]
    pub lang_column: Option<String>,
    /// String columns copied into `meta` when present. Default `[url]`.
    #[serde(default = "default_meta")]
    pub meta_columns: Vec<String>,
    /// Source name on each document. Default: the node name.
    #[serde(default)]
    pub source: Option<String>,
    /// Licence of this source's documents: an SPDX id (`CC-BY-SA-4.0`) or free text
    /// ("Common Crawl terms of use; page copyright with its owner"). Written to each
    /// document's `meta.license`, to the packed rows' `source_mix` and, as token totals per
    /// licence, to the manifest; checked against `run.allowed_licenses`. Default: none
    /// (counted as `unknown`).
    #[serde(default)]
    pub license: Option<String>,
    /// URL of the terms the licence refers to, written to `meta.terms_url`. Default: none.
    #[serde(default)]
    pub terms_url: Option<String>,
    /// Rows per read batch. Default 1024.
    #[serde(default = "default_rows")]
    pub read_batch_rows: usize,
}

fn default_text() -> String {
    "text".into()
}
fn default_meta() -> Vec<String> {
    vec!["url".into()]
}
fn default_rows() -> usize {
    1024
}

impl StageConfig for Config {
    fn validate(&self, _ctx: &BuildCtx) -> Vec<String> {
        let mut c = Checks::new();
        c.extend(check_paths("paths", &self.paths));
        c.non_empty("text_column", self.text_column.is_empty());
        c.at_least("read_batch_rows", self.read_batch_rows, 1);
        c.into_vec()
    }
}

/// The source.
pub struct IngestParquet {
    cfg: Config,
    source: String,
}

impl Source for IngestParquet {
    fn splits(&self) -> Result<Vec<String>> {
        expand_paths(&self.cfg.paths)
    }

    fn read(&mut self, split: &str, ctx: &mut dyn SourceSink) -> Result<()> {
        let f = File::open(split).map_err(|e| Error::io(split, e))?;
        let builder = match ParquetRecordBatchReaderBuilder::try_new(f) {
            Ok(b) => b,
            Err(e) => return ctx.bad_record(split, &format!("not a readable Parquet file: {e}")),
        };
        let schema = builder.schema().clone();
        // Progress: rows read of the file's rows, as a share of its size.
        let file_rows = builder.metadata().file_metadata().num_rows().max(1) as u64;
        let file_size = std::fs::metadata(split).map_or(0, |m| m.len());
        if schema.field_with_name(&self.cfg.text_column).is_err() {
            return Err(Error::msg(format!(
                "{split}: no column `{}`",
                self.cfg.text_column
            )));
        }
        let mut wanted = vec![self.cfg.text_column.clone()];
        wanted.extend(self.cfg.id_column.clone());
        wanted.extend(self.cfg.lang_column.clone());
        wanted.extend(self.cfg.meta_columns.iter().cloned());
        let roots: Vec<usize> = wanted
            .iter()
            .filter_map(|c| schema.index_of(c).ok())
            .collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(self.cfg.read_batch_rows)
            .build()?;
        let fname = file_name(split).to_string();
        let mut row = 0u64;
        for batch in reader {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    return ctx.bad_record(
                        &format!("{split}@row{row}"),
                        &format!("corrupt data, rest of file skipped: {e}"),
                    )
                }
            };
            let texts = string_column(&batch, &self.cfg.text_column)?.unwrap_or_default();
            let ids = match &self.cfg.id_column {
                Some(c) => string_column(&batch, c)?,
                None => None,
            };
            let langs = match &self.cfg.lang_column {
                Some(c) => string_column(&batch, c)?,
                None => None,
            };
            let mut metas = Vec::new();
            for c in &self.cfg.meta_columns {
                if let Ok(Some(v)) = string_column(&batch, c) {
                    metas.push((c.clone(), v));
                }
            }
            ctx.bytes_read(batch.get_array_memory_size() as u64);
            let done = (row + batch.num_rows() as u64).min(file_rows);
            crate::io::report_input_position(
                (file_size as u128 * done as u128 / file_rows as u128) as u64,
            );
            for (i, t) in texts.into_iter().enumerate() {
                let r = row + i as u64;
                let Some(text) = t else {
                    ctx.bad_record(
                        &format!("{split}@row{r}"),
                        &format!("null `{}`", self.cfg.text_column),
                    )?;
                    continue;
                };
                let id = match ids.as_ref().and_then(|v| v[i].clone()) {
                    Some(x) => crate::provenance::key_id(&self.source, &x),
                    None => crate::provenance::file_id(&self.source, &fname, r),
                };
                let mut doc = Document::new(id, self.source.clone(), text);
                doc.meta.insert("row".into(), r.to_string());
                doc.lang = langs.as_ref().and_then(|v| v[i].clone());
                for (k, v) in &metas {
                    if let Some(x) = &v[i] {
                        doc.meta.insert(k.clone(), x.clone());
                    }
                }
                if doc.text.trim().is_empty() {
                    ctx.reject(doc, "empty", None, String::new())?;
                } else {
                    ctx.emit(doc)?;
                }
            }
            row += batch.num_rows() as u64;
        }
        Ok(())
    }
}

/// Registry entry.
pub fn kind() -> Kind {
    Kind {
        name: "ingest_parquet",
        doc: "Read documents from Parquet files with a text column (projected, streamed by record batch).",
        role: Role::Source,
        ports: OUT_REJECTED,
        schema: || schemars::schema_for!(Config),
        build: |params, ctx| {
            let cfg: Config = parse_config(params, ctx)?;
            let source = cfg.source.clone().unwrap_or_else(|| ctx.node.clone());
            Ok(Node::Source(Box::new(IngestParquet { cfg, source })))
        },
    }
}
