//! `sluice trace RUN ID…`: follow a packed row, a document id or a segment id down to the
//! bytes it was read from, and check them.
//!
//! An id is taken apart by [`crate::provenance`]; the run's `manifest.json` says which
//! source node reads that source (its embedded config) and which input file has that name
//! (its `inputs`, with size and sha256). Then the record is read back from the input:
//!
//! * **WARC**: the record at the id's offset (plain offset, gzip member, or member plus
//!   offset inside it); its `WARC-Block-Digest` (sha1 or sha256, base32 or hex) is
//!   recomputed from the block read back, and its target URI is compared with the packed
//!   row's `doc_urls` entry when there is one;
//! * **JSONL** (`ingest_jsonl`, `ingest_instructions`): the line is read back and parsed;
//!   **Parquet**: the row is read back. Neither format carries a per-record digest, so the
//!   input file's sha256 is recomputed and compared with the manifest's (once per file per
//!   invocation): the line or row is then the one the run read. A document id from
//!   `id_field` is found by scanning the source's files for that value.
//!
//! With `--verify`, WARC inputs are hashed whole too. An input whose size or sha256 differs
//! from the manifest, a digest that does not match, a record that is not where the id says
//! or a url that differs makes the id *unverified* (exit code 1).
//!
//! Input ids: `shards/<file>.parquet#<row>` (a row of a packed or document shard), a pack
//! sequence id (`pack-r0000-0000000012`, looked up in the shards), a document id
//! (`web:warcfile.warc.gz:940`), or a `doc_ids` entry (`…#1@4096`).

use std::collections::BTreeMap;
use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Value};
use sha2::Digest;

use crate::error::{Error, Result};
use crate::provenance::{parse_entry, parse_row_ref, Entry, Locator};

/// `sluice trace` arguments.
#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// Run directory (holds manifest.json).
    pub run: PathBuf,
    /// Ids to trace: `shards/<file>.parquet#<row>`, a pack sequence id, a document id or a
    /// segment id (`<doc id>[#epoch][@start]`).
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// One JSON object per id on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also hash WARC inputs whole and compare with the manifest's sha256.
    #[arg(long)]
    pub verify: bool,
    /// Directory the run's relative input paths are resolved from. Default: the current
    /// directory, then the config's directory's parent chain.
    #[arg(long)]
    pub base: Option<PathBuf>,
}

/// One source node of the run, as its manifest records it.
#[derive(Debug, Clone)]
struct SourceNode {
    name: String,
    kind: String,
    source: String,
    params: Value,
}

/// What a run directory says about its sources and inputs; caches input hashes.
pub struct Tracer {
    run: PathBuf,
    base: Option<PathBuf>,
    sources: Vec<SourceNode>,
    /// (node, path, size, sha256) of every input
    inputs: Vec<(String, String, u64, Option<String>)>,
    hashed: BTreeMap<String, String>,
    verify: bool,
}

/// The result of tracing one `doc_ids` entry (or document id).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SegmentTrace {
    /// The entry as given.
    pub entry: String,
    /// The document id (without epoch and start).
    pub doc_id: String,
    /// Source name.
    pub source: String,
    /// `mix` copy number, if any.
    pub epoch: Option<u32>,
    /// Token offset of the segment inside the document, if any.
    pub start: Option<u64>,
    /// Source node and kind.
    pub node: String,
    /// Kind of the source node.
    pub kind: String,
    /// Licence the source declared (or `unknown`).
    pub license: String,
    /// Input file as the run listed it.
    pub input: String,
    /// Line (JSONL), row (Parquet) or record offset (WARC) as in the id.
    pub position: String,
    /// WARC: record id, type, date, target URI; JSONL/Parquet: the url field if any.
    pub record: BTreeMap<String, String>,
    /// What was checked and how it came out, e.g. `block digest sha1:… recomputed`.
    pub checks: Vec<String>,
    /// Every check passed.
    pub verified: bool,
    /// Why not, when not.
    pub problems: Vec<String>,
    /// Seconds spent on this entry.
    pub secs: f64,
}

