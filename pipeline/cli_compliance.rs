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

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io_doing("cannot write", path, e))
}

// ---------------------------------------------------------------------------------------
// The run directory

/// An ingest node of the run's config: where a source's documents came from.
#[derive(Debug, Clone)]
struct SourceNode {
    node: String,
    kind: String,
    source: String,
    license: Option<String>,
    terms_url: Option<String>,
    paths: Vec<String>,
}

struct RunView {
    dir: PathBuf,
    manifest: Value,
    stats: Value,
    /// (name, kind, params) of every node, in config order.
    nodes: Vec<(String, String, Value)>,
    sources: Vec<SourceNode>,
    shards: Vec<PathBuf>,
}

impl RunView {
    fn open(dir: &Path) -> Result<RunView> {
        let read_json = |name: &str| -> Result<Value> {
            let p = dir.join(name);
            let text = std::fs::read_to_string(&p)
                .map_err(|e| Error::io_doing("not a finished run directory: cannot read", &p, e))?;
            serde_json::from_str(&text).map_err(|e| Error::msg(format!("{}: {e}", p.display())))
        };
        let manifest = read_json("manifest.json")?;
        let stats = read_json("stats.json")?;
        let problems = crate::rundir::check_outputs(&dir.to_string_lossy(), &manifest, false);
        if !problems.is_empty() {
            return Err(Error::msg(format!(
                "{} does not hold what its manifest lists:\n  - {}",
                dir.display(),
                problems.join("\n  - ")
            )));
        }
        let nodes: Vec<(String, String, Value)> = manifest["config"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                (
                    n["name"].as_str().unwrap_or("").to_string(),
                    n["kind"].as_str().unwrap_or("").to_string(),
                    n["params"].clone(),
                )
            })
            .collect();
        let sources = nodes
            .iter()
            .filter(|(_, kind, _)| kind.starts_with("ingest_"))
            .map(|(name, kind, p)| SourceNode {
                node: name.clone(),
                kind: kind.clone(),
                source: p["source"].as_str().unwrap_or(name).to_string(),
                license: p["license"].as_str().map(str::to_string),
                terms_url: p["terms_url"].as_str().map(str::to_string),
                paths: p["paths"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            })
            .collect();
        let mut shards: Vec<PathBuf> = manifest["shards"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["path"].as_str().map(|p| dir.join(p)))
            .collect();
        shards.sort();
        Ok(RunView {
            dir: dir.to_path_buf(),
            manifest,
            stats,
            nodes,
            sources,
            shards,
        })
    }

    fn has_packed(&self) -> Result<bool> {
        for s in &self.shards {
            let f = File::open(s).map_err(|e| Error::io_doing("cannot open", s, e))?;
            let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(perr)?;
            if b.schema().field_with_name("doc_offsets").is_ok() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The tokenizer packed shards were made with (needed to show their text).
    fn tokenizer(&self, explicit: Option<&Path>) -> Result<Option<tokenizers::Tokenizer>> {
        if !self.has_packed()? {
            return Ok(None);
        }
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let found = self.manifest["nodes"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .find_map(|(_, v)| v["tokenizer"].as_str().map(PathBuf::from));
                found.ok_or_else(|| {
                    Error::msg("packed shards but no tokenizer in the manifest: pass --tokenizer")
                })?
            }
        };
        tokenizers::Tokenizer::from_file(&path)
            .map(Some)
            .map_err(|e| {
                Error::msg(format!(
                    "cannot load tokenizer {} ({e}); run from the directory the run was made in, or pass --tokenizer",
                    path.display()
                ))
            })
    }

    /// Calls `f` for every document (or document segment, in packed shards) of the output.
    fn for_each_unit(
        &self,
        tok: Option<&tokenizers::Tokenizer>,
        f: &mut dyn FnMut(Unit),
    ) -> Result<()> {
        for shard in &self.shards {
            let rel = shard
                .strip_prefix(&self.dir)
                .unwrap_or(shard)
                .to_string_lossy()
                .to_string();
            let file = File::open(shard).map_err(|e| Error::io_doing("cannot open", shard, e))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(perr)?
                .with_batch_size(256)
                .build()
                .map_err(perr)?;
            let mut row0 = 0usize;
            for batch in reader {
                let batch = batch.map_err(perr)?;
                if batch.column_by_name("doc_offsets").is_some() {
                    packed_units(&batch, &rel, row0, tok, f)?;
                } else {
                    doc_units(&batch, &rel, row0, f)?;
                }
                row0 += batch.num_rows();
            }
        }
        Ok(())
    }

    /// Second pass: the full text of every sampled document (segments joined in order).
    fn collect_sample(
        &self,
        tok: Option<&tokenizers::Tokenizer>,
        scan: &Scan,
        lib: Option<&KeywordLibrary>,
    ) -> Result<Vec<SampleRow>> {
        let mut wanted: HashMap<String, (String, u64)> = HashMap::new();
        for (src, acc) in &scan.sources {
            for (key, id) in acc.heap.iter() {
                wanted.insert(id.clone(), (src.clone(), *key));
            }
        }
        // base id -> (full id first seen, segments (start, text, location), url, license, lang)
        let mut got: HashMap<String, SampleRow> = HashMap::new();
        let mut parts: HashMap<String, Vec<(u64, String)>> = HashMap::new();
        self.for_each_unit(tok, &mut |u| {
            let base = base_id(&u.id);
            let Some((src, key)) = wanted.get(base) else {
                return;
            };
            let row = got.entry(base.to_string()).or_insert_with(|| SampleRow {
                source: src.clone(),
                key: *key,
                doc_id: u.id.clone(),
                trace: Vec::new(),
                url: u.url.clone().unwrap_or_default(),
                license: u.license.clone().unwrap_or_default(),
                lang: u.lang.clone().unwrap_or_default(),
                text: String::new(),
                hits: String::new(),
            });
            if row.doc_id != u.id {
                return; // another copy of the same document
            }
            row.trace.push(u.location.clone());
            parts
                .entry(base.to_string())
                .or_default()
                .push((u.start, u.text.unwrap_or_default()));
        })?;
        let mut rows: Vec<SampleRow> = got
            .into_iter()
            .map(|(base, mut r)| {
                let mut p = parts.remove(&base).unwrap_or_default();
                p.sort_by_key(|(s, _)| *s);
                r.text = p.into_iter().map(|(_, t)| t).collect();
                if let Some(lib) = lib {
                    r.hits = lib
                        .hits(&r.text)
                        .iter()
                        .map(|(c, n)| format!("{c}:{n}"))
                        .collect::<Vec<_>>()
                        .join(";");
                }
                r
            })
            .collect();
        rows.sort_by(|a, b| (&a.source, a.key, &a.doc_id).cmp(&(&b.source, b.key, &b.doc_id)));
        Ok(rows)
    }

    /// Reads the WARC inputs of the run (from the manifest) for what the EU summary needs
    /// about the crawl: dates, crawler, robots policy, domains and bytes scraped.
    fn scan_crawl_inputs(&self) -> Result<Vec<CrawlInput>> {
        let mut out = Vec::new();
        let warc_nodes: HashSet<&str> = self
            .sources
            .iter()
            .filter(|s| s.kind == "ingest_warc")
            .map(|s| s.node.as_str())
            .collect();
        for inp in self.manifest["inputs"].as_array().into_iter().flatten() {
            let node = inp["node"].as_str().unwrap_or("");
            if !warc_nodes.contains(node) {
                continue;
            }
            let path = inp["path"].as_str().unwrap_or("").to_string();
            let source = self
                .sources
                .iter()
                .find(|s| s.node == node)
                .map(|s| s.source.clone())
                .unwrap_or_default();
            let mut c = CrawlInput {
                node: node.to_string(),
                source,
                path: path.clone(),
                ..Default::default()
            };
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    c.error = Some(format!("cannot read {path}: {e}"));
                    out.push(c);
                    continue;
                }
            };
            let reader = RecordReader::new(BufReader::new(file), 1 << 20, &["warcinfo"])
                .map_err(|e| Error::io_doing("cannot read", Path::new(&path), e))?;
            for item in reader {
                let Item::Record(r) = item else {
                    c.bad_records += 1;
                    continue;
                };
                let ty = r.warc_type();
                if ty == "warcinfo" {
                    for line in String::from_utf8_lossy(&r.block).lines() {
                        if let Some((k, v)) = line.split_once(':') {
                            let k = k.trim().to_ascii_lowercase();
                            if matches!(
                                k.as_str(),
                                "software"
                                    | "operator"
                                    | "robots"
                                    | "isPartOf"
                                    | "ispartof"
                                    | "description"
                            ) {
                                c.warcinfo.insert(k, v.trim().to_string());
                            }
                        }
                    }
                    continue;
                }
                if ty != "response" && ty != "resource" && ty != "conversion" {
                    continue;
                }
                c.records += 1;
                c.bytes += r.declared_len;
                if let Some(d) = r.header("WARC-Date").map(str::trim) {
                    if c.first_date.as_deref().is_none_or(|f| d < f) {
                        c.first_date = Some(d.to_string());
                    }
                    if c.last_date.as_deref().is_none_or(|l| d > l) {
                        c.last_date = Some(d.to_string());
                    }
                }
                if let Some(host) = r.header("WARC-Target-URI").and_then(host_of) {
                    *c.domains.entry(host).or_default() += r.declared_len;
                }
            }
            out.push(c);
        }
        Ok(out)
    }
}

