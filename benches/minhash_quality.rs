//! Duplicate-detection quality of `minhash_dedup`: precision, recall and F1.
//!
//! Run: `cargo bench --bench minhash_quality` (add `CARGO_TARGET_DIR=target-rel` to reuse
//! prebuilt release dependencies). Data:
//! * English: `dedup-minhash-articles-groundtruth` (labelled near-duplicate pairs), read
//!   from `$SLUICE_SHARED_DATA` (default `shared/data` beside the repository).
//! * Chinese: a planted near-duplicate set built by the seeded generator in
//!   `benches/planted.rs` from CMRC 2018 Wikipedia paragraphs
//!   (`samples/text/cmrc2018_zh.jsonl` if present, else the shared data folder).
//!
//! Scoring is pairwise over clusters: the stage's clusters are kept documents plus the
//! duplicates charged to them (`duplicate_of`); a true positive is a pair of documents in
//! the same predicted and the same true cluster. Prints a Markdown table per threshold
//! (the default threshold is marked) and, for the planted set, recall per transform and
//! the exact Jaccard distribution of planted pairs.

mod planted;

mod shared_data;
use shared_data::shared_data;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use sluice::stage::{BuildCtx, Stage};
use sluice::stages::minhash_dedup::signature::{exact_jaccard, text_shingles, ShingleMode};
use sluice::stages::minhash_dedup::{Config, MinhashDedup};
use sluice::testing::run_stage_docs;
use sluice::Document;

struct Labelled {
    docs: Vec<Document>,
    truth: HashMap<String, usize>,
}

fn load_articles(n: usize) -> Labelled {
    let dir = shared_data().join("dedup-minhash-articles-groundtruth");
    let train = std::fs::read_to_string(dir.join(format!("articles_{n}.train")))
        .expect("articles train file");
    let truth_txt = std::fs::read_to_string(dir.join(format!("articles_{n}.truth")))
        .expect("articles truth file");
    let mut docs = Vec::new();
    let mut truth = HashMap::new();
    for (i, line) in train.lines().enumerate() {
        let Some((id, text)) = line.split_once(' ') else {
            continue;
        };
        docs.push(Document::new(id, "articles", text));
        truth.insert(id.to_string(), 1_000_000 + i);
    }
    for line in truth_txt.lines() {
        let mut it = line.split_whitespace();
        if let (Some(a), Some(b)) = (it.next(), it.next()) {
            let ca = truth[a];
            truth.insert(b.to_string(), ca);
        }
    }
    Labelled { docs, truth }
}

fn load_zh_paragraphs() -> Vec<String> {
    let sample = PathBuf::from("samples/text/cmrc2018_zh.jsonl");
    let path = if sample.is_file() {
        sample
    } else {
        shared_data().join("text-zh-wikipedia-cmrc2018/cmrc2018_dev.contexts.jsonl")
    };
    let txt = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    txt.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("text").and_then(|t| t.as_str()).map(str::to_string))
        .collect()
}

#[derive(Debug, Default, Clone, Copy)]
struct Prf {
    p: f64,
    r: f64,
    f1: f64,
    tp: u64,
    pred: u64,
    truth: u64,
}