impl Tracer {
    /// Read a run directory's manifest.
    pub fn open(run: &Path, base: Option<PathBuf>, verify: bool) -> Result<Tracer> {
        let mpath = run.join("manifest.json");
        let m: Value =
            serde_json::from_slice(&std::fs::read(&mpath).map_err(|e| Error::io(&mpath, e))?)
                .map_err(|e| Error::msg(format!("{}: {e}", mpath.display())))?;
        let mut sources = Vec::new();
        for n in m["config"]["nodes"].as_array().into_iter().flatten() {
            let kind = n["kind"].as_str().unwrap_or("").to_string();
            if crate::registry::get(&kind).map(|k| k.role) != Some(crate::stage::Role::Source) {
                continue;
            }
            let name = n["name"].as_str().unwrap_or("").to_string();
            let source = n["params"]["source"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or(&name)
                .to_string();
            sources.push(SourceNode {
                name,
                kind,
                source,
                params: n["params"].clone(),
            });
        }
        if sources.is_empty() {
            return Err(Error::msg(format!(
                "{}: no embedded config with source nodes (written by an older sluice?)",
                mpath.display()
            )));
        }
        let inputs = m["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                (
                    i["node"].as_str().unwrap_or("").to_string(),
                    i["path"].as_str().unwrap_or("").to_string(),
                    i["size"].as_u64().unwrap_or(0),
                    i["sha256"].as_str().map(str::to_string),
                )
            })
            .collect();
        Ok(Tracer {
            run: run.to_path_buf(),
            base,
            sources,
            inputs,
            hashed: BTreeMap::new(),
            verify,
        })
    }

    /// The entries (`doc_ids` items) an input id stands for, with the row's urls.
    pub fn expand(&self, id: &str) -> Result<Vec<(String, String)>> {
        if let Some((file, row)) = parse_row_ref(id) {
            return self.row_entries(&file, Some(row), None);
        }
        if !id.contains(':') && id.contains("-r") {
            // A pack sequence id: look it up in the shards.
            return self.row_entries("", None, Some(id));
        }
        Ok(vec![(id.to_string(), String::new())])
    }

    fn shard_files(&self) -> Result<Vec<PathBuf>> {
        let dir = self.run.join("shards");
        let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect();
        v.sort();
        Ok(v)
    }

    /// `(entry, url)` of a packed row (by file and row, or by sequence id), or of a
    /// document-shard row (its `id` and `url`).
    fn row_entries(
        &self,
        file: &str,
        row: Option<usize>,
        seq_id: Option<&str>,
    ) -> Result<Vec<(String, String)>> {
        let files = if seq_id.is_some() {
            self.shard_files()?
        } else {
            let p = self.run.join(file);
            let p = if p.is_file() {
                p
            } else {
                self.run.join("shards").join(file)
            };
            vec![p]
        };
        for f in files {
            let rows = read_rows(&f)?;
            let hit = match (row, seq_id) {
                (Some(r), _) => Some(rows.get(r).cloned().ok_or_else(|| {
                    Error::msg(format!("{}: no row {r} ({} rows)", f.display(), rows.len()))
                })?),
                (None, Some(s)) => rows.into_iter().find(|r| r.id == s),
                _ => None,
            };
            if let Some(r) = hit {
                return Ok(r.entries);
            }
        }
        Err(Error::msg(format!(
            "{}: no shard row with id {:?}",
            self.run.display(),
            seq_id.unwrap_or("")
        )))
    }

    /// Resolve a path as the run saw it.
    fn local(&self, path: &str) -> PathBuf {
        let p = PathBuf::from(path);
        if p.is_absolute() {
            return p;
        }
        if let Some(b) = &self.base {
            return b.join(p);
        }
        if p.exists() {
            return p;
        }
        // The run directory's ancestors (a run under the repository, traced from elsewhere).
        let mut dir = std::path::absolute(&self.run).ok();
        while let Some(d) = dir {
            if d.join(&p).exists() {
                return d.join(&p);
            }
            dir = d.parent().map(Path::to_path_buf);
        }
        p
    }

    fn sha256_of(&mut self, path: &str) -> Result<String> {
        if let Some(h) = self.hashed.get(path) {
            return Ok(h.clone());
        }
        let h = crate::io::sha256_file(self.local(path))?;
        self.hashed.insert(path.to_string(), h.clone());
        Ok(h)
    }

    /// Trace one entry.
    pub fn trace(&mut self, entry: &str, url: &str) -> SegmentTrace {
        let t0 = Instant::now();
        let mut t = SegmentTrace {
            entry: entry.to_string(),
            doc_id: String::new(),
            source: String::new(),
            epoch: None,
            start: None,
            node: String::new(),
            kind: String::new(),
            license: crate::stage::UNKNOWN_LICENSE.to_string(),
            input: String::new(),
            position: String::new(),
            record: BTreeMap::new(),
            checks: Vec::new(),
            verified: false,
            problems: Vec::new(),
            secs: 0.0,
        };
        if let Err(e) = self.trace_into(entry, url, &mut t) {
            t.problems.push(e.to_string());
        }
        t.verified = t.problems.is_empty() && !t.checks.is_empty();
        t.secs = t0.elapsed().as_secs_f64();
        t
    }

    fn trace_into(&mut self, entry: &str, url: &str, t: &mut SegmentTrace) -> Result<()> {
        let e: Entry = parse_entry(entry).map_err(Error::msg)?;
        t.doc_id = e.doc_id.clone();
        t.source = e.doc.source.clone();
        t.epoch = e.epoch;
        t.start = e.start;
        let nodes: Vec<SourceNode> = self
            .sources
            .iter()
            .filter(|s| s.source == e.doc.source)
            .cloned()
            .collect();
        if nodes.is_empty() {
            return Err(Error::msg(format!(
                "no source node of this run writes source {:?}",
                e.doc.source
            )));
        }
        let (node, input, position) = match &e.doc.locator {
            Locator::File { file, position } => {
                let hit = self.inputs.iter().find(|(n, p, _, _)| {
                    nodes.iter().any(|s| &s.name == n) && crate::io::file_name(p) == file
                });
                let Some((n, p, _, _)) = hit else {
                    return Err(Error::msg(format!(
                        "no input named {file:?} among the inputs of source {:?} in the manifest",
                        e.doc.source
                    )));
                };
                let node = nodes.iter().find(|s| &s.name == n).cloned().expect("found");
                (node, p.clone(), position.clone())
            }
            Locator::Key(key) => self.find_key(&nodes, key)?,
        };
        t.node = node.name.clone();
        t.kind = node.kind.clone();
        t.license = crate::stage::source_license(&node.params)
            .0
            .unwrap_or_else(|| crate::stage::UNKNOWN_LICENSE.to_string());
        t.input = input.clone();
        t.position = position.clone();
        let (size, sha) = self
            .inputs
            .iter()
            .find(|(n, p, _, _)| *n == node.name && *p == input)
            .map(|(_, _, s, h)| (*s, h.clone()))
            .unwrap_or((0, None));
        let local = self.local(&input);
        let got = std::fs::metadata(&local)
            .map_err(|e| Error::io(&local, e))?
            .len();
        if got != size {
            t.problems
                .push(format!("input is {got} bytes, the manifest lists {size}"));
        } else {
            t.checks
                .push(format!("input size {size} bytes as in the manifest"));
        }
        let whole = node.kind != "ingest_warc" || self.verify;
        if whole {
            match sha {
                Some(want) => {
                    let h = self.sha256_of(&input)?;
                    if h == want {
                        t.checks
                            .push(format!("input sha256 {want} as in the manifest"));
                    } else {
                        t.problems.push(format!(
                            "input sha256 {h} differs from the manifest's {want}"
                        ));
                    }
                }
                None => t
                    .problems
                    .push("the manifest records no sha256 for this input".into()),
            }
        }
        match node.kind.as_str() {
            "ingest_warc" => trace_warc(&local, &position, url, t),
            "ingest_jsonl" | "ingest_instructions" => {
                let line: u64 = position
                    .parse()
                    .map_err(|_| Error::msg(format!("line {position:?} is not a number")))?;
                trace_jsonl(&local, &node, line, url, t)
            }
            "ingest_parquet" => {
                let row: usize = position
                    .parse()
                    .map_err(|_| Error::msg(format!("row {position:?} is not a number")))?;
                trace_parquet(&local, &node, row, url, t)
            }
            k => Err(Error::msg(format!(
                "tracing a `{k}` source is not supported"
            ))),
        }
    }

    /// Find a document by its id-field value: `(node, input, line)`.
    fn find_key(&self, nodes: &[SourceNode], key: &str) -> Result<(SourceNode, String, String)> {
        for node in nodes {
            let Some(field) = node.params["id_field"].as_str() else {
                continue;
            };
            for (n, p, _, _) in &self.inputs {
                if *n != node.name {
                    continue;
                }
                let r = crate::io::open_input(&self.local(p).to_string_lossy())?;
                for (i, line) in r.split(b'\n').enumerate() {
                    let line = line.map_err(|e| Error::io(p, e))?;
                    let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                        continue;
                    };
                    let hit = crate::stages::ingest_jsonl::get_path(&v, field)
                        .map(crate::stages::ingest_jsonl::value_to_string);
                    if hit.as_deref() == Some(key) {
                        return Ok((node.clone(), p.clone(), (i + 1).to_string()));
                    }
                }
            }
        }
        Err(Error::msg(format!(
            "no input line has id {key:?} (sources searched: {})",
            nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// A shard row's id and `(entry, url)` pairs.
#[derive(Debug, Clone)]
struct ShardRow {
    id: String,
    entries: Vec<(String, String)>,
}

fn read_rows(path: &Path) -> Result<Vec<ShardRow>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)?.build()?;
    let mut out = Vec::new();
    for b in reader {
        let b = b?;
        let ids = crate::arrow_io::string_column(&b, "id")?.unwrap_or_default();
        if b.column_by_name("doc_ids").is_some() {
            let dids = list_strings(&b, "doc_ids")?;
            let urls = list_strings(&b, "doc_urls").unwrap_or_default();
            for (i, d) in dids.into_iter().enumerate() {
                let u = urls.get(i).cloned().unwrap_or_default();
                out.push(ShardRow {
                    id: ids.get(i).cloned().flatten().unwrap_or_default(),
                    entries: d
                        .into_iter()
                        .enumerate()
                        .map(|(k, e)| (e, u.get(k).cloned().unwrap_or_default()))
                        .collect(),
                });
            }
        } else {
            let urls = crate::arrow_io::string_column(&b, "url")?.unwrap_or_default();
            for (i, id) in ids.into_iter().enumerate() {
                let id = id.unwrap_or_default();
                out.push(ShardRow {
                    id: id.clone(),
                    entries: vec![(id, urls.get(i).cloned().flatten().unwrap_or_default())],
                });
            }
        }
    }
    Ok(out)
}

/// A `list<utf8>` column as nested vectors (nulls as empty strings); missing is an error.
pub fn list_strings(b: &arrow::array::RecordBatch, name: &str) -> Result<Vec<Vec<String>>> {
    crate::arrow_io::string_list_column(b, name)?
        .ok_or_else(|| Error::msg(format!("no column {name}")))
}

fn check_url(url: &str, found: Option<&str>, t: &mut SegmentTrace) {
    if url.is_empty() {
        return;
    }
    match found {
        Some(f) if f == url => t.checks.push(format!("url {url} as in the packed row")),
        Some(f) => t.problems.push(format!(
            "the record's url is {f}, the packed row says {url}"
        )),
        None => t
            .problems
            .push(format!("the record has no url, the packed row says {url}")),
    }
}

/// Read the WARC record at `position` back and verify its block digest.
fn trace_warc(path: &Path, position: &str, url: &str, t: &mut SegmentTrace) -> Result<()> {
    use crate::stages::ingest_warc::reader::{Item, Pos, RecordReader};
    let (start, inner) = match position.split_once('+') {
        Some((a, b)) => (a.parse::<u64>(), b.parse::<u64>().ok()),
        None => (position.parse::<u64>(), Some(0)),
    };
    let start = start.map_err(|_| Error::msg(format!("bad WARC offset {position:?}")))?;
    let inner = inner.ok_or_else(|| Error::msg(format!("bad WARC offset {position:?}")))?;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    f.seek(SeekFrom::Start(start))
        .map_err(|e| Error::io(path, e))?;
    let all = [
        "response",
        "resource",
        "conversion",
        "request",
        "metadata",
        "revisit",
        "warcinfo",
    ];
    let reader = RecordReader::new(f, usize::MAX, &all).map_err(|e| Error::io(path, e))?;
    let want = |p: Pos| match p {
        Pos::Plain(n) => inner == 0 && n == 0,
        Pos::Gz { member, inner: i } => member == 0 && i == inner,
    };
    let mut found = None;
    for item in reader {
        match item {
            Item::Record(r) if want(r.pos) => {
                found = Some(r);
                break;
            }
            Item::Record(r) => {
                let past = match r.pos {
                    Pos::Plain(n) => n > 0,
                    Pos::Gz { member, inner: i } => member > 0 || i > inner,
                };
                if past {
                    break;
                }
            }
            Item::Bad { pos, reason, .. } if want(pos) => {
                return Err(Error::msg(format!(
                    "no readable record at {position}: {reason}"
                )));
            }
            Item::Bad { .. } => {}
        }
    }
    let rec = found.ok_or_else(|| Error::msg(format!("no WARC record starts at {position}")))?;
    for (h, k) in [
        ("WARC-Record-ID", "warc_record_id"),
        ("WARC-Type", "warc_type"),
        ("WARC-Date", "warc_date"),
        ("WARC-Target-URI", "url"),
        ("WARC-Block-Digest", "block_digest"),
        ("WARC-Payload-Digest", "payload_digest"),
    ] {
        if let Some(v) = rec.header(h) {
            let v = v.trim();
            let v = if k == "url" {
                v.trim_start_matches('<').trim_end_matches('>')
            } else {
                v
            };
            t.record.insert(k.into(), v.to_string());
        }
    }
    t.record
        .insert("block_bytes".into(), rec.block.len().to_string());
    if rec.block.len() as u64 != rec.declared_len {
        t.problems.push(format!(
            "record block is {} bytes, Content-Length says {}",
            rec.block.len(),
            rec.declared_len
        ));
    }
    match rec.header("WARC-Block-Digest").map(str::trim) {
        Some(d) => match verify_digest(d, &rec.block) {
            Ok(true) => t.checks.push(format!(
                "block digest {d} recomputed from the {} bytes read back",
                rec.block.len()
            )),
            Ok(false) => t.problems.push(format!(
                "block digest {d} does not match the {} bytes read back",
                rec.block.len()
            )),
            Err(e) => t.problems.push(e),
        },
        None => t
            .problems
            .push("the record has no WARC-Block-Digest to verify".into()),
    }
    let u = t.record.get("url").cloned();
    check_url(url, u.as_deref(), t);
    Ok(())
}

/// Read line `line` (1-based) of a JSONL input back.
fn trace_jsonl(
    path: &Path,
    node: &SourceNode,
    line: u64,
    url: &str,
    t: &mut SegmentTrace,
) -> Result<()> {
    let p = path.to_string_lossy();
    let r = crate::io::open_input(&p)?;
    let mut got = None;
    for (i, l) in r.split(b'\n').enumerate() {
        if i as u64 + 1 == line {
            got = Some(l.map_err(|e| Error::io(path, e))?);
            break;
        }
    }
    let l = got.ok_or_else(|| Error::msg(format!("{p} has fewer than {line} lines")))?;
    let v: Value = serde_json::from_slice(&l)
        .map_err(|e| Error::msg(format!("line {line} is not JSON: {e}")))?;
    t.record.insert("line_bytes".into(), l.len().to_string());
    t.record
        .insert("line_sha256".into(), hex::encode(sha2::Sha256::digest(&l)));
    if node.kind == "ingest_jsonl" {
        let field = node.params["text_field"].as_str().unwrap_or("text");
        match crate::stages::ingest_jsonl::get_path(&v, field) {
            Some(Value::String(s)) => {
                t.record
                    .insert("text_chars".into(), s.chars().count().to_string());
            }
            _ => t
                .problems
                .push(format!("line {line} has no string field {field:?}")),
        }
    }
    let found = v.get("url").and_then(|u| u.as_str()).map(str::to_string);
    if let Some(u) = &found {
        t.record.insert("url".into(), u.clone());
    }
    t.checks.push(format!("line {line} read back and parsed"));
    check_url(url, found.as_deref(), t);
    Ok(())
}

/// Read row `row` (0-based) of a Parquet input back.
fn trace_parquet(
    path: &Path,
    node: &SourceNode,
    row: usize,
    url: &str,
    t: &mut SegmentTrace,
) -> Result<()> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)?.build()?;
    let field = node.params["text_column"].as_str().unwrap_or("text");
    let mut seen = 0usize;
    for b in reader {
        let b = b?;
        if row < seen + b.num_rows() {
            let k = row - seen;
            let texts = crate::arrow_io::string_column(&b, field)?.unwrap_or_default();
            match texts.get(k).cloned().flatten() {
                Some(s) => {
                    t.record
                        .insert("text_chars".into(), s.chars().count().to_string());
                    t.record.insert(
                        "text_sha256".into(),
                        hex::encode(sha2::Sha256::digest(s.as_bytes())),
                    );
                }
                None => t.problems.push(format!("row {row} has no text")),
            }
            let found = crate::arrow_io::string_column(&b, "url")
                .ok()
                .flatten()
                .and_then(|u| u.get(k).cloned().flatten());
            if let Some(u) = &found {
                t.record.insert("url".into(), u.clone());
            }
            t.checks.push(format!("row {row} read back"));
            check_url(url, found.as_deref(), t);
            return Ok(());
        }
        seen += b.num_rows();
    }
    Err(Error::msg(format!(
        "{} has {seen} rows, no row {row}",
        path.display()
    )))
}