fn perr(e: impl std::fmt::Display) -> Error {
    Error::Parquet(e.to_string())
}

/// A document id without the `#<epoch>` suffix `mix` adds to upsampled copies.
fn base_id(id: &str) -> &str {
    match id.rsplit_once('#') {
        Some((b, e)) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()) => b,
        _ => id,
    }
}

/// The host of a URL, lower-case, without `www.` and port.
fn host_of(url: &str) -> Option<String> {
    let url = url.trim().trim_start_matches('<').trim_end_matches('>');
    let rest = url.split_once("://")?.1;
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host);
    let host = host.split(':').next()?.to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host).to_string();
    (!host.is_empty()).then_some(host)
}

/// One document, or one segment of a packed document.
struct Unit {
    id: String,
    source: String,
    url: Option<String>,
    license: Option<String>,
    lang: Option<String>,
    tokens: u64,
    text: Option<String>,
    /// Token start of this segment within its document (0 for whole documents).
    start: u64,
    location: String,
}

fn str_col<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
}

fn opt_str(a: Option<&StringArray>, i: usize) -> Option<String> {
    a.and_then(|a| a.is_valid(i).then(|| a.value(i).to_string()))
        .filter(|s| !s.is_empty())
}

fn doc_units(batch: &RecordBatch, shard: &str, row0: usize, f: &mut dyn FnMut(Unit)) -> Result<()> {
    let ids = str_col(batch, "id").ok_or_else(|| Error::msg(format!("{shard}: no `id` column")))?;
    let sources = str_col(batch, "source");
    let texts = str_col(batch, "text");
    let urls = str_col(batch, "url");
    let langs = str_col(batch, "lang");
    let metas = str_col(batch, "meta");
    let n_tokens = batch
        .column_by_name("n_tokens")
        .and_then(|c| c.as_any().downcast_ref::<UInt32Array>());
    for i in 0..batch.num_rows() {
        let meta: Value = opt_str(metas, i)
            .and_then(|m| serde_json::from_str(&m).ok())
            .unwrap_or(Value::Null);
        f(Unit {
            id: ids.value(i).to_string(),
            source: opt_str(sources, i).unwrap_or_default(),
            url: opt_str(urls, i).or_else(|| meta["url"].as_str().map(str::to_string)),
            license: meta["license"].as_str().map(str::to_string),
            lang: opt_str(langs, i),
            tokens: n_tokens.map(|a| a.value(i) as u64).unwrap_or(0),
            text: opt_str(texts, i),
            start: 0,
            location: format!("{shard}#{}", row0 + i),
        });
    }
    Ok(())
}

fn list_strings(batch: &RecordBatch, name: &str, i: usize) -> Option<Vec<String>> {
    let l = batch
        .column_by_name(name)?
        .as_any()
        .downcast_ref::<ListArray>()?;
    if l.is_null(i) {
        return None;
    }
    let v = l.value(i);
    let s = v.as_any().downcast_ref::<StringArray>()?;
    Some((0..s.len()).map(|k| s.value(k).to_string()).collect())
}

fn list_u64(batch: &RecordBatch, name: &str, i: usize) -> Option<Vec<u64>> {
    let l = batch
        .column_by_name(name)?
        .as_any()
        .downcast_ref::<ListArray>()?;
    if l.is_null(i) {
        return None;
    }
    let v = l.value(i);
    if let Some(a) = v.as_any().downcast_ref::<UInt32Array>() {
        return Some(a.values().iter().map(|&x| x as u64).collect());
    }
    if let Some(a) = v.as_any().downcast_ref::<arrow::array::Int64Array>() {
        return Some(a.values().iter().map(|&x| x.max(0) as u64).collect());
    }
    if let Some(a) = v.as_any().downcast_ref::<arrow::array::UInt64Array>() {
        return Some(a.values().to_vec());
    }
    None
}