fn pairs(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

fn score(
    docs: &[Document],
    truth: &HashMap<String, usize>,
    cfg: Config,
) -> (Prf, HashMap<String, String>, serde_json::Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stage = MinhashDedup::new(cfg, &BuildCtx::for_tests("mh", dir.path()));
    let (out, rej) = run_stage_docs(&mut stage, docs.to_vec(), 256);
    let mut pred: HashMap<String, String> = HashMap::new();
    for d in &out {
        pred.insert(d.id.clone(), d.id.clone());
    }
    for d in &rej {
        let root = d
            .meta
            .get("duplicate_of")
            .cloned()
            .unwrap_or_else(|| d.id.clone());
        pred.insert(d.id.clone(), root);
    }
    let mut joint: HashMap<(&str, usize), u64> = HashMap::new();
    let mut pc: HashMap<&str, u64> = HashMap::new();
    let mut tc: HashMap<usize, u64> = HashMap::new();
    for (id, root) in &pred {
        let t = truth[id];
        *joint.entry((root.as_str(), t)).or_default() += 1;
        *pc.entry(root.as_str()).or_default() += 1;
        *tc.entry(t).or_default() += 1;
    }
    let tp: u64 = joint.values().map(|&n| pairs(n)).sum();
    let pp: u64 = pc.values().map(|&n| pairs(n)).sum();
    let tt: u64 = tc.values().map(|&n| pairs(n)).sum();
    let p = if pp == 0 { 1.0 } else { tp as f64 / pp as f64 };
    let r = if tt == 0 { 1.0 } else { tp as f64 / tt as f64 };
    let f1 = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    let stats = stage.stats().unwrap_or_default();
    (
        Prf {
            p,
            r,
            f1,
            tp,
            pred: pp,
            truth: tt,
        },
        pred,
        stats,
    )
}

/// The configurations compared: the defaults before issue 16 (threshold 0.7, bands × rows
/// derived with equal weights → 14 × 9, no containment test), today's defaults, and a
/// threshold sweep with today's other defaults.
fn configs() -> Vec<(String, Config)> {
    let mut v = vec![
        (
            "old defaults (0.7, no containment)".to_string(),
            Config {
                threshold: 0.7,
                fp_weight: 0.5,
                fn_weight: 0.5,
                containment_threshold: 0.0,
                ..Config::default()
            },
        ),
        ("**defaults**".to_string(), Config::default()),
    ];
    for t in [0.5, 0.6, 0.7, 0.8, 0.9] {
        v.push((
            format!("threshold {t}"),
            Config {
                threshold: t,
                ..Config::default()
            },
        ));
    }
    v
}

fn main() {
    let default = Config::default();
    println!(
        "# minhash_dedup quality (num_perm {}, verify {:?}, default threshold {}, containment {})\n",
        default.num_perm, default.verify, default.threshold, default.containment_threshold
    );

    for n in [100, 1000, 2500] {
        let set = load_articles(n);
        println!(
            "## English: articles_{n} ({} docs, whitespace-word {}-grams)\n",
            set.docs.len(),
            default.ngram_whitespace
        );
        println!("| config | bands×rows | precision | recall | F1 | TP pairs / predicted / true |");
        println!("|---|---|---|---|---|---|");
        for (name, cfg) in configs() {
            let lsh = cfg.lsh_params();
            let (s, _, _) = score(&set.docs, &set.truth, cfg);
            println!(
                "| {name} | {}×{} | {:.3} | {:.3} | {:.3} | {} / {} / {} |",
                lsh.bands, lsh.rows, s.p, s.r, s.f1, s.tp, s.pred, s.truth
            );
        }
        println!();
    }

    let paras = load_zh_paragraphs();
    let planted = planted::generate(&paras, 280, 20240601);
    let docs: Vec<Document> = planted
        .iter()
        .map(|p| {
            let mut d = Document::new(p.id.clone(), "planted", p.text.clone());
            d.lang = Some("zh".into());
            d
        })
        .collect();
    let truth: HashMap<String, usize> = planted.iter().map(|p| (p.id.clone(), p.cluster)).collect();
    let n_copies = planted.iter().filter(|p| p.transform != "base").count();
    println!(
        "## Chinese planted set ({} docs: {} bases, {} planted copies; seed 20240601; char {}-grams)\n",
        docs.len(),
        docs.len() - n_copies,
        n_copies,
        default.ngram_chars
    );
    // Exact Jaccard of every planted copy against its base, per transform.
    let base_text: HashMap<usize, &str> = planted
        .iter()
        .filter(|p| p.transform == "base")
        .map(|p| (p.cluster, p.text.as_str()))
        .collect();
    let mut by_t: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for p in planted.iter().filter(|p| p.transform != "base") {
        let a = text_shingles(
            base_text[&p.cluster],
            None,
            ShingleMode::Chars,
            default.ngram_chars,
            default.seed,
        );
        let b = text_shingles(
            &p.text,
            None,
            ShingleMode::Chars,
            default.ngram_chars,
            default.seed,
        );
        by_t.entry(p.transform)
            .or_default()
            .push(exact_jaccard(&a, &b));
    }
    println!(
        "Exact Jaccard (char {}-gram sets) of planted copies vs their base:\n",
        default.ngram_chars
    );
    println!("| transform | copies | min | median | max |");
    println!("|---|---|---|---|---|");
    for (t, v) in by_t.iter_mut() {
        v.sort_by(|a, b| a.total_cmp(b));
        println!(
            "| {t} | {} | {:.3} | {:.3} | {:.3} |",
            v.len(),
            v[0],
            v[v.len() / 2],
            v[v.len() - 1]
        );
    }
    println!();
    println!("| config | bands×rows | precision | recall | F1 | TP pairs / predicted / true | copies found per transform |");
    println!("|---|---|---|---|---|---|---|");
    for (name, cfg) in configs() {
        let lsh = cfg.lsh_params();
        let (s, pred, _) = score(&docs, &truth, cfg);
        // A copy is "found" when it shares a predicted cluster with its base.
        let base_id: HashMap<usize, &str> = planted
            .iter()
            .filter(|p| p.transform == "base")
            .map(|p| (p.cluster, p.id.as_str()))
            .collect();
        let mut found: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
        for p in planted.iter().filter(|p| p.transform != "base") {
            let e = found.entry(p.transform).or_default();
            e.1 += 1;
            if pred[&p.id] == pred[base_id[&p.cluster]] {
                e.0 += 1;
            }
        }
        let per: Vec<String> = found
            .iter()
            .map(|(t, (f, n))| format!("{t} {f}/{n}"))
            .collect();
        println!(
            "| {name} | {}×{} | {:.3} | {:.3} | {:.3} | {} / {} / {} | {} |",
            lsh.bands,
            lsh.rows,
            s.p,
            s.r,
            s.f1,
            s.tp,
            s.pred,
            s.truth,
            per.join(", ")
        );
    }
}
