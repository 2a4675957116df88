//! `sluice compliance RUN`: the reports a regulator asks for, written from a finished run
//! directory alone (no second run, no network).
//!
//! ```text
//! sluice compliance out/ --keywords samples/lists/risk_keywords.zh.yaml      # writes out/compliance/
//! sluice compliance out/ --reviews out/compliance/cn_audit_sample.csv        # after review
//! ```
//!
//! Two reports:
//!
//! * **EU training-content summary** (`eu_summary.md` + `eu_summary.json`): a draft of the
//!   AI Act Article 53(1)(d) public summary, laid out like the Commission's template (July
//!   2025): modalities and size; languages; data sources by type (public datasets, crawled
//!   data, synthetic data) with sizes and licences; for crawled data the collection period
//!   from the WARC dates, the crawler named in the `warcinfo` records and the top share of
//!   domains by bytes (10% by default, `--top-domains 0.05` for SMEs), both of the scraped
//!   input and of the kept training content; and the opt-out and illegal-content measures
//!   the config applied, with their reject counts. Fields only the provider knows are marked
//!   `[to be completed by the provider]`.
//! * **Chinese corpus-safety audit pack** (TC260-003 / GB/T 45652-2025 style):
//!   `cn_audit_sample.parquet` + `.csv` (UTF-8 with BOM, so spreadsheet tools show the
//!   Chinese) hold a seeded random sample of `--sample-per-source` documents (4,000 by
//!   default; all of a smaller source) from every source, stratified by source, each with its
//!   trace location, url, licence, keyword hits and an empty `review` column; `cn_audit.md` +
//!   `.json` give per-source totals and keyword-library hit rates by risk category over the
//!   whole output and over the sample. With `--reviews FILE` (the CSV filled in) it reports
//!   each source's share of illegal or harmful content against `--max-bad-share` (5%) and
//!   exits 3 when a source is above it.
//!
//! The sample is reproducible: a document is drawn when its `xxh3(seed, id)` is among its
//! source's smallest, so the same run and seed always give the same sample, independent of
//! thread count, shard order or world size. Upsampled copies (`#<epoch>` ids) count once.
//! Packed shards hold token ids: text is decoded with the run's tokenizer (from the
//! manifest, or `--tokenizer`). Memory: one shard batch, the sample texts, and 8 bytes per
//! distinct document per source (the set that counts copies once).
//!
//! Layout: `run_view` reads the run directory into units (documents or packed segments),
//! `scan` makes the totals and draws the sample, `keywords` the library, `eu` and `cn` the
//! two reports (`cn` also imports the review).

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use arrow::array::{
    Array, ArrayRef, ListArray, RecordBatch, StringArray, StringBuilder, StructArray, UInt32Array,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Deserialize;
use serde_json::{json, Value};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::error::{Error, Result};
use crate::stages::ingest_warc::reader::{Item, RecordReader};

mod cn;
mod eu;
mod keywords;
mod run_view;
mod scan;
use cn::*;
use eu::*;
pub use keywords::KeywordLibrary;
use run_view::*;
use scan::*;

/// Default sample size per source: TC260-003 asks for at least 4,000 items per source.
pub const DEFAULT_SAMPLE: usize = 4000;
const TBD: &str = "[to be completed by the provider]";

/// `sluice compliance`: regulator-facing reports from a run directory.
#[derive(Debug, clap::Args)]
pub struct ComplianceArgs {
    /// A finished run directory (`--out` of `sluice run`).
    pub run_dir: PathBuf,
    /// Where to write the reports (default: `RUN/compliance`).
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Documents sampled per source for human review (all of a smaller source).
    #[arg(long, default_value_t = DEFAULT_SAMPLE)]
    pub sample_per_source: usize,
    /// Seed of the review sample.
    #[arg(long, default_value_t = 20250701)]
    pub seed: u64,
    /// Keyword library (YAML: `categories: [{id, name, risk, files|words}]`), for hit rates
    /// by risk category. Example: samples/lists/risk_keywords.zh.yaml.
    #[arg(long)]
    pub keywords: Option<PathBuf>,
    /// The review sheet filled in (the CSV or Parquet this command wrote, `review` column:
    /// ok / illegal / harmful, or 合格 / 违法 / 不良). Reports each source's bad share.
    #[arg(long)]
    pub reviews: Option<PathBuf>,
    /// Largest acceptable share of illegal or harmful documents per source.
    #[arg(long, default_value_t = 0.05)]
    pub max_bad_share: f64,
    /// Share of domains listed in the EU summary (0.10; 0.05 for SMEs, capped at 1,000).
    #[arg(long, default_value_t = 0.10)]
    pub top_domains: f64,
    /// The provider's name, for the EU summary.
    #[arg(long)]
    pub provider: Option<String>,
    /// The model's name, for the EU summary.
    #[arg(long)]
    pub model: Option<String>,
    /// tokenizer.json to decode packed shards (default: the one in the manifest).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

/// What the command found; `Ok(false)` means a reviewed source is above the threshold.
pub fn run(args: &ComplianceArgs) -> Result<bool> {
    let view = RunView::open(&args.run_dir)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run_dir.join("compliance"));
    std::fs::create_dir_all(&out).map_err(|e| Error::io_doing("cannot create", &out, e))?;
    let library = match &args.keywords {
        Some(p) => Some(KeywordLibrary::load(p)?),
        None => None,
    };
    let tokenizer = view.tokenizer(args.tokenizer.as_deref())?;
    let mut scan = Scan::new(args.sample_per_source, args.seed, library.as_ref(), &view);
    view.for_each_unit(tokenizer.as_ref(), &mut |u| scan.add(u))?;
    let sample = view.collect_sample(tokenizer.as_ref(), &scan, library.as_ref())?;
    let crawl = view.scan_crawl_inputs()?;

    let eu = eu_summary(&view, &scan, &crawl, args);
    write_text(&out.join("eu_summary.json"), &pretty(&eu))?;
    write_text(&out.join("eu_summary.md"), &eu_markdown(&eu))?;

    let cn = cn_audit(&view, &scan, &sample, library.as_ref(), args);
    write_sample(&out, &sample)?;
    write_text(&out.join("cn_audit.json"), &pretty(&cn))?;
    let mut ok = true;
    let mut cn_md = cn_markdown(&cn);
    if let Some(rev) = &args.reviews {
        let verdict = review_verdict(rev, &sample, &scan, args.max_bad_share)?;
        ok = verdict["sources"]
            .as_object()
            .map(|m| m.values().all(|v| v["verdict"] != "FAIL"))
            .unwrap_or(true);
        cn_md.push_str(&review_markdown(&verdict));
        write_text(&out.join("cn_review.json"), &pretty(&verdict))?;
        for (src, v) in verdict["sources"].as_object().into_iter().flatten() {
            eprintln!(
                "review {src}: {} of {} reviewed, {} bad ({:.2}%): {}",
                v["reviewed"],
                v["sampled"],
                v["bad"],
                v["bad_share"].as_f64().unwrap_or(0.0) * 100.0,
                v["verdict"].as_str().unwrap_or("")
            );
        }
    }
    write_text(&out.join("cn_audit.md"), &cn_md)?;
    eprintln!(
        "compliance: {} sources, {} documents, {} sampled; reports in {}",
        scan.sources.len(),
        scan.sources.values().map(|s| s.docs.len()).sum::<usize>(),
        sample.len(),
        out.display()
    );
    Ok(ok)
}

/// `k: v, k: v` of a JSON object (empty for anything else).
fn key_values(v: &Value) -> String {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// Every problem found in one input file, as one config error naming the file.
fn file_problems(path: &Path, problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::Config(
        problems
            .into_iter()
            .map(|p| format!("{}: {p}", path.display()))
            .collect(),
    ))
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io_doing("cannot write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ids() {
        assert_eq!(
            host_of("https://www.Example.com:8080/a?b").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            host_of("<http://u:p@news.sina.com.cn/x>").as_deref(),
            Some("news.sina.com.cn")
        );
        assert_eq!(host_of("not a url"), None);
        assert_eq!(base_id("synthetic:a.jsonl:8#2"), "synthetic:a.jsonl:8");
        assert_eq!(base_id("web:f.warc.gz@940"), "web:f.warc.gz@940");
        assert_eq!(base_id("x#y"), "x#y");
    }

    #[test]
    fn review_values() {
        assert_eq!(review_value(" OK "), Ok(Some(false)));
        assert_eq!(review_value("违法"), Ok(Some(true)));
        assert_eq!(review_value(""), Ok(None));
        assert!(review_value("maybe").is_err());
    }

    #[test]
    fn top_share_of_domains() {
        let d: BTreeMap<String, u64> = (0..25).map(|i| (format!("d{i:02}.cn"), 100 + i)).collect();
        let v = top_domains(&d, 0.10);
        assert_eq!(v["listed"], 3);
        assert_eq!(v["top"][0]["domain"], "d24.cn");
        assert_eq!(top_domains(&BTreeMap::new(), 0.1)["listed"], 0);
    }
}