/// Check a WARC digest (`sha1:` or `sha256:`, base32 or hex) against bytes.
pub fn verify_digest(digest: &str, bytes: &[u8]) -> std::result::Result<bool, String> {
    let (alg, val) = digest
        .split_once(':')
        .ok_or_else(|| format!("digest {digest:?} has no algorithm label"))?;
    let raw: Vec<u8> = match alg.to_ascii_lowercase().as_str() {
        "sha1" => sha1::Sha1::digest(bytes).to_vec(),
        "sha256" => sha2::Sha256::digest(bytes).to_vec(),
        a => return Err(format!("digest algorithm {a:?} is not supported")),
    };
    let v = val.trim();
    // WARC writes base32 without padding (RFC 4648), some tools hex.
    let b32 = data_encoding::BASE32_NOPAD.encode(&raw);
    Ok(v.eq_ignore_ascii_case(&b32) || v.eq_ignore_ascii_case(&hex::encode(&raw)))
}

/// Trace every id; print text or JSON lines. Returns whether every entry was verified.
pub fn run(a: TraceArgs) -> Result<bool> {
    let mut tr = Tracer::open(&a.run, a.base.clone(), a.verify)?;
    let mut all_ok = true;
    for id in &a.ids {
        let t0 = Instant::now();
        let entries = tr.expand(id)?;
        let traces: Vec<SegmentTrace> = entries.iter().map(|(e, u)| tr.trace(e, u)).collect();
        let ok = traces.iter().all(|t| t.verified);
        all_ok &= ok;
        let secs = t0.elapsed().as_secs_f64();
        if a.json {
            println!(
                "{}",
                json!({"id": id, "verified": ok, "secs": secs, "segments": traces})
            );
            continue;
        }
        println!(
            "{id}: {} segment{}, {} ({:.1} ms)",
            traces.len(),
            if traces.len() == 1 { "" } else { "s" },
            if ok { "verified" } else { "NOT verified" },
            secs * 1e3
        );
        for t in &traces {
            println!("  {}", t.entry);
            if !t.node.is_empty() {
                println!(
                    "    source {} (node {}, {}), licence {}",
                    t.source, t.node, t.kind, t.license
                );
                println!("    input {} at {}", t.input, t.position);
            }
            for (k, v) in &t.record {
                println!("    {k}: {v}");
            }
            for c in &t.checks {
                println!("    ok: {c}");
            }
            for p in &t.problems {
                println!("    PROBLEM: {p}");
            }
        }
    }
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_in_base32_and_hex_verify() {
        assert!(verify_digest("sha1:VGMT4NSHA2AWVOR6EVYXQUGCNSONBWE5", b"abc").unwrap());
        assert!(!verify_digest("sha1:VGMT4NSHA2AWVOR6EVYXQUGCNSONBWE4", b"abc").unwrap());
        assert!(verify_digest("SHA1:a9993e364706816aba3e25717850c26c9cd0d89d", b"abc").unwrap());
        assert!(verify_digest(
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            b"abc"
        )
        .unwrap());
        assert!(verify_digest("md5:x", b"abc").is_err());
    }
}
