//! Provenance (issue 18): every packed row of the flagship traces to verified source bytes,
//! takedowns rewrite exactly the shards that held the content, licences are enforced, and
//! text-and-data-mining opt-outs are honoured.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sha2::Digest;
use sluice::cli_trace::Tracer;
use sluice::provenance::{parse_entry, Locator};

use crate::common::{bin, files, record_batches, reject_rows, root, run_yaml};

fn json(dir: &Path, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
}

fn sha(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

fn run_flagship(out: &Path) {
    let o = bin()
        .args(["run", "configs/zh_pretrain.yaml", "--no-progress", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Compressed bytes of the lineage columns (`doc_ids`, `doc_urls`, `doc_offsets`,
/// `source_mix`) per packed row, from the shards' Parquet metadata.
fn lineage_bytes_per_row(dir: &Path) -> (f64, BTreeMap<String, u64>) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut by_col: BTreeMap<String, u64> = BTreeMap::new();
    let mut rows = 0u64;
    for (name, _) in files(dir, "shards") {
        let r =
            SerializedFileReader::new(std::fs::File::open(dir.join("shards").join(name)).unwrap())
                .unwrap();
        for rg in r.metadata().row_groups() {
            rows += rg.num_rows() as u64;
            for c in rg.columns() {
                let top = c.column_path().parts()[0].clone();
                *by_col.entry(top).or_default() += c.compressed_size() as u64;
            }
        }
    }
    let lineage: u64 = ["doc_ids", "doc_urls", "doc_offsets", "source_mix"]
        .iter()
        .map(|c| by_col.get(*c).copied().unwrap_or(0))
        .sum();
    (lineage as f64 / rows.max(1) as f64, by_col)
}

#[test]
fn every_packed_row_of_the_flagship_traces_to_verified_source_bytes() {
    let out = tempfile::tempdir().unwrap();
    run_flagship(out.path());
    let m = json(out.path(), "manifest.json");
    // Lineage in the manifest: inputs with size and sha256, WARC record counts, the config.
    let inputs = m["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 3, "{inputs:#?}");
    for i in inputs {
        let p = root().join(i["path"].as_str().unwrap());
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(i["size"], bytes.len() as u64);
        assert_eq!(i["sha256"], sha(&bytes));
    }
    let warc = inputs.iter().find(|i| i["node"] == "cc").unwrap();
    assert_eq!(warc["warc_records"], 50, "16 pages + requests + metadata");
    assert!(m["config"]["nodes"].is_array());
    // Licences: token totals per licence add up to the shards' tokens.
    let lic = m["nodes"]["shards"]["licenses"].as_object().unwrap();
    let lic_tokens: u64 = lic.values().map(|v| v["tokens"].as_u64().unwrap()).sum();
    assert_eq!(
        lic_tokens,
        m["totals"]["tokens"].as_u64().unwrap(),
        "{lic:?}"
    );
    let allowed: BTreeSet<&str> = m["config"]["run"]["allowed_licenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(lic.keys().all(|k| allowed.contains(k.as_str())), "{lic:?}");

    // Every row, every segment: parsed, traced to its input, verified.
    let mut tr = Tracer::open(out.path(), None, false).unwrap();
    let mut n_rows = 0;
    let mut n_segments = 0;
    let mut secs = Vec::new();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for (name, _) in files(out.path(), "shards") {
        let rows = shard_urls(out.path())[&name].len();
        for row in 0..rows {
            let id = format!("shards/{name}#{row}");
            let t0 = std::time::Instant::now();
            let entries = tr.expand(&id).unwrap();
            assert!(!entries.is_empty(), "{id}");
            for (e, url) in &entries {
                let p = parse_entry(e).unwrap();
                assert!(matches!(p.doc.locator, Locator::File { .. }), "{e}");
                let t = tr.trace(e, url);
                assert!(t.verified, "{id} {e}: {:?} {:?}", t.problems, t.checks);
                // The licence in the row is the source's.
                *by_kind.entry(t.kind.clone()).or_default() += 1;
                n_segments += 1;
            }
            secs.push(t0.elapsed().as_secs_f64() / entries.len() as f64);
            n_rows += 1;
        }
    }
    assert_eq!(n_rows as u64, m["totals"]["rows"].as_u64().unwrap());
    assert!(by_kind.contains_key("ingest_jsonl") && by_kind.contains_key("ingest_instructions"));
    secs.sort_by(f64::total_cmp);
    let (lineage, cols) = lineage_bytes_per_row(out.path());
    eprintln!(
        "traced {n_rows} rows, {n_segments} segments ({by_kind:?}); per segment median {:.2} ms (debug build); lineage columns {lineage:.1} bytes/row compressed of {:.0} bytes/row in all; {cols:?}",
        secs[secs.len() / 2] * 1e3,
        cols.values().sum::<u64>() as f64 / n_rows as f64
    );

    // No web page reaches the flagship's packed rows (the sample WARC is spam), so WARC
    // lineage is checked on the rejects: every WARC record the run rejected traces back
    // to a record whose block digest matches the bytes read back.
    let rejects = reject_rows(out.path());
    let warc_ids: Vec<&String> = rejects
        .iter()
        .map(|r| &r.0)
        .filter(|id| id.starts_with("web:warcfile.warc.gz:"))
        .collect();
    assert!(warc_ids.len() >= 10, "{warc_ids:?}");
    for id in &warc_ids {
        let t = tr.trace(id, "");
        assert!(t.verified, "{id}: {:?}", t.problems);
        assert!(
            t.checks.iter().any(|c| c.starts_with("block digest sha1:")),
            "{:?}",
            t.checks
        );
        assert!(t.record["warc_record_id"].starts_with("<urn:uuid:"));
    }
    // The opted-out page is among them, with its evidence.
    assert!(rejects
        .iter()
        .any(|r| r.1 == "tdm" && r.2 == "optout_domain" && r.3.contains("035.psb556.com")));

    // The CLI: text and JSON, exit code 0 when verified.
    let o = bin()
        .arg("trace")
        .arg(out.path())
        .arg("--json")
        .arg(warc_ids[0])
        .arg("shards/shards-r0000-00000.parquet#0")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["verified"] == true), "{lines:?}");
    assert_eq!(lines[0]["segments"][0]["kind"], "ingest_warc");
    assert!(lines[0]["segments"][0]["record"]["block_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha1:"));

    // Altered input bytes are caught: the same run traced against a copy of the inputs whose
    // WARC has one flipped byte in a record (same size) is not verified, exit code 1.
    let base = tempfile::tempdir().unwrap();
    for i in inputs {
        let rel = i["path"].as_str().unwrap();
        let dst = base.path().join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(root().join(rel), &dst).unwrap();
    }
    let wpath = base.path().join("samples/warc/warcfile.warc.gz");
    let off: usize = warc_ids[0].rsplit(':').next().unwrap().parse().unwrap();
    let mut w = std::fs::read(&wpath).unwrap();
    w[off + 200] ^= 0x55;
    std::fs::write(&wpath, &w).unwrap();
    let o = bin()
        .arg("trace")
        .arg(out.path())
        .arg("--base")
        .arg(base.path())
        .arg(warc_ids[0])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("NOT verified"));
}

/// A web corpus packed into many small shards, for the takedown test.
const WEB_PACKED: &str = r#"
run: {batch_size: 8}
nodes:
  cc:
    kind: ingest_warc
    license: "Common Crawl terms of use; page copyright with its owner"
    paths: [samples/warc/warcfile.warc.gz, samples/warc/whirlwind.warc.gz, samples/warc/dolma-wget-sample-0000.warc.gz]
  extract: {kind: extract_html, inputs: [cc], min_chars: 20}
  tok: {kind: tokenize, inputs: [extract], tokenizer: samples/tokenizers/qwen2/tokenizer.json}
  pack: {kind: pack, inputs: [tok], seq_len: 512, eos_id: 151643, seed: 7}
  shards: {kind: parquet_shards, inputs: [pack], shard_rows: 3}
"#;

/// The document index (`docs_index/`): (id, url, text) per row.
fn index_rows(dir: &Path) -> Vec<(String, String, String)> {
    let mut v = Vec::new();
    for b in record_batches(dir, "docs_index") {
        let col = |c: &str| sluice::arrow_io::string_column(&b, c).unwrap().unwrap();
        let (ids, urls, texts) = (col("id"), col("url"), col("text"));
        for i in 0..ids.len() {
            v.push((
                ids[i].clone().unwrap(),
                urls[i].clone().unwrap_or_default(),
                texts[i].clone().unwrap_or_default(),
            ));
        }
    }
    v.sort();
    v
}

/// The documents the packed rows hold (each `doc_ids` entry's document).
fn packed_docs(dir: &Path) -> BTreeSet<String> {
    let mut v = BTreeSet::new();
    for b in record_batches(dir, "shards") {
        for row in sluice::cli_trace::list_strings(&b, "doc_ids").unwrap() {
            v.extend(row.iter().map(|e| parse_entry(e).unwrap().doc_id));
        }
    }
    v
}

/// The index holds exactly the packed documents, once each, and the manifest's
/// `docs_index` list (path, rows, bytes, sha256) and the pack node's row count are true.
fn assert_index_true(dir: &Path) -> Vec<(String, String, String)> {
    let rows = index_rows(dir);
    let ids: BTreeSet<String> = rows.iter().map(|r| r.0.clone()).collect();
    assert_eq!(ids.len(), rows.len(), "an index row twice");
    let docs: BTreeSet<String> = ids.iter().map(|i| parse_entry(i).unwrap().doc_id).collect();
    assert_eq!(docs, packed_docs(dir), "index ≠ packed documents");
    let m = json(dir, "manifest.json");
    let list = m["docs_index"]
        .as_array()
        .expect("manifest lists docs_index");
    let mut listed = 0;
    for e in list {
        let b = std::fs::read(dir.join(e["path"].as_str().unwrap())).unwrap();
        assert_eq!(e["sha256"], sha(&b), "{e}");
        assert_eq!(e["bytes"], b.len() as u64, "{e}");
        listed += e["rows"].as_u64().unwrap();
    }
    let on_disk: Vec<String> = files(dir, "docs_index").into_iter().map(|f| f.0).collect();
    assert_eq!(on_disk.len(), list.len(), "{on_disk:?}");
    assert_eq!(listed, rows.len() as u64);
    assert_eq!(m["nodes"]["pack"]["docs_index"]["rows"], rows.len() as u64);
    rows
}

/// `sluice audit RUN --sql SQL` → the single number it prints.
fn audit_number(dir: &Path, sql: &str) -> u64 {
    let o = bin()
        .arg("audit")
        .arg(dir)
        .args(["--sql", sql, "--format", "csv"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    text.lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("audit output: {text}"))
}

fn host(u: &str) -> String {
    sluice::stages::url_filter::normalize_host(u).unwrap_or_default()
}

/// Per shard file: the rows' `doc_urls`.
fn shard_urls(dir: &Path) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut out = BTreeMap::new();
    for (name, _) in files(dir, "shards") {
        let f = std::fs::File::open(dir.join("shards").join(&name)).unwrap();
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap();
        let mut rows = Vec::new();
        for b in r {
            rows.extend(sluice::cli_trace::list_strings(&b.unwrap(), "doc_urls").unwrap());
        }
        out.insert(name, rows);
    }
    out
}

#[test]
fn a_takedown_of_one_domain_changes_only_the_shards_that_held_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    run_yaml(WEB_PACKED, &out, 2);
    let before = shard_urls(&out);
    let before_bytes: BTreeMap<String, Vec<u8>> = files(&out, "shards").into_iter().collect();
    let index_before = assert_index_true(&out);
    assert!(before.len() >= 3, "{} shards", before.len());
    // A domain held by some shards but not all.
    let mut holders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (f, rows) in &before {
        for r in rows {
            for u in r.iter().filter(|u| !u.is_empty()) {
                holders.entry(host(u)).or_default().insert(f.clone());
            }
        }
    }
    let (domain, held) = holders
        .iter()
        .filter(|(_, fs)| fs.len() < before.len())
        .max_by_key(|(d, fs)| (fs.len(), (*d).clone()))
        .map(|(d, f)| (d.clone(), f.clone()))
        .expect("a domain in some shards only");
    let rows_with = |rows: &Vec<Vec<String>>| {
        rows.iter()
            .filter(|r| r.iter().any(|u| !u.is_empty() && host(u) == domain))
            .count()
    };
    let expect_removed: usize = before.values().map(rows_with).sum();
    let rejects_before = reject_rows(&out).len();
    let rejects_with = reject_rows(&out)
        .iter()
        .filter(|r| {
            serde_json::from_str::<serde_json::Value>(&r.4).unwrap()["url"]
                .as_str()
                .is_some_and(|u| host(u) == domain)
        })
        .count();

    let req = dir.path().join("domains.txt");
    std::fs::write(&req, format!("# rightsholder request\n{domain}\n")).unwrap();
    let o = bin()
        .arg("takedown")
        .arg(&out)
        .arg("--domains")
        .arg(&req)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eprintln!("{}", String::from_utf8_lossy(&o.stdout));

    let after = shard_urls(&out);
    let after_bytes: BTreeMap<String, Vec<u8>> = files(&out, "shards").into_iter().collect();
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (f, rows) in &after {
        assert_eq!(rows_with(rows), 0, "{f} still holds {domain}");
        if held.contains(f) {
            assert_eq!(rows.len(), before[f].len() - rows_with(&before[f]), "{f}");
            // The rows kept are the rows that did not hold the domain, in order.
            let kept: Vec<&Vec<String>> = before[f]
                .iter()
                .filter(|r| !r.iter().any(|u| !u.is_empty() && host(u) == domain))
                .collect();
            assert_eq!(rows.iter().collect::<Vec<_>>(), kept, "{f}");
        } else {
            assert_eq!(
                sha(&after_bytes[f]),
                sha(&before_bytes[f]),
                "{f} held no row of {domain} but changed"
            );
        }
    }
    assert_eq!(reject_rows(&out).len(), rejects_before - rejects_with);
    // The document index lost the domain's documents (and the collateral ones no packed
    // row holds any more), and still lists exactly the packed documents.
    let index_after = assert_index_true(&out);
    assert!(index_after.iter().all(|r| host(&r.1) != domain));
    let index_with = index_before.iter().filter(|r| host(&r.1) == domain).count();
    assert!(index_with > 0);

    // The manifest records it and stays consistent with the files.
    let m = json(&out, "manifest.json");
    assert_eq!(m["version"], 2);
    let td = &m["takedowns"][0];
    assert_eq!(td["request"]["kind"], "domains");
    assert_eq!(td["removed_rows"].as_array().unwrap().len(), expect_removed);
    assert_eq!(
        td["removed_rejects"].as_array().unwrap().len(),
        rejects_with
    );
    let removed_index = td["removed_index_rows"].as_array().unwrap().len();
    assert_eq!(removed_index, index_before.len() - index_after.len());
    assert!(removed_index >= index_with);
    let index_files_changed = td["rewritten"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["file"].as_str().unwrap().starts_with("docs_index/"))
        .count();
    assert!(index_files_changed > 0);
    assert_eq!(
        td["rewritten"].as_array().unwrap().len(),
        held.len() + (rejects_with > 0) as usize + index_files_changed
    );
    let mut rows = 0;
    for s in m["shards"].as_array().unwrap() {
        let b = std::fs::read(out.join(s["path"].as_str().unwrap())).unwrap();
        assert_eq!(s["sha256"], sha(&b));
        assert_eq!(s["bytes"], b.len() as u64);
        rows += s["rows"].as_u64().unwrap();
    }
    assert_eq!(m["totals"]["rows"], rows);
    let tokens: u64 = m["nodes"]["shards"]["licenses"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v["tokens"].as_u64().unwrap())
        .sum();
    assert_eq!(m["totals"]["tokens"], tokens);
    // A rerun with --verify checks every file against the (rank) manifest: nothing to redo.
    let yaml = dir.path().join("web.yaml");
    std::fs::write(&yaml, WEB_PACKED).unwrap();
    let o = bin()
        .args(["run", "--no-progress", "--verify", "--out"])
        .arg(&out)
        .arg(&yaml)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("already done"), "{err}");
    assert!(
        !err.contains("mismatch") && !err.contains("redone"),
        "{err}"
    );

    // A second takedown, by id, bumps the version again and removes exactly that document.
    let id = {
        let t = Tracer::open(&out, None, false).unwrap();
        t.expand("shards/shards-r0000-00000.parquet#0").unwrap()[0]
            .0
            .clone()
    };
    let doc = parse_entry(&id).unwrap().doc_id;
    let sql = format!(
        "SELECT count(*) FROM docs_index WHERE id = '{}'",
        doc.replace('\'', "''")
    );
    assert_eq!(audit_number(&out, &sql), 1, "{sql}");
    std::fs::write(dir.path().join("ids.txt"), format!("{id}\n")).unwrap();
    let o = bin()
        .arg("takedown")
        .arg(&out)
        .arg("--ids")
        .arg(dir.path().join("ids.txt"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = json(&out, "manifest.json");
    assert_eq!(m["version"], 3);
    assert!(assert_index_true(&out).iter().all(|r| r.0 != doc));
    assert_eq!(audit_number(&out, &sql), 0, "{sql}");
    let t = Tracer::open(&out, None, false).unwrap();
    for (f, _) in files(&out, "shards") {
        let n = shard_urls(&out)[&f].len();
        for r in 0..n {
            let e = t.expand(&format!("shards/{f}#{r}")).unwrap();
            assert!(e.iter().all(|(x, _)| parse_entry(x).unwrap().doc_id != doc));
        }
    }
}

#[test]
fn a_disallowed_licence_fails_the_run_naming_every_offending_source() {
    let yaml = r#"
run:
  allowed_licenses: [CC-BY-SA-4.0, MIT]
nodes:
  wiki: {kind: ingest_jsonl, paths: [samples/text/cmrc2018_zh.jsonl], license: CC-BY-SA-4.0}
  news: {kind: ingest_jsonl, paths: [samples/text/articles_en.jsonl], license: "All rights reserved"}
  synth: {kind: ingest_instructions, paths: [samples/synthetic/alpaca_cot_zh.jsonl]}
  shards: {kind: parquet_shards, inputs: [wiki, news, synth]}
"#;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("lic.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    let out = dir.path().join("out");
    let o = bin()
        .args(["run", "--no-progress", "--out"])
        .arg(&out)
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("news")
            && err.contains("\"All rights reserved\" is not in run.allowed_licenses"),
        "{err}"
    );
    assert!(
        err.contains("synth")
            && err.contains("\"unknown\"")
            && err.contains("declares no `license:`"),
        "{err}"
    );
    assert!(!err.contains("node `wiki`"), "{err}");
    assert!(!out.join("manifest.json").exists());
    let v = bin().arg("validate").arg(&cfg).output().unwrap();
    assert_eq!(v.status.code(), Some(2));

    // Allowed: every document carries its licence, terms and input in meta.
    let ok = yaml.replace("\"All rights reserved\"", "MIT").replace(
        "alpaca_cot_zh.jsonl]}",
        "alpaca_cot_zh.jsonl], license: MIT, terms_url: https://opensource.org/license/mit}",
    );
    let s = run_yaml(&ok, &out, 1);
    assert!(!s.skipped);
    let mut seen = BTreeSet::new();
    for b in record_batches(&out, "shards") {
        let meta = sluice::arrow_io::string_column(&b, "meta")
            .unwrap()
            .unwrap();
        for m in meta {
            let m: serde_json::Value = serde_json::from_str(&m.unwrap()).unwrap();
            let lic = m["license"].as_str().unwrap().to_string();
            assert!(m["input"].as_str().unwrap().starts_with("samples/"));
            assert!(m["line"].as_str().unwrap().parse::<u64>().unwrap() >= 1);
            if m["input"].as_str().unwrap().contains("alpaca") {
                assert_eq!(m["terms_url"], "https://opensource.org/license/mit");
            }
            seen.insert(lic);
        }
    }
    assert_eq!(seen, ["CC-BY-SA-4.0", "MIT"].map(String::from).into());
    let m = json(&out, "manifest.json");
    let lic = &m["nodes"]["shards"]["licenses"];
    assert_eq!(
        lic["CC-BY-SA-4.0"]["documents"].as_u64().unwrap()
            + lic["MIT"]["documents"].as_u64().unwrap(),
        m["totals"]["rows"].as_u64().unwrap()
    );
    assert!(lic["MIT"]["bytes"].as_u64().unwrap() > 0);
}

/// One WARC response record.
fn response(uri: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut http =
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n{headers}\r\n")
            .into_bytes();
    http.extend_from_slice(body);
    let mut v = format!(
        "WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: {uri}\r\nWARC-Record-ID: <urn:uuid:{:08x}>\r\nContent-Type: application/http; msgtype=response\r\nContent-Length: {}\r\n\r\n",
        xxhash_rust::xxh3::xxh3_64(uri.as_bytes()) as u32,
        http.len()
    )
    .into_bytes();
    v.extend_from_slice(&http);
    v.extend_from_slice(b"\r\n\r\n");
    v
}

/// (url, extra HTTP headers, page, expected (reason, evidence) or kept).
type Case<'a> = (&'a str, String, String, Option<(&'a str, &'a str)>);

#[test]
fn tdm_opt_outs_are_honoured_with_their_evidence() {
    let dir = tempfile::tempdir().unwrap();
    // A real page (people.com.cn article, samples/html) as published, and the same page
    // with a robots noai tag added to its head; plus one crafted page per mechanism.
    let real =
        std::fs::read_to_string(root().join("samples/html/people-health-20240517.html")).unwrap();
    let head_at = real.to_ascii_lowercase().find("<head>").unwrap() + "<head>".len();
    let real_noai = format!(
        "{}<meta name=\"robots\" content=\"noindex, noai\">{}",
        &real[..head_at],
        &real[head_at..]
    );
    let page = |head: &str| {
        format!(
            "<html><head><title>t</title>{head}</head><body><p>{}</p></body></html>",
            "正文内容。".repeat(20)
        )
    };
    let mut w = Vec::new();
    let cases: Vec<Case> = vec![
        (
            "http://health.people.com.cn/n1/2024/0517/a.html",
            String::new(),
            real.clone(),
            None,
        ),
        (
            "http://health.people.com.cn/n1/2024/0517/b.html",
            String::new(),
            real_noai,
            Some((
                "robots_noai",
                "<meta name=\"robots\" content=\"noindex, noai\">",
            )),
        ),
        (
            "https://a.example.org/x",
            "X-Robots-Tag: noindex\r\nX-Robots-Tag: noai\r\n".into(),
            page(""),
            Some(("x_robots_tag_noai", "X-Robots-Tag: noindex, noai")),
        ),
        (
            "https://b.example.org/x",
            "TDM-Reservation: 1\r\nTDM-Policy: https://b.example.org/tdm.json\r\n".into(),
            page(""),
            Some((
                "tdm_reservation_header",
                "tdm-reservation: 1; tdm-policy: https://b.example.org/tdm.json",
            )),
        ),
        (
            "https://c.example.org/x",
            "TDM-Reservation: 0\r\n".into(),
            page(""),
            None,
        ),
        (
            "https://d.example.org/x",
            String::new(),
            page("<meta name=\"tdm-reservation\" content=\"1\">"),
            Some((
                "tdm_reservation_meta",
                "<meta name=\"tdm-reservation\" content=\"1\">",
            )),
        ),
        (
            "https://e.example.org/x",
            String::new(),
            page("<META NAME=robots CONTENT=noimageai>"),
            Some(("robots_noai", "<META NAME=robots CONTENT=noimageai>")),
        ),
        (
            "https://f.example.org/x",
            String::new(),
            page("<meta name=\"robots\" content=\"noarchive\">"),
            None,
        ),
        (
            "https://news.optout.example/x",
            String::new(),
            page(""),
            Some(("optout_domain", "domain=optout.example")),
        ),
    ];
    for (uri, headers, body, _) in &cases {
        w.extend(response(uri, headers, body.as_bytes()));
    }
    let warc = dir.path().join("optout.warc");
    std::fs::write(&warc, &w).unwrap();
    let list = dir.path().join("optout.txt");
    std::fs::write(&list, "# opt-outs\n\noptout.example\n").unwrap();
    let yaml = format!(
        r#"
nodes:
  cc: {{kind: ingest_warc, paths: ["{}"]}}
  tdm: {{kind: tdm_optout, inputs: [cc], optout_domain_files: ["{}"]}}
  shards: {{kind: parquet_shards, inputs: [tdm]}}
"#,
        warc.display(),
        list.display()
    );
    let out = dir.path().join("out");
    run_yaml(&yaml, &out, 2);
    let rejects = reject_rows(&out);
    let kept: BTreeSet<String> = crate::common::read_doc_rows(&out)
        .into_iter()
        .map(|r| r.0)
        .collect();
    for (uri, _, _, want) in &cases {
        let rej = rejects
            .iter()
            .find(|r| r.4.contains(&format!("\"url\":\"{uri}\"")));
        match want {
            None => {
                assert!(rej.is_none(), "{uri} rejected: {rej:?}");
            }
            Some((reason, evidence)) => {
                let r = rej.unwrap_or_else(|| panic!("{uri} not rejected"));
                assert_eq!((r.1.as_str(), r.2.as_str()), ("tdm", *reason), "{uri}");
                assert!(r.3.contains(evidence), "{uri}: detail {:?}", r.3);
            }
        }
    }
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_eq!(rejects.len(), cases.len() - 3);

    // The shipped sample crawl: no page carries a reservation, so only the listed domain is
    // rejected (no false positives on 16 real pages).
    let out2 = dir.path().join("sample");
    let y = std::fs::read_to_string(root().join("configs/tdm_optout.yaml")).unwrap();
    run_yaml(&y, &out2, 1);
    let r2: Vec<_> = reject_rows(&out2)
        .into_iter()
        .filter(|r| r.1 == "tdm")
        .collect();
    assert!(!r2.is_empty());
    assert!(r2.iter().all(|r| r.2 == "optout_domain"), "{r2:?}");
}