/// The row's `source_mix` entries: (source, license).
fn source_mix(batch: &RecordBatch, i: usize) -> Vec<(String, Option<String>)> {
    let Some(l) = batch
        .column_by_name("source_mix")
        .and_then(|c| c.as_any().downcast_ref::<ListArray>())
    else {
        return Vec::new();
    };
    let v = l.value(i);
    let Some(s) = v.as_any().downcast_ref::<StructArray>() else {
        return Vec::new();
    };
    let src = s
        .column_by_name("source")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>());
    let lic = s
        .column_by_name("license")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>());
    (0..s.len())
        .map(|k| (opt_str(src, k).unwrap_or_default(), opt_str(lic, k)))
        .collect()
}

fn packed_units(
    batch: &RecordBatch,
    shard: &str,
    row0: usize,
    tok: Option<&tokenizers::Tokenizer>,
    f: &mut dyn FnMut(Unit),
) -> Result<()> {
    let n_tokens = batch
        .column_by_name("n_tokens")
        .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
        .ok_or_else(|| Error::msg(format!("{shard}: no `n_tokens` column")))?;
    let ids_col = batch
        .column_by_name("input_ids")
        .and_then(|c| c.as_any().downcast_ref::<ListArray>())
        .ok_or_else(|| Error::msg(format!("{shard}: no `input_ids` column")))?;
    for i in 0..batch.num_rows() {
        let offsets = list_u64(batch, "doc_offsets", i).unwrap_or_default();
        let doc_ids = list_strings(batch, "doc_ids", i).unwrap_or_default();
        let urls = list_strings(batch, "doc_urls", i);
        let starts = list_u64(batch, "doc_starts", i);
        let mix = source_mix(batch, i);
        let ids_arr = ids_col.value(i);
        let ids = ids_arr
            .as_any()
            .downcast_ref::<UInt32Array>()
            .ok_or_else(|| Error::msg(format!("{shard}: `input_ids` is not list<uint32>")))?;
        let end_all = n_tokens.value(i) as u64;
        for (k, id) in doc_ids.iter().enumerate() {
            let a = offsets.get(k).copied().unwrap_or(0);
            let b = offsets.get(k + 1).copied().unwrap_or(end_all).min(end_all);
            let source = match mix.as_slice() {
                [(s, _)] => s.clone(),
                _ => id.split(':').next().unwrap_or("").to_string(),
            };
            let license = mix
                .iter()
                .find(|(s, _)| *s == source)
                .and_then(|(_, l)| l.clone());
            let text = tok.map(|t| {
                let slice = &ids.values()[(a as usize).min(ids.len())..(b as usize).min(ids.len())];
                t.decode(slice, true).unwrap_or_default()
            });
            f(Unit {
                id: id.clone(),
                source,
                url: urls
                    .as_ref()
                    .and_then(|u| u.get(k).cloned())
                    .filter(|u| !u.is_empty()),
                license,
                lang: None,
                tokens: b.saturating_sub(a),
                text,
                start: starts.as_ref().and_then(|s| s.get(k).copied()).unwrap_or(0),
                location: format!("{shard}#{}@{a}", row0 + i),
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Keyword library

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LibraryFile {
    /// Free text: where the lists come from, their licence.
    #[serde(default)]
    description: Option<String>,
    categories: Vec<LibraryCategory>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LibraryCategory {
    /// Short id, e.g. `A.1-porn`.
    id: String,
    /// Human name.
    #[serde(default)]
    name: Option<String>,
    /// The risk class of TC260-003 Appendix A it belongs to.
    #[serde(default)]
    risk: Option<String>,
    /// Word-list files, one term per line (`#` comments), relative to the YAML file.
    #[serde(default)]
    files: Vec<String>,
    /// Inline terms.
    #[serde(default)]
    words: Vec<String>,
}

/// Risk categories with their terms, matched as substrings (ASCII case-insensitive).
pub struct KeywordLibrary {
    path: String,
    description: Option<String>,
    /// (id, name, risk, number of terms)
    categories: Vec<(String, String, String, usize)>,
    matcher: AhoCorasick,
    /// Pattern index -> category index.
    pattern_cat: Vec<usize>,
}

impl KeywordLibrary {
    /// Loads a library YAML; every problem is reported at once.
    pub fn load(path: &Path) -> Result<KeywordLibrary> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io_doing("cannot read keyword library", path, e))?;
        let file: LibraryFile = serde_norway::from_str(&text)
            .map_err(|e| Error::Config(vec![format!("{}: {e}", path.display())]))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut problems = Vec::new();
        let mut patterns: Vec<String> = Vec::new();
        let mut pattern_cat = Vec::new();
        let mut categories = Vec::new();
        let mut seen = HashSet::new();
        for (ci, c) in file.categories.iter().enumerate() {
            if !seen.insert(c.id.clone()) {
                problems.push(format!("category `{}` is listed twice", c.id));
            }
            let mut terms: Vec<String> = c.words.iter().map(|w| w.trim().to_string()).collect();
            for f in &c.files {
                let p = base.join(f);
                match std::fs::read_to_string(&p) {
                    Ok(t) => terms.extend(
                        t.lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty() && !l.starts_with('#'))
                            .map(str::to_string),
                    ),
                    Err(e) => problems.push(format!("category `{}`: {}: {e}", c.id, p.display())),
                }
            }
            terms.retain(|t| !t.is_empty());
            terms.sort();
            terms.dedup();
            if terms.is_empty() {
                problems.push(format!("category `{}` has no terms", c.id));
            }
            categories.push((
                c.id.clone(),
                c.name.clone().unwrap_or_default(),
                c.risk.clone().unwrap_or_default(),
                terms.len(),
            ));
            for t in terms {
                patterns.push(t);
                pattern_cat.push(ci);
            }
        }
        if !problems.is_empty() {
            return Err(Error::Config(
                problems
                    .into_iter()
                    .map(|p| format!("{}: {p}", path.display()))
                    .collect(),
            ));
        }
        let matcher = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .ascii_case_insensitive(true)
            .build(&patterns)
            .map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
        Ok(KeywordLibrary {
            path: path.display().to_string(),
            description: file.description,
            categories,
            matcher,
            pattern_cat,
        })
    }

    /// Hits per category id (only categories with hits), in library order.
    pub fn hits(&self, text: &str) -> Vec<(String, u64)> {
        let mut n = vec![0u64; self.categories.len()];
        for m in self.matcher.find_iter(text) {
            n[self.pattern_cat[m.pattern().as_usize()]] += 1;
        }
        n.iter()
            .enumerate()
            .filter(|(_, &k)| k > 0)
            .map(|(i, &k)| (self.categories[i].0.clone(), k))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Pass 1: totals and the sample draw

#[derive(Default)]
struct SourceAcc {
    /// Distinct documents (hash of the base id): copies count once.
    docs: HashSet<u64>,
    /// Documents and segments as they occur in the output (copies included).
    occurrences: u64,
    tokens: u64,
    bytes: u64,
    licenses: BTreeMap<String, u64>,
    langs: BTreeMap<String, u64>,
    /// Distinct documents with a hit, per keyword category.
    keyword_docs: BTreeMap<String, HashSet<u64>>,
    /// Content bytes per domain (documents with a url).
    domains: BTreeMap<String, u64>,
    /// The `n` smallest (key, base id): the sample.
    heap: BinaryHeap<(u64, String)>,
}

/// Per ingest node: distinct documents, tokens, bytes (a source name may span nodes).
#[derive(Default)]
struct OriginAcc {
    docs: HashSet<u64>,
    tokens: u64,
    bytes: u64,
}

struct Scan<'a> {
    n: usize,
    seed: u64,
    lib: Option<&'a KeywordLibrary>,
    sources: BTreeMap<String, SourceAcc>,
    /// Input file basename -> ingest node, to attribute documents to nodes by their id.
    file_node: HashMap<String, String>,
    origins: BTreeMap<String, OriginAcc>,
}

impl<'a> Scan<'a> {
    fn new(n: usize, seed: u64, lib: Option<&'a KeywordLibrary>, view: &RunView) -> Self {
        let mut file_node = HashMap::new();
        for inp in view.manifest["inputs"].as_array().into_iter().flatten() {
            if let (Some(node), Some(path)) = (inp["node"].as_str(), inp["path"].as_str()) {
                let name = path.rsplit('/').next().unwrap_or(path);
                file_node.insert(name.to_string(), node.to_string());
            }
        }
        Scan {
            n,
            seed,
            lib,
            sources: BTreeMap::new(),
            file_node,
            origins: BTreeMap::new(),
        }
    }

    /// The ingest node a document id comes from: ids are `<source>:<file>:<line|row>` or
    /// `<source>:<file>@<offset>` (docs/concepts.md#ids).
    fn origin(&self, id: &str) -> Option<&String> {
        let rest = id.split_once(':')?.1;
        let file = rest.rsplit_once('@').map(|(f, _)| f).unwrap_or(rest);
        let file = file.rsplit_once(':').map(|(f, _)| f).unwrap_or(file);
        self.file_node.get(file).or_else(|| {
            self.file_node
                .get(rest.split(['@', ':']).next().unwrap_or(""))
        })
    }

    fn add(&mut self, u: Unit) {
        let acc = self.sources.entry(u.source.clone()).or_default();
        let base = base_id(&u.id);
        let h = xxh3_64(base.as_bytes());
        let bytes = u.text.as_ref().map(|t| t.len() as u64).unwrap_or(0);
        acc.occurrences += 1;
        acc.tokens += u.tokens;
        acc.bytes += bytes;
        let lic = u.license.clone().unwrap_or_else(|| "unknown".into());
        *acc.licenses.entry(lic).or_default() += if u.tokens > 0 { u.tokens } else { bytes };
        if let Some(host) = u.url.as_deref().and_then(host_of) {
            *acc.domains.entry(host).or_default() += bytes;
        }
        if let (Some(lib), Some(t)) = (self.lib, u.text.as_deref()) {
            for (cat, _) in lib.hits(t) {
                acc.keyword_docs.entry(cat).or_default().insert(h);
            }
        }
        if let Some(node) = self.origin(base).cloned() {
            let o = self.origins.entry(node).or_default();
            o.docs.insert(h);
            o.tokens += u.tokens;
            o.bytes += bytes;
        }
        let acc = self.sources.entry(u.source.clone()).or_default();
        if !acc.docs.insert(h) {
            return; // a copy, or a further segment of a document already counted
        }
        if let Some(l) = &u.lang {
            *acc.langs.entry(l.clone()).or_default() += 1;
        }
        if self.n == 0 {
            return;
        }
        let key = xxh3_64_with_seed(base.as_bytes(), self.seed);
        if acc.heap.len() < self.n {
            acc.heap.push((key, base.to_string()));
        } else if acc.heap.peek().is_some_and(|(top, _)| key < *top) {
            acc.heap.pop();
            acc.heap.push((key, base.to_string()));
        }
    }
}

#[derive(Debug, Clone)]
struct SampleRow {
    source: String,
    key: u64,
    doc_id: String,
    trace: Vec<String>,
    url: String,
    license: String,
    lang: String,
    text: String,
    hits: String,
}

#[derive(Debug, Default)]
struct CrawlInput {
    node: String,
    source: String,
    path: String,
    records: u64,
    bytes: u64,
    bad_records: u64,
    first_date: Option<String>,
    last_date: Option<String>,
    warcinfo: BTreeMap<String, String>,
    domains: BTreeMap<String, u64>,
    error: Option<String>,
}

// ---------------------------------------------------------------------------------------
// EU summary

/// The top `share` of domains by bytes (at least one, at most 1,000), with their byte share.
fn top_domains(domains: &BTreeMap<String, u64>, share: f64) -> Value {
    let total: u64 = domains.values().sum();
    let mut v: Vec<(&String, &u64)> = domains.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let k = ((v.len() as f64 * share).ceil() as usize).clamp(v.len().min(1), 1000);
    json!({
        "domains_total": v.len(),
        "bytes_total": total,
        "listed": k,
        "top": v.iter().take(k).map(|(d, b)| json!({
            "domain": d, "bytes": b,
            "share": if total > 0 { **b as f64 / total as f64 } else { 0.0 },
        })).collect::<Vec<_>>(),
    })
}

fn size_band(tokens: u64) -> &'static str {
    if tokens < 1_000_000_000 {
        "less than 1 billion tokens"
    } else if tokens <= 10_000_000_000_000 {
        "1 billion to 10 trillion tokens"
    } else {
        "more than 10 trillion tokens"
    }
}

fn node_rejects(stats: &Value, node: &str) -> Value {
    let n = &stats["nodes"][node];
    json!({
        "docs_in": n["docs_in"],
        "rejected": n["ports"]["rejected"]["docs"],
        "reasons": n["rejects"],
    })
}

fn eu_summary(view: &RunView, scan: &Scan, crawl: &[CrawlInput], args: &ComplianceArgs) -> Value {
    let total_tokens: u64 = scan.sources.values().map(|s| s.tokens).sum();
    let total_bytes: u64 = scan.sources.values().map(|s| s.bytes).sum();
    let mut langs: BTreeMap<String, u64> = BTreeMap::new();
    for s in scan.sources.values() {
        for (l, n) in &s.langs {
            *langs.entry(l.clone()).or_default() += n;
        }
    }
    // Languages the config keeps, when documents carry no language column (packed runs).
    let lang_filter: Vec<Value> = view
        .nodes
        .iter()
        .filter(|(_, k, _)| k == "langid")
        .map(|(n, _, p)| json!({"node": n, "keep": p["keep"]}))
        .collect();
    let by_kind = |kinds: &[&str]| -> Vec<Value> {
        view.sources
            .iter()
            .filter(|s| kinds.contains(&s.kind.as_str()))
            .map(|s| {
                let o = scan.origins.get(&s.node);
                let inputs: Vec<Value> = view.manifest["inputs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|i| i["node"] == s.node.as_str())
                    .map(|i| json!({"path": i["path"], "size": i["size"], "sha256": i["sha256"]}))
                    .collect();
                json!({
                    "node": s.node, "kind": s.kind, "source": s.source,
                    "license": s.license.clone().unwrap_or_else(|| "unknown".into()),
                    "terms_url": s.terms_url,
                    "inputs": inputs,
                    "paths": s.paths,
                    "in_output": json!({
                        "documents": o.map(|a| a.docs.len()).unwrap_or(0),
                        "tokens": o.map(|a| a.tokens).unwrap_or(0),
                        "bytes": o.map(|a| a.bytes).unwrap_or(0),
                    }),
                })
            })
            .collect()
    };
    let mut scraped = BTreeMap::new();
    let mut first: Option<String> = None;
    let mut last: Option<String> = None;
    for c in crawl {
        for (d, b) in &c.domains {
            *scraped.entry(d.clone()).or_insert(0u64) += b;
        }
        if let Some(f) = &c.first_date {
            if first.as_ref().is_none_or(|x| f < x) {
                first = Some(f.clone());
            }
        }
        if let Some(l) = &c.last_date {
            if last.as_ref().is_none_or(|x| l > x) {
                last = Some(l.clone());
            }
        }
    }
    let mut kept_domains = BTreeMap::new();
    for s in scan.sources.values() {
        for (d, b) in &s.domains {
            *kept_domains.entry(d.clone()).or_insert(0u64) += b;
        }
    }
    let measure = |kinds: &[&str]| -> Vec<Value> {
        view.nodes
            .iter()
            .filter(|(_, k, _)| kinds.contains(&k.as_str()))
            .map(|(n, k, p)| {
                let mut v = json!({"node": n, "kind": k, "settings": p});
                if let Value::Object(m) = node_rejects(&view.stats, n) {
                    for (a, b) in m {
                        v[a] = b;
                    }
                }
                v
            })
            .collect()
    };
    let mut licenses: BTreeMap<String, u64> = BTreeMap::new();
    for s in scan.sources.values() {
        for (l, n) in &s.licenses {
            *licenses.entry(l.clone()).or_default() += n;
        }
    }
    json!({
        "template": "European Commission, Template for the Public Summary of Training Content for general-purpose AI models (July 2025), AI Act Article 53(1)(d)",
        "status": "draft generated by sluice from the run directory; sections marked as such are for the provider to complete",
        "run": {
            "directory": view.dir.display().to_string(),
            "config_hash": view.manifest["config_hash"],
            "sluice_version": view.manifest["sluice_version"],
            "manifest_version": view.manifest.get("version").cloned().unwrap_or(json!(1)),
        },
        "1_general": {
            "provider": args.provider.clone().unwrap_or_else(|| TBD.into()),
            "model": args.model.clone().unwrap_or_else(|| TBD.into()),
            "modalities": ["text"],
            "text_size": {
                "tokens": total_tokens, "bytes": total_bytes, "band": size_band(total_tokens),
                "documents": scan.sources.values().map(|s| s.docs.len()).sum::<usize>(),
            },
            "languages_in_output": langs,
            "language_filters": lang_filter,
            "tokens_by_license": licenses,
        },
        "2_sources": {
            "2_1_public_datasets": by_kind(&["ingest_jsonl", "ingest_parquet"]),
            "2_1_note": "file datasets are listed here; the provider must say whether each is publicly available (2.1) or licensed from a third party (2.2)",
            "2_3_crawled": {
                "sources": by_kind(&["ingest_warc"]),
                "collection_period": {"from": first, "to": last, "basis": "WARC-Date of the response/resource/conversion records of the inputs"},
                "crawlers": crawl.iter().map(|c| json!({
                    "node": c.node, "source": c.source, "input": c.path, "records": c.records, "bytes": c.bytes, "bad_records": c.bad_records,
                    "warcinfo": c.warcinfo, "error": c.error,
                })).collect::<Vec<_>>(),
                "top_domains_scraped": top_domains(&scraped, args.top_domains),
                "top_domains_in_training_data": top_domains(&kept_domains, args.top_domains),
            },
            "2_4_user_data": "none: no user-interaction source in this run",
            "2_5_synthetic": by_kind(&["ingest_instructions", "ingest_synthetic"]),
        },
        "3_processing": {
            "3_1_tdm_opt_outs": measure(&["tdm_optout"]),
            "3_1_robots": crawl.iter().filter_map(|c| c.warcinfo.get("robots").map(|r| json!({"input": c.path, "robots": r}))).collect::<Vec<_>>(),
            "3_2_illegal_and_harmful_content": measure(&["url_filter", "heuristic_filter", "quality_classifier", "pii_redact", "decontaminate"]),
        },
    })
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn fmt_n(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn source_table(md: &mut String, list: &Value) {
    let Some(arr) = list.as_array().filter(|a| !a.is_empty()) else {
        md.push_str("None in this run.\n\n");
        return;
    };
    md.push_str("| source | node | licence | terms | inputs (size, sha256) | documents | tokens | bytes |\n|---|---|---|---|---|---|---|---|\n");
    for s in arr {
        let inputs = s["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                format!(
                    "`{}` ({} B, {}…)",
                    fmt_n(&i["path"]),
                    fmt_n(&i["size"]),
                    i["sha256"].as_str().unwrap_or("").get(..12).unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("<br>");
        let o = &s["in_output"];
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            fmt_n(&s["source"]),
            fmt_n(&s["node"]),
            md_escape(&fmt_n(&s["license"])),
            fmt_n(&s["terms_url"]),
            inputs,
            fmt_n(&o["documents"]),
            fmt_n(&o["tokens"]),
            fmt_n(&o["bytes"]),
        ));
    }
    md.push_str("\nDocuments, tokens and bytes: what of this input is in the training data (upsampled copies count in tokens and bytes, once in documents).\n\n");
}

fn domain_table(md: &mut String, v: &Value, what: &str) {
    let listed = v["listed"].as_u64().unwrap_or(0);
    if listed == 0 {
        md.push_str(&format!("No {what} has a URL.\n\n"));
        return;
    }
    md.push_str(&format!(
        "{} of {} domains ({} bytes in all):\n\n| domain | bytes | share |\n|---|---:|---:|\n",
        listed,
        fmt_n(&v["domains_total"]),
        fmt_n(&v["bytes_total"])
    ));
    for d in v["top"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| {} | {} | {:.2}% |\n",
            fmt_n(&d["domain"]),
            fmt_n(&d["bytes"]),
            d["share"].as_f64().unwrap_or(0.0) * 100.0
        ));
    }
    md.push('\n');
}

fn measures_table(md: &mut String, list: &Value, none: &str) {
    let Some(arr) = list.as_array().filter(|a| !a.is_empty()) else {
        md.push_str(none);
        md.push_str("\n\n");
        return;
    };
    md.push_str("| node | kind | documents in | rejected | reasons |\n|---|---|---:|---:|---|\n");
    for m in arr {
        let reasons = m["reasons"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        md.push_str(&format!(
            "| {} | `{}` | {} | {} | {} |\n",
            fmt_n(&m["node"]),
            fmt_n(&m["kind"]),
            fmt_n(&m["docs_in"]),
            fmt_n(&m["rejected"]),
            md_escape(&reasons)
        ));
    }
    md.push('\n');
}

fn eu_markdown(eu: &Value) -> String {
    let g = &eu["1_general"];
    let s = &eu["2_sources"];
    let c = &s["2_3_crawled"];
    let p = &eu["3_processing"];
    let mut md = String::new();
    md.push_str("# Public summary of training content (draft)\n\n");
    md.push_str(&format!(
        "Generated by `sluice compliance` from run `{}` (config sha256 `{}`, sluice {}, manifest version {}). \
         Layout of the European Commission's template for the AI Act Article 53(1)(d) summary (July 2025). \
         This is a draft from the data-preparation run only: the provider completes the marked fields and \
         adds data sources outside this run. It is not legal advice.\n\n",
        fmt_n(&eu["run"]["directory"]),
        fmt_n(&eu["run"]["config_hash"]),
        fmt_n(&eu["run"]["sluice_version"]),
        fmt_n(&eu["run"]["manifest_version"]),
    ));
    md.push_str("## 1. General information\n\n");
    md.push_str(&format!(
        "* Provider: {}\n* Model: {}\n* Modalities: text\n* Size of the text training data from this run: **{} tokens** ({} bytes of text, {} documents), band: *{}*\n",
        fmt_n(&g["provider"]), fmt_n(&g["model"]),
        fmt_n(&g["text_size"]["tokens"]), fmt_n(&g["text_size"]["bytes"]),
        fmt_n(&g["text_size"]["documents"]), fmt_n(&g["text_size"]["band"]),
    ));
    let langs = g["languages_in_output"]
        .as_object()
        .filter(|o| !o.is_empty())
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k} ({v} documents)"))
                .collect::<Vec<_>>()
                .join(", ")
        });
    let filters = g["language_filters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| format!("`{}` keeps {}", fmt_n(&f["node"]), f["keep"]))
        .collect::<Vec<_>>()
        .join("; ");
    md.push_str(&format!(
        "* Languages: {}{}\n",
        langs.unwrap_or_else(|| "not recorded per document in packed shards".into()),
        if filters.is_empty() {
            String::new()
        } else {
            format!(" (language filter: {filters})")
        }
    ));
    let lic = g["tokens_by_license"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    md.push_str(&format!(
        "* Tokens (or bytes, without tokenizer) by licence: {lic}\n\n"
    ));
    md.push_str("## 2. List of data sources\n\n### 2.1 Publicly available datasets\n\n");
    md.push_str(&format!("{}.\n\n", fmt_n(&s["2_1_note"])));
    source_table(&mut md, &s["2_1_public_datasets"]);
    md.push_str("### 2.2 Private datasets obtained from third parties\n\n");
    md.push_str(&format!("{TBD} (see the note under 2.1).\n\n"));
    md.push_str("### 2.3 Data crawled and scraped from online sources\n\n");
    source_table(&mut md, &c["sources"]);
    md.push_str(&format!(
        "* Collection period: **{} to {}** ({}).\n",
        fmt_n(&c["collection_period"]["from"]),
        fmt_n(&c["collection_period"]["to"]),
        fmt_n(&c["collection_period"]["basis"])
    ));
    for cr in c["crawlers"].as_array().into_iter().flatten() {
        let info = cr["warcinfo"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k}: {}", fmt_n(v)))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "no warcinfo record".into());
        md.push_str(&format!(
            "* Input `{}`: {} records, {} bytes; crawler ({})\n",
            fmt_n(&cr["input"]),
            fmt_n(&cr["records"]),
            fmt_n(&cr["bytes"]),
            md_escape(&info)
        ));
    }
    md.push_str("* Purpose of the crawl and the crawler's name and identification: ");
    md.push_str(TBD);
    md.push_str(".\n\n#### Top domains by size of content scraped (crawl inputs)\n\n");
    domain_table(&mut md, &c["top_domains_scraped"], "crawled record");
    md.push_str("#### Top domains by size of content in the training data\n\n");
    domain_table(
        &mut md,
        &c["top_domains_in_training_data"],
        "document of the output",
    );
    md.push_str("### 2.4 User data\n\n");
    md.push_str(&format!("{}.\n\n", fmt_n(&s["2_4_user_data"])));
    md.push_str("### 2.5 Synthetic data\n\n");
    source_table(&mut md, &s["2_5_synthetic"]);
    md.push_str("### 2.6 Other sources\n\n");
    md.push_str(&format!("{TBD}.\n\n"));
    md.push_str("## 3. Data processing aspects\n\n### 3.1 Respect of reservation of rights from the TDM exception\n\n");
    measures_table(
        &mut md,
        &p["3_1_tdm_opt_outs"],
        "**No opt-out stage in this run's config**: add a `tdm_optout` node to honour robots `noai` meta tags, TDMRep and opt-out domain lists.",
    );
    for r in p["3_1_robots"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "* Robots policy stated by the crawl `{}`: {}\n",
            fmt_n(&r["input"]),
            md_escape(&fmt_n(&r["robots"]))
        ));
    }
    md.push_str("\n### 3.2 Removal of illegal content\n\n");
    measures_table(
        &mut md,
        &p["3_2_illegal_and_harmful_content"],
        "No filtering stage in this run's config.",
    );
    md
}

// ---------------------------------------------------------------------------------------
// Chinese audit pack

fn cn_audit(
    view: &RunView,
    scan: &Scan,
    sample: &[SampleRow],
    lib: Option<&KeywordLibrary>,
    args: &ComplianceArgs,
) -> Value {
    let mut sources = serde_json::Map::new();
    for (src, acc) in &scan.sources {
        let docs = acc.docs.len() as u64;
        let sampled: Vec<&SampleRow> = sample.iter().filter(|r| &r.source == src).collect();
        let mut kw = serde_json::Map::new();
        if let Some(lib) = lib {
            for (id, name, risk, terms) in &lib.categories {
                let hit_docs = acc
                    .keyword_docs
                    .get(id)
                    .map(|s| s.len() as u64)
                    .unwrap_or(0);
                let hit_sample = sampled
                    .iter()
                    .filter(|r| r.hits.split(';').any(|h| h.split(':').next() == Some(id)))
                    .count() as u64;
                kw.insert(
                    id.clone(),
                    json!({
                        "name": name, "risk": risk, "terms": terms,
                        "documents_with_hits": hit_docs,
                        "rate": if docs > 0 { hit_docs as f64 / docs as f64 } else { 0.0 },
                        "sample_documents_with_hits": hit_sample,
                        "sample_rate": if sampled.is_empty() { 0.0 } else { hit_sample as f64 / sampled.len() as f64 },
                    }),
                );
            }
        }
        sources.insert(
            src.clone(),
            json!({
                "documents": docs,
                "occurrences": acc.occurrences,
                "tokens": acc.tokens,
                "bytes": acc.bytes,
                "licenses": acc.licenses,
                "sampled": sampled.len(),
                "required": (args.sample_per_source as u64).min(docs),
                "keywords": kw,
            }),
        );
    }
    json!({
        "standard": "TC260-003 (Basic security requirements for generative AI services) and GB/T 45652-2025: per-source random sampling (at least 4,000 items per source) with a bad-content share of at most 5%, keyword library, traceability",
        "run": {
            "directory": view.dir.display().to_string(),
            "config_hash": view.manifest["config_hash"],
            "manifest_version": view.manifest.get("version").cloned().unwrap_or(json!(1)),
        },
        "sample": {
            "per_source": args.sample_per_source,
            "seed": args.seed,
            "rule": "stratified by source; within a source the documents with the smallest xxh3_64(seed, document id) (upsampled copies count once)",
            "files": ["cn_audit_sample.parquet", "cn_audit_sample.csv"],
        },
        "keyword_library": lib.map(|l| json!({
            "path": l.path, "description": l.description,
            "categories": l.categories.iter().map(|(id, name, risk, n)| json!({"id": id, "name": name, "risk": risk, "terms": n})).collect::<Vec<_>>(),
        })),
        "max_bad_share": args.max_bad_share,
        "sources": sources,
    })
}

fn cn_markdown(cn: &Value) -> String {
    let mut md = String::new();
    md.push_str("# 语料安全评估抽样包 / Corpus-safety audit pack\n\n");
    md.push_str(&format!(
        "Generated by `sluice compliance` from run `{}` (config sha256 `{}`). Basis: {}.\n\n",
        fmt_n(&cn["run"]["directory"]),
        fmt_n(&cn["run"]["config_hash"]),
        fmt_n(&cn["standard"])
    ));
    md.push_str(&format!(
        "Sample: {} documents per source (all of a smaller source), seed {}; {}. Files: `cn_audit_sample.parquet`, `cn_audit_sample.csv` (UTF-8 with BOM). \
         Reviewers fill the `review` column with `ok`/`合格` or `illegal`/`违法` / `harmful`/`不良` (and `review_note`), then run \
         `sluice compliance RUN --reviews cn_audit_sample.csv`.\n\n",
        fmt_n(&cn["sample"]["per_source"]),
        fmt_n(&cn["sample"]["seed"]),
        fmt_n(&cn["sample"]["rule"])
    ));
    md.push_str("## Sources\n\n| source | documents | tokens | bytes | licences (tokens) | sampled | required |\n|---|---:|---:|---:|---|---:|---:|\n");
    let empty = serde_json::Map::new();
    let sources = cn["sources"].as_object().unwrap_or(&empty);
    for (src, s) in sources {
        let lic = s["licenses"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        md.push_str(&format!(
            "| {src} | {} | {} | {} | {} | {} | {} |\n",
            fmt_n(&s["documents"]),
            fmt_n(&s["tokens"]),
            fmt_n(&s["bytes"]),
            md_escape(&lic),
            fmt_n(&s["sampled"]),
            fmt_n(&s["required"])
        ));
    }
    md.push('\n');
    match cn["keyword_library"].as_object() {
        None => md.push_str(
            "## Keyword library\n\nNone given (`--keywords FILE`): no keyword hit rates.\n\n",
        ),
        Some(lib) => {
            md.push_str(&format!(
                "## Keyword library hit rates\n\nLibrary `{}`{}. A document counts once per category however many terms it holds.\n\n",
                fmt_n(&lib["path"]),
                lib["description"].as_str().map(|d| format!(": {}", md_escape(d))).unwrap_or_default()
            ));
            md.push_str("| source | category | risk | terms | documents with hits | rate | in sample | sample rate |\n|---|---|---|---:|---:|---:|---:|---:|\n");
            for (src, s) in sources {
                for (id, k) in s["keywords"].as_object().into_iter().flatten() {
                    md.push_str(&format!(
                        "| {src} | {id} {} | {} | {} | {} | {:.2}% | {} | {:.2}% |\n",
                        fmt_n(&k["name"]),
                        md_escape(&fmt_n(&k["risk"])),
                        fmt_n(&k["terms"]),
                        fmt_n(&k["documents_with_hits"]),
                        k["rate"].as_f64().unwrap_or(0.0) * 100.0,
                        fmt_n(&k["sample_documents_with_hits"]),
                        k["sample_rate"].as_f64().unwrap_or(0.0) * 100.0,
                    ));
                }
            }
            md.push('\n');
        }
    }
    md
}

fn sample_batch(sample: &[SampleRow]) -> Result<RecordBatch> {
    let cols: [(&str, Box<dyn Fn(&SampleRow) -> String>); 9] = [
        ("source", Box::new(|r| r.source.clone())),
        ("doc_id", Box::new(|r| r.doc_id.clone())),
        ("trace", Box::new(|r| r.trace.join(" "))),
        ("url", Box::new(|r| r.url.clone())),
        ("license", Box::new(|r| r.license.clone())),
        ("lang", Box::new(|r| r.lang.clone())),
        ("keyword_hits", Box::new(|r| r.hits.clone())),
        ("text", Box::new(|r| r.text.clone())),
        ("review", Box::new(|_| String::new())),
    ];
    let mut fields = vec![Field::new("sample_id", DataType::UInt64, false)];
    let mut arrays: Vec<ArrayRef> = {
        let mut b = UInt64Builder::new();
        for i in 0..sample.len() {
            b.append_value(i as u64 + 1);
        }
        vec![Arc::new(b.finish())]
    };
    for (name, get) in cols.iter() {
        fields.push(Field::new(*name, DataType::Utf8, false));
        let mut b = StringBuilder::new();
        for r in sample {
            b.append_value(get(r));
        }
        arrays.push(Arc::new(b.finish()));
    }
    fields.push(Field::new("n_chars", DataType::UInt64, false));
    let mut b = UInt64Builder::new();
    for r in sample {
        b.append_value(r.text.chars().count() as u64);
    }
    arrays.push(Arc::new(b.finish()));
    fields.push(Field::new("review_note", DataType::Utf8, false));
    arrays.push(Arc::new(StringArray::from(vec![""; sample.len()])));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(perr)
}

fn write_sample(out: &Path, sample: &[SampleRow]) -> Result<()> {
    let batch = sample_batch(sample)?;
    let p = out.join("cn_audit_sample.parquet");
    let f = File::create(&p).map_err(|e| Error::io_doing("cannot create", &p, e))?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(f, batch.schema(), Some(props)).map_err(perr)?;
    w.write(&batch).map_err(perr)?;
    w.close().map_err(perr)?;
    let p = out.join("cn_audit_sample.csv");
    let mut f = File::create(&p).map_err(|e| Error::io_doing("cannot create", &p, e))?;
    f.write_all("\u{feff}".as_bytes())
        .map_err(|e| Error::io_doing("cannot write", &p, e))?;
    let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(f);
    w.write(&batch).map_err(perr)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Reviews

/// A review cell: Some(true) bad, Some(false) fine, None not reviewed; Err unknown.
fn review_value(s: &str) -> std::result::Result<Option<bool>, ()> {
    let t = s.trim().to_lowercase();
    match t.as_str() {
        "" => Ok(None),
        "ok" | "pass" | "clean" | "fine" | "0" | "合格" | "正常" | "无问题" => {
            Ok(Some(false))
        }
        "illegal" | "harmful" | "bad" | "fail" | "1" | "违法" | "不良" | "违规" | "有害"
        | "不合格" | "违法不良" => Ok(Some(true)),
        _ => Err(()),
    }
}

/// Reads the review sheet (CSV or Parquet): (doc_id, source, review) per row.
fn read_reviews(path: &Path) -> Result<Vec<(String, String, String)>> {
    let is_parquet = path.extension().is_some_and(|e| e == "parquet");
    let mut batches = Vec::new();
    if is_parquet {
        let f = File::open(path).map_err(|e| Error::io_doing("cannot open", path, e))?;
        for b in ParquetRecordBatchReaderBuilder::try_new(f)
            .map_err(perr)?
            .build()
            .map_err(perr)?
        {
            batches.push(b.map_err(perr)?);
        }
    } else {
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| Error::io_doing("cannot read", path, e))?;
        let body = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&bytes);
        let header = body.split(|&b| b == b'\n').next().unwrap_or(&[]);
        let mut hr = arrow::csv::reader::Format::default().with_header(true);
        hr = hr.with_quote(b'"');
        let (schema, _) = hr
            .infer_schema(std::io::Cursor::new(header), Some(1))
            .map_err(perr)?;
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect();
        let reader = arrow::csv::ReaderBuilder::new(Arc::new(Schema::new(fields)))
            .with_header(true)
            .build(std::io::Cursor::new(body.to_vec()))
            .map_err(perr)?;
        for b in reader {
            batches.push(b.map_err(perr)?);
        }
    }
    let mut rows = Vec::new();
    for b in &batches {
        let get = |n: &str| -> Result<&StringArray> {
            str_col(b, n)
                .ok_or_else(|| Error::msg(format!("{}: no string column `{n}`", path.display())))
        };
        let (ids, srcs, revs) = (get("doc_id")?, get("source")?, get("review")?);
        for i in 0..b.num_rows() {
            let v = |a: &StringArray| {
                if a.is_valid(i) {
                    a.value(i).to_string()
                } else {
                    String::new()
                }
            };
            rows.push((v(ids), v(srcs), v(revs)));
        }
    }
    Ok(rows)
}

fn review_verdict(path: &Path, sample: &[SampleRow], scan: &Scan, max_bad: f64) -> Result<Value> {
    let rows = read_reviews(path)?;
    let sampled: HashMap<&str, &str> = sample
        .iter()
        .map(|r| (r.doc_id.as_str(), r.source.as_str()))
        .collect();
    let mut problems = Vec::new();
    let mut per: BTreeMap<String, (u64, u64)> = BTreeMap::new(); // reviewed, bad
    let mut seen = HashSet::new();
    for (line, (id, src, rev)) in rows.iter().enumerate() {
        match sampled.get(id.as_str()) {
            None => problems.push(format!(
                "row {}: document `{id}` is not in this run's sample (other run, seed or sample size?)",
                line + 1
            )),
            Some(s) if *s != src => problems.push(format!(
                "row {}: document `{id}` is from source `{s}`, the sheet says `{src}`",
                line + 1
            )),
            _ => {}
        }
        if !seen.insert(id.clone()) {
            problems.push(format!("row {}: document `{id}` is listed twice", line + 1));
        }
        match review_value(rev) {
            Ok(None) => {}
            Ok(Some(bad)) => {
                let e = per.entry(src.clone()).or_default();
                e.0 += 1;
                e.1 += bad as u64;
            }
            Err(()) => problems.push(format!(
                "row {}: review `{rev}` is not one of ok/合格, illegal/违法, harmful/不良 (or empty)",
                line + 1
            )),
        }
    }
    if !problems.is_empty() {
        return Err(Error::Config(
            problems
                .into_iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect(),
        ));
    }
    let mut sources = serde_json::Map::new();
    for src in scan.sources.keys() {
        let n_sampled = sample.iter().filter(|r| &r.source == src).count() as u64;
        let (reviewed, bad) = per.get(src).copied().unwrap_or((0, 0));
        let share = if reviewed > 0 {
            bad as f64 / reviewed as f64
        } else {
            0.0
        };
        let verdict = if share > max_bad {
            "FAIL"
        } else if reviewed < n_sampled {
            "INCOMPLETE"
        } else {
            "PASS"
        };
        sources.insert(
            src.clone(),
            json!({"sampled": n_sampled, "reviewed": reviewed, "bad": bad, "bad_share": share, "verdict": verdict}),
        );
    }
    Ok(json!({"reviews": path.display().to_string(), "max_bad_share": max_bad, "sources": sources}))
}

fn review_markdown(v: &Value) -> String {
    let mut md = format!(
        "## Review result\n\nSheet `{}`; threshold: at most {:.1}% illegal or harmful per source. \
         PASS needs every sampled document reviewed.\n\n| source | sampled | reviewed | bad | bad share | verdict |\n|---|---:|---:|---:|---:|---|\n",
        fmt_n(&v["reviews"]),
        v["max_bad_share"].as_f64().unwrap_or(0.0) * 100.0
    );
    for (src, s) in v["sources"].as_object().into_iter().flatten() {
        md.push_str(&format!(
            "| {src} | {} | {} | {} | {:.2}% | **{}** |\n",
            fmt_n(&s["sampled"]),
            fmt_n(&s["reviewed"]),
            fmt_n(&s["bad"]),
            s["bad_share"].as_f64().unwrap_or(0.0) * 100.0,
            fmt_n(&s["verdict"])
        ));
    }
    md.push('\n');
    md
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
