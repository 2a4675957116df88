//! `sluice compliance`: the EU training-content summary and the Chinese audit pack, written
//! from real run directories and checked against independent counts of the same shards.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::common::{bin, record_batches};

fn run_config(config: &str, out: &Path) {
    let st = bin()
        .args(["run", config, "--no-progress", "-q", "--out"])
        .arg(out)
        .status()
        .unwrap();
    assert!(st.success(), "sluice run {config} failed");
}

fn compliance(run: &Path, out: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("compliance")
        .arg(run)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "compliance failed ({:?}): {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

type Row4 = (String, String, String, String);

/// Four string columns of every row of `batches`, as tuples (nulls read as empty).
fn rows4(batches: Vec<arrow::array::RecordBatch>, cols: [&str; 4]) -> Vec<Row4> {
    let mut v = Vec::new();
    for batch in batches {
        let [a, b, c, d]: [Vec<String>; 4] = cols.map(|col| {
            sluice::arrow_io::string_column(&batch, col)
                .unwrap()
                .unwrap_or_else(|| panic!("no column {col}"))
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect()
        });
        v.extend(
            a.into_iter()
                .zip(b)
                .zip(c)
                .zip(d)
                .map(|(((a, b), c), d)| (a, b, c, d)),
        );
    }
    v
}

/// The review sample as (source, doc_id, text, review).
fn sample(dir: &Path) -> Vec<Row4> {
    let f = std::fs::File::open(dir.join("cn_audit_sample.parquet")).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    rows4(
        r.map(Result::unwrap).collect(),
        ["source", "doc_id", "text", "review"],
    )
}

/// (id, source, url, text) of every row of a document run's shards.
fn shard_docs(run: &Path) -> Vec<Row4> {
    rows4(
        record_batches(run, "shards"),
        ["id", "source", "url", "text"],
    )
}

#[test]
fn audit_sample_is_stratified_sized_and_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    run_config("configs/quickstart.yaml", &run);
    let docs = shard_docs(&run);
    let mut per_source: BTreeMap<String, usize> = BTreeMap::new();
    for (_, s, _, _) in &docs {
        *per_source.entry(s.clone()).or_default() += 1;
    }
    assert!(per_source.len() >= 2, "{per_source:?}");
    let small = *per_source.values().min().unwrap();
    let n = small + 50; // the small source is taken whole, the larger ones are sampled
    assert!(per_source.values().any(|&c| c > n), "{per_source:?}");
    let n_arg = n.to_string();
    let args = ["--sample-per-source", n_arg.as_str(), "--seed", "7"];
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    ok(&compliance(&run, &a, &args));
    ok(&compliance(&run, &b, &args));
    ok(&compliance(
        &run,
        &c,
        &["--sample-per-source", n_arg.as_str(), "--seed", "8"],
    ));

    let sa = sample(&a);
    // Size: min(n, documents) per source, no document twice.
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for (s, _, _, _) in &sa {
        *got.entry(s.clone()).or_default() += 1;
    }
    let want: BTreeMap<String, usize> = per_source
        .iter()
        .map(|(s, &c)| (s.clone(), c.min(n)))
        .collect();
    assert_eq!(got, want);
    let ids: BTreeSet<&String> = sa.iter().map(|r| &r.1).collect();
    assert_eq!(ids.len(), sa.len());
    // Every sampled row is a real document of the run, with its source and text.
    let by_id: BTreeMap<&String, (&String, &String)> =
        docs.iter().map(|(i, s, _, t)| (i, (s, t))).collect();
    for (s, id, text, review) in &sa {
        let (src, t) = by_id
            .get(id)
            .unwrap_or_else(|| panic!("{id} not in the shards"));
        assert_eq!((*src, *t), (s, text));
        assert!(review.is_empty());
    }
    // Reproducible by seed; another seed draws another sample of the sampled source.
    assert_eq!(sa, sample(&b));
    let sc = sample(&c);
    let ids_c: BTreeSet<&String> = sc.iter().map(|r| &r.1).collect();
    assert_eq!(sc.len(), sa.len());
    assert_ne!(ids, ids_c);
    // The CSV holds the same rows, with a BOM for spreadsheet tools.
    let csv = std::fs::read(a.join("cn_audit_sample.csv")).unwrap();
    assert!(csv.starts_with("\u{feff}sample_id,".as_bytes()));
    let audit = json(&a.join("cn_audit.json"));
    let text = serde_json::to_string(&audit).unwrap();
    for (s, c) in &per_source {
        assert!(text.contains(s.as_str()), "{s} missing from cn_audit.json");
        assert!(
            text.contains(&c.to_string()),
            "{s}: {c} missing from cn_audit.json"
        );
    }
    let md = std::fs::read_to_string(a.join("cn_audit.md")).unwrap();
    assert!(md.contains("4,000") || md.contains("4000"), "{md}");
}

