//! The run directory as the reports see it: config nodes, shards, and the units (documents
//! or packed segments) they hold.

use super::*;

/// An ingest node of the run's config: where a source's documents came from.
#[derive(Debug, Clone)]
pub(super) struct SourceNode {
    pub(super) node: String,
    pub(super) kind: String,
    pub(super) source: String,
    pub(super) license: Option<String>,
    pub(super) terms_url: Option<String>,
    pub(super) paths: Vec<String>,
}

pub(super) struct RunView {
    pub(super) dir: PathBuf,
    pub(super) manifest: Value,
    pub(super) stats: Value,
    /// (name, kind, params) of every node, in config order.
    pub(super) nodes: Vec<(String, String, Value)>,
    pub(super) sources: Vec<SourceNode>,
    pub(super) shards: Vec<PathBuf>,
}

impl RunView {
    pub(super) fn open(dir: &Path) -> Result<RunView> {
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

    pub(super) fn has_packed(&self) -> Result<bool> {
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
    pub(super) fn tokenizer(
        &self,
        explicit: Option<&Path>,
    ) -> Result<Option<tokenizers::Tokenizer>> {
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
    pub(super) fn for_each_unit(
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
    pub(super) fn collect_sample(
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
    pub(super) fn scan_crawl_inputs(&self) -> Result<Vec<CrawlInput>> {
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

pub(super) fn perr(e: impl Into<crate::error::ColumnarError>) -> Error {
    Error::Parquet {
        path: None,
        err: e.into(),
    }
}

/// A document id without the `#<epoch>` suffix `mix` adds to upsampled copies.
pub(super) fn base_id(id: &str) -> &str {
    match id.rsplit_once('#') {
        Some((b, e)) if !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit()) => b,
        _ => id,
    }
}

/// The host of a URL, lower-case, without `www.` and port.
pub(super) fn host_of(url: &str) -> Option<String> {
    let url = url.trim().trim_start_matches('<').trim_end_matches('>');
    let rest = url.split_once("://")?.1;
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map(|(_, h)| h).unwrap_or(host);
    let host = host.split(':').next()?.to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host).to_string();
    (!host.is_empty()).then_some(host)
}

/// One document, or one segment of a packed document.
pub(super) struct Unit {
    pub(super) id: String,
    pub(super) source: String,
    pub(super) url: Option<String>,
    pub(super) license: Option<String>,
    pub(super) lang: Option<String>,
    pub(super) tokens: u64,
    pub(super) text: Option<String>,
    /// Token start of this segment within its document (0 for whole documents).
    pub(super) start: u64,
    pub(super) location: String,
}

pub(super) fn str_col<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
}

pub(super) fn opt_str(a: Option<&StringArray>, i: usize) -> Option<String> {
    a.and_then(|a| a.is_valid(i).then(|| a.value(i).to_string()))
        .filter(|s| !s.is_empty())
}

pub(super) fn doc_units(
    batch: &RecordBatch,
    shard: &str,
    row0: usize,
    f: &mut dyn FnMut(Unit),
) -> Result<()> {
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

/// The row's `source_mix` entries: (source, license).
pub(super) fn source_mix(batch: &RecordBatch, i: usize) -> Vec<(String, Option<String>)> {
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

pub(super) fn packed_units(
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
    let offsets_col = crate::arrow_io::u32_list_column(batch, "doc_offsets")?;
    let doc_ids_col = crate::arrow_io::string_list_column(batch, "doc_ids")?;
    let urls_col = crate::arrow_io::string_list_column(batch, "doc_urls")?;
    let starts_col = crate::arrow_io::u64_list_column(batch, "doc_starts")?;
    for i in 0..batch.num_rows() {
        let offsets: &[u32] = offsets_col
            .as_ref()
            .and_then(|c| c[i].as_deref())
            .unwrap_or_default();
        let doc_ids: &[String] = doc_ids_col.as_ref().map_or(&[], |c| &c[i]);
        let urls = urls_col.as_ref().map(|c| &c[i]);
        let starts = starts_col.as_ref().and_then(|c| c[i].as_ref());
        let mix = source_mix(batch, i);
        let ids_arr = ids_col.value(i);
        let ids = ids_arr
            .as_any()
            .downcast_ref::<UInt32Array>()
            .ok_or_else(|| Error::msg(format!("{shard}: `input_ids` is not list<uint32>")))?;
        let end_all = n_tokens.value(i) as u64;
        for (k, id) in doc_ids.iter().enumerate() {
            let a = offsets.get(k).map_or(0, |&o| o as u64);
            let b = offsets
                .get(k + 1)
                .map_or(end_all, |&o| o as u64)
                .min(end_all);
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
                    .and_then(|u| u.get(k).cloned())
                    .filter(|u| !u.is_empty()),
                license,
                lang: None,
                tokens: b.saturating_sub(a),
                text,
                start: starts.and_then(|s| s.get(k).copied()).unwrap_or(0),
                location: format!("{shard}#{}@{a}", row0 + i),
            });
        }
    }
    Ok(())
}
