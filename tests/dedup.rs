//! End-to-end dedup: `configs/dedup.yaml` (exact → line → MinHash) on the samples.

use std::collections::BTreeMap;
use std::path::Path;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::{files, root, run_yaml};

/// Labelled near-duplicate pairs of `samples/text/articles_en.jsonl`
/// (`articles_100.truth` of the MinHash tutorial data, see samples/README.md).
const TRUTH: &[(&str, &str)] = &[
    ("t1088", "t5015"),
    ("t1297", "t4638"),
    ("t1768", "t5248"),
    ("t1952", "t3495"),
    ("t980", "t2023"),
];

/// (id → (stage, reason, detail, meta)) of every reject row.
fn rejects(dir: &Path) -> BTreeMap<String, (String, String, String, String)> {
    crate::common::reject_rows(dir)
        .into_iter()
        .map(|(id, st, re, de, me)| (id, (st, re, de, me)))
        .collect()
}

#[test]
fn dedup_config_finds_labelled_pairs_identically_at_1_and_2_threads() {
    let yaml = std::fs::read_to_string(root().join("configs/dedup.yaml")).unwrap();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let sa = run_yaml(&yaml, a.path(), 1);
    run_yaml(&yaml, b.path(), 2);
    assert!(
        files(a.path(), "shards") == files(b.path(), "shards"),
        "shards differ between 1 and 2 threads"
    );
    assert!(
        files(a.path(), "rejects") == files(b.path(), "rejects"),
        "rejects differ between 1 and 2 threads"
    );

    let rej = rejects(a.path());
    // Ids from ingest_jsonl are `<source>:<id field>`.
    let truth: Vec<(String, String)> = TRUTH
        .iter()
        .map(|(a, b)| (format!("en_news:{a}"), format!("en_news:{b}")))
        .collect();
    for (first, dup) in &truth {
        let (stage, reason, detail, meta) = rej
            .get(dup)
            .unwrap_or_else(|| panic!("{dup} (duplicate of {first}) was kept"));
        assert!(
            (stage == "near_dups" && reason == "near_duplicate")
                || (stage == "exact" && reason == "duplicate_text"),
            "{dup}: {stage}/{reason}"
        );
        assert!(
            detail.starts_with(&format!("duplicate_of={first}")),
            "{dup}: {detail}"
        );
        assert!(
            meta.contains(&format!("\"duplicate_of\":\"{first}\"")),
            "{dup}: {meta}"
        );
        assert!(!rej.contains_key(first), "{first} must be kept");
    }
    // Precision on this labelled set: nothing else is called a near-duplicate.
    let near: Vec<&String> = rej
        .iter()
        .filter(|(_, v)| v.1 == "near_duplicate" || v.1 == "duplicate_text")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(near.len(), TRUTH.len(), "{near:?}");

    // Kept documents carry their cluster attributes: a kept article whose pair was dropped
    // by near_dups has cluster size 2, every kept doc has a cluster id.
    let attrs = shard_attrs(a.path());
    for (first, dup) in &truth {
        let a = attrs[first].clone();
        assert!(a["dedup.cluster_id"].as_f64().is_some(), "{first}: {a}");
        if rej[dup].0 == "near_dups" {
            assert_eq!(a["dedup.cluster_size"].as_f64(), Some(2.0), "{first}: {a}");
        }
    }
    assert!(attrs
        .values()
        .all(|a| a["dedup.cluster_size"].as_f64().is_some()));
    let stats = &sa.stats["nodes"]["near_dups"];
    let extra = &stats["extra"];
    assert_eq!(extra["counters"]["docs"], stats["docs_in"], "{stats}");
    assert!(extra["state_bytes_per_doc"].as_f64().unwrap() > 0.0);
    assert!(extra["bands"].as_u64().unwrap() * extra["rows"].as_u64().unwrap() <= 128);
}

/// id → attrs JSON of every document row in the shards.
fn shard_attrs(dir: &Path) -> BTreeMap<String, serde_json::Value> {
    let mut m = BTreeMap::new();
    for (name, _) in files(dir, "shards") {
        let f = std::fs::File::open(dir.join("shards").join(&name)).unwrap();
        for b in ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap()
        {
            let b = b.unwrap();
            let ids = sluice::arrow_io::string_column(&b, "id").unwrap().unwrap();
            let attrs = sluice::arrow_io::string_column(&b, "attrs")
                .unwrap()
                .unwrap();
            for (id, a) in ids.into_iter().zip(attrs) {
                let v =
                    serde_json::from_str(&a.unwrap_or_default()).unwrap_or(serde_json::Value::Null);
                m.insert(id.unwrap(), v);
            }
        }
    }
    m
}