fn write_reviews(path: &Path, rows: &[(String, String, String)]) {
    let mut s = String::from("doc_id,source,review\n");
    for (id, src, rev) in rows {
        s.push_str(&format!("\"{}\",{src},{rev}\n", id.replace('"', "\"\"")));
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn reviews_give_pass_fail_and_incomplete_per_source() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    run_config("configs/quickstart.yaml", &run);
    let rep = tmp.path().join("rep");
    ok(&compliance(&run, &rep, &["--sample-per-source", "40"]));
    let s = sample(&rep);
    let zh = s
        .iter()
        .map(|r| r.0.clone())
        .find(|src| s.iter().filter(|r| &r.0 == src).count() == 40)
        .expect("a source with 40 sampled documents");
    let sheet = |bad: usize, blank: usize, word: &str| -> Vec<(String, String, String)> {
        let mut k = 0;
        s.iter()
            .map(|(src, id, _, _)| {
                let rev = if *src == zh {
                    k += 1;
                    if k <= bad {
                        word.to_string()
                    } else if k <= bad + blank {
                        String::new()
                    } else {
                        "合格".to_string()
                    }
                } else {
                    "ok".to_string()
                };
                (id.clone(), src.clone(), rev)
            })
            .collect()
    };
    let f = tmp.path().join("reviews.csv");
    let verdict = |bad, blank, word: &str| -> (Option<i32>, Value) {
        write_reviews(&f, &sheet(bad, blank, word));
        let o = compliance(
            &run,
            &rep,
            &[
                "--sample-per-source",
                "40",
                "--reviews",
                f.to_str().unwrap(),
            ],
        );
        (o.status.code(), json(&rep.join("cn_review.json")))
    };
    // 2 of 40 bad = 5%: not above the threshold.
    let (code, v) = verdict(2, 0, "违法");
    assert_eq!(code, Some(0));
    assert_eq!(v["sources"][&zh]["verdict"], "PASS");
    assert_eq!(v["sources"][&zh]["bad"], 2);
    // 3 of 40 = 7.5%: FAIL, exit status 3.
    let (code, v) = verdict(3, 0, "harmful");
    assert_eq!(code, Some(3));
    assert_eq!(v["sources"][&zh]["verdict"], "FAIL");
    assert!(std::fs::read_to_string(rep.join("cn_audit.md"))
        .unwrap()
        .contains("FAIL"));
    // Unreviewed rows: INCOMPLETE, not PASS.
    let (code, v) = verdict(0, 5, "");
    assert_eq!(code, Some(0));
    assert_eq!(v["sources"][&zh]["verdict"], "INCOMPLETE");
    assert_eq!(v["sources"][&zh]["reviewed"], 35);
    // A value that is not a verdict, and a document not in the sample: one error, both named.
    let mut rows = sheet(0, 0, "");
    rows[0].2 = "maybe".into();
    rows.push(("no-such-doc".into(), zh.clone(), "ok".into()));
    write_reviews(&f, &rows);
    let o = compliance(
        &run,
        &rep,
        &[
            "--sample-per-source",
            "40",
            "--reviews",
            f.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("maybe") && err.contains("no-such-doc"),
        "{err}"
    );
}

fn host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let h = rest.split(['/', '?', '#']).next()?;
    let h = h.rsplit_once('@').map(|(_, h)| h).unwrap_or(h);
    let h = h.split(':').next()?.to_ascii_lowercase();
    Some(h.strip_prefix("www.").unwrap_or(&h).to_string()).filter(|h| !h.is_empty())
}

#[test]
fn eu_summary_lists_the_top_domains_and_the_collection_period() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    run_config("configs/cc_warc.yaml", &run);
    let rep = tmp.path().join("rep");
    ok(&compliance(&run, &rep, &[]));
    let eu = json(&rep.join("eu_summary.json"));
    // Independent count: content bytes per host of the kept documents.
    let mut bytes: BTreeMap<String, u64> = BTreeMap::new();
    for (_, _, url, text) in shard_docs(&run) {
        if let Some(h) = host(&url) {
            *bytes.entry(h).or_default() += text.len() as u64;
        }
    }
    let mut v: Vec<(String, u64)> = bytes.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let k = ((v.len() as f64 * 0.10).ceil() as usize).max(1);
    let crawled = &eu["2_sources"]["2_3_crawled"];
    let top = &crawled["top_domains_in_training_data"];
    assert_eq!(top["domains_total"], v.len());
    let listed: Vec<(String, u64)> = top["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["domain"].as_str().unwrap().to_string(),
                d["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, v[..k].to_vec());
    // The scraped input holds at least the domains that were kept.
    let scraped = crawled["top_domains_scraped"]["domains_total"]
        .as_u64()
        .unwrap();
    assert!(scraped >= v.len() as u64, "{scraped} < {}", v.len());
    // Collection period from the WARC dates: the inputs include CC-MAIN-2020-34 (August 2020).
    let from = crawled["collection_period"]["from"].as_str().unwrap();
    let to = crawled["collection_period"]["to"].as_str().unwrap();
    assert!(from <= "2020-08-31" && to >= "2020-08-01", "{from}..{to}");
    // Every WARC input of the config is listed with its record count.
    let inputs = crawled["crawlers"].as_array().unwrap();
    assert!(inputs.len() >= 3, "{inputs:?}");
    let records: u64 = inputs
        .iter()
        .map(|c| c["records"].as_u64().unwrap_or(0))
        .sum();
    assert!(records > 0, "{inputs:?}");
    let md = std::fs::read_to_string(rep.join("eu_summary.md")).unwrap();
    assert!(md.contains(&v[0].0), "top domain missing from the Markdown");
    assert!(md.contains("[to be completed by the provider]"));
}

#[test]
fn packed_runs_are_sampled_as_decoded_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    run_config("configs/quickstart_packed.yaml", &run);
    let rep = tmp.path().join("rep");
    ok(&compliance(&run, &rep, &["--sample-per-source", "30"]));
    let s = sample(&rep);
    assert!(!s.is_empty());
    // The original texts, by id, from the inputs the config reads.
    let mut orig: BTreeMap<String, String> = BTreeMap::new();
    for f in [
        "samples/text/cmrc2018_zh.jsonl",
        "samples/text/articles_en.jsonl",
    ] {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let id = match &v["id"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            orig.insert(id, v["text"].as_str().unwrap_or("").to_string());
        }
    }
    let mut matched = 0;
    for (_, id, text, _) in &s {
        assert!(!text.trim().is_empty(), "{id}: empty decoded text");
        let key = id.split('#').next().unwrap();
        let t = orig
            .get(key)
            .or_else(|| key.split_once(':').and_then(|(_, k)| orig.get(k)));
        if let Some(t) = t {
            assert_eq!(t, text, "{id}: decoded text differs from the input");
            matched += 1;
        }
    }
    assert!(
        matched * 2 > s.len(),
        "only {matched} of {} sampled ids found in the inputs",
        s.len()
    );
}
