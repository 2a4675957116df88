//! `decontaminate` on real data (issue 16): the committed dev sample
//! (`samples/benchmarks/decont_dev_zh.jsonl`, made by `benches/zh_decont_gen.py`) through
//! the default config meets precision and recall ≥ 0.99; GAOKAO items pasted in every
//! layout are caught, mixed-script items included; half-question near-misses are kept;
//! the reject names the item and its coverage.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use sluice::stage::{parse_config, BuildCtx};
use sluice::stages::decontaminate::{Config, Decontaminate};
use sluice::testing::{docs, run_transform_docs};

use crate::common::*;

const GAOKAO: &str = "samples/benchmarks/gaokao_mcq_zh.jsonl";
const GSM8K: &str = "samples/benchmarks/gsm8k_test.jsonl";

fn read_jsonl(path: &str) -> Vec<Value> {
    std::fs::read_to_string(root().join(path))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn gaokao() -> Vec<(String, String, String)> {
    read_jsonl(GAOKAO)
        .into_iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["question"].as_str().unwrap().to_string(),
                r["answer"][0].as_str().unwrap_or("A").to_string(),
            )
        })
        .collect()
}

/// The stage with its defaults over GAOKAO and GSM8K.
fn stage() -> Decontaminate {
    let p = serde_json::json!({"benchmarks": [
        {"name": "gaokao_zh", "paths": [GAOKAO], "fields": ["question"]},
        {"name": "gsm8k", "paths": [GSM8K], "fields": ["question"]},
    ]});
    let cfg: Config = parse_config(&p, &BuildCtx::for_tests("decont", "/tmp")).unwrap();
    Decontaminate::new(cfg).unwrap()
}

/// Wikipedia host paragraphs (CMRC 2018).
fn hosts() -> Vec<String> {
    read_jsonl("samples/text/cmrc2018_zh.jsonl")
        .into_iter()
        .map(|r| r["text"].as_str().unwrap().chars().take(150).collect())
        .collect()
}

fn fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ' ' => '\u{3000}',
            '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap(),
            _ => c,
        })
        .collect()
}

fn halfwidth(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap(),
            '。' => '.',
            _ => c,
        })
        .collect()
}

/// The item without its leading number and score marker (`3．（4分）`).
fn body(q: &str) -> &str {
    let s = q
        .trim_start()
        .trim_start_matches(|c: char| c.is_ascii_digit());
    let s = s.trim_start_matches(['.', '．', '、']).trim_start();
    if s.starts_with(['（', '(']) {
        if let Some(i) = s.find(['）', ')']) {
            if s[..i].contains('分') {
                let close = s[i..].chars().next().map_or(1, char::len_utf8);
                return &s[i + close..];
            }
        }
    }
    s
}

/// A pasted item in each layout of the dev set (see `benches/zh_decont_gen.py`).
fn layouts(q: &str, ans: &str, host: &str) -> Vec<(&'static str, String)> {
    let (a, b) = host.split_at(host.char_indices().nth(60).map_or(host.len(), |x| x.0));
    let spaced: String = q
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let sep = if i % 3 == 0 && sluice::stages::decontaminate::is_cjk(c) {
                " "
            } else {
                ""
            };
            std::iter::once(c.to_string()).chain(std::iter::once(sep.to_string()))
        })
        .collect::<String>()
        .replace('\n', "\n\n  ");
    vec![
        ("published", format!("{a}\n{q}\n{b}")),
        (
            "inline",
            format!(
                "{a}{}{b}",
                q.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
        ),
        (
            "exam",
            format!(
                "{a}\n7．{}\n【答案】{ans}\n【解析】略。\n{b}",
                body(q).replace("（ 　　）", "（　　）")
            ),
        ),
        ("qa", format!("{a}\n问：{}\n答：{ans}。\n{b}", body(q))),
        ("fullwidth", format!("{a}\n{}\n{b}", fullwidth(q))),
        ("halfwidth", format!("{a}\n{}\n{b}", halfwidth(q))),
        ("spaces", format!("{a}\n\n   {spaced}   \n\n{b}")),
    ]
}

#[test]
fn pasted_items_are_caught_in_every_layout() {
    let d = stage();
    let items = gaokao();
    let hosts = hosts();
    // One item per subject, every layout.
    let mut by_subject: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (id, _, _)) in items.iter().enumerate() {
        let subject = id.rsplit_once('-').unwrap().0.to_string();
        by_subject.entry(subject).or_insert(i + 3);
    }
    assert_eq!(by_subject.len(), 8);
    let mut texts = Vec::new();
    for (k, &i) in by_subject.values().enumerate() {
        let (_, q, ans) = &items[i];
        for (layout, t) in layouts(q, ans, &hosts[k]) {
            texts.push((i, layout, t));
        }
    }
    let refs: Vec<&str> = texts.iter().map(|t| t.2.as_str()).collect();
    let (out, rej) = run_transform_docs(&d, docs(&refs), 7);
    let missed: Vec<_> = out.iter().map(|d| &d.id).collect();
    assert!(out.is_empty(), "missed {missed:?}");
    for (r, (i, layout, _)) in rej.iter().zip(&texts) {
        let ri = r.reject.as_ref().unwrap();
        assert!(
            ri.detail.starts_with(&format!(
                "benchmark=gaokao_zh item={} index={i} coverage=1.000",
                items[*i].0
            )),
            "{layout}: {}",
            ri.detail
        );
    }
}

#[test]
fn mixed_script_items_are_caught() {
    let d = stage();
    let items = gaokao();
    let find = |id: &str| items.iter().position(|it| it.0 == id).unwrap();
    // "四联苯 A. 3 种 B. 4 种 C. 5 种 D. 6 种": 7 CJK characters and 8 Latin tokens, too
    // short for 13-grams of either script alone (main's rule never matched it).
    let chem = find("gaokao-Chemistry_MCQs-33");
    let q = &items[chem].1;
    assert!(q.contains("四联苯"));
    // A formula item (3 CJK characters) published in LaTeX, here also typed as rendered
    // text: `\tan \theta` = `tanθ`, `\frac{\pi}{4}` = `π/4`.
    let math = find("gaokao-Math_I_MCQs-161");
    assert!(items[math].1.contains(r"\tan \theta"));
    let host = &hosts()[5];
    let cases = [
        (chem, format!("{host}\n{q}")),
        (chem, format!("{host}\n{}", fullwidth(q))),
        (
            chem,
            format!("{host} 四联苯 A．3种 B．4种 C．5种 D．6种 {host}"),
        ),
        (math, format!("{host}\n{}", items[math].1)),
        (
            math,
            format!("{host}\n已知 2tanθ−tan(θ+π/4)=7，则 tanθ=（　　）\nA. -2\nB. -1\nC. 1\nD. 2"),
        ),
    ];
    let refs: Vec<&str> = cases.iter().map(|c| c.1.as_str()).collect();
    let (out, rej) = run_transform_docs(&d, docs(&refs), 1);
    assert!(
        out.is_empty(),
        "{:?}",
        out.iter().map(|d| &d.attrs).collect::<Vec<_>>()
    );
    for (r, (i, _)) in rej.iter().zip(&cases) {
        let detail = &r.reject.as_ref().unwrap().detail;
        let prefix = format!(
            "benchmark=gaokao_zh item={} index={i} coverage=1.000",
            items[*i].0
        );
        assert!(detail.starts_with(&prefix), "{detail}");
    }
    // Half of the chemistry item is kept.
    let half = format!("{host} 四联苯 A．3种 B．4种……");
    let (out, _) = run_transform_docs(&d, docs(&[&half]), 1);
    assert_eq!(out.len(), 1);
}

#[test]
fn half_question_near_misses_are_kept() {
    let d = stage();
    let items = gaokao();
    let hosts = hosts();
    let texts: Vec<String> = items
        .iter()
        .enumerate()
        .map(|(k, (_, q, _))| {
            let q = q.trim();
            let half: String = q.chars().take(q.chars().count() / 2).collect();
            format!(
                "{}\n{half}……\n{}",
                hosts[k % hosts.len()],
                hosts[(k + 1) % hosts.len()]
            )
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let (out, rej) = run_transform_docs(&d, docs(&refs), 1000);
    let flagged: Vec<&str> = rej
        .iter()
        .map(|r| r.reject.as_ref().unwrap().detail.as_str())
        .collect();
    assert!(
        flagged.is_empty(),
        "{} flagged: {:?}",
        flagged.len(),
        &flagged[..flagged.len().min(3)]
    );
    assert_eq!(out.len(), items.len());
    // Nearly all overlap their item (coverage > 0), all stay well below min_coverage 0.8.
    let covs: Vec<f64> = out
        .iter()
        .map(|d| {
            d.attrs
                .get("decontaminate.coverage")
                .copied()
                .unwrap_or(0.0)
        })
        .collect();
    let max = covs.iter().cloned().fold(0.0, f64::max);
    let overlapping = covs.iter().filter(|c| **c > 0.0).count();
    assert!(
        overlapping > items.len() * 9 / 10 && max < 0.7,
        "{overlapping} overlap, max coverage {max}"
    );
}

#[test]
fn reject_detail_names_item_and_coverage() {
    let d = stage();
    let items = gaokao();
    let (id, q, _) = &items[0];
    let (_, rej) = run_transform_docs(&d, docs(&[&format!("历史练习。\n{q}\n答案：C")]), 1);
    let ri = rej[0].reject.as_ref().unwrap();
    assert_eq!(ri.reason, "contaminated");
    assert_eq!(ri.score, Some(1.0));
    assert!(
        ri.detail.starts_with(&format!(
            "benchmark=gaokao_zh item={id} index=0 coverage=1.000 items=1 ngram=\""
        )),
        "{}",
        ri.detail
    );
    // Three quarters of the item: kept, coverage in attrs.
    let t: String = q.chars().take(q.chars().count() * 3 / 4).collect();
    let (out, rej) = run_transform_docs(&d, docs(&[&t]), 1);
    assert!(rej.is_empty());
    let c = out[0].attrs["decontaminate.coverage"];
    assert!(c > 0.5 && c < 0.8, "{c}");
}

/// The committed dev sample through the default config: strict precision (near-misses
/// count as false positives) and recall both ≥ 0.99, and every layout caught.
#[test]
fn default_config_meets_precision_and_recall_on_the_dev_sample() {
    let dev = read_jsonl("samples/benchmarks/decont_dev_zh.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
nodes:
  dev:
    kind: ingest_jsonl
    paths: [samples/benchmarks/decont_dev_zh.jsonl]
    id_field: id
  decont:
    kind: decontaminate
    inputs: [dev]
    benchmarks:
      - name: gaokao_zh
        paths: [{GAOKAO}]
        fields: [question]
      - name: gsm8k
        paths: [{GSM8K}]
        fields: [question]
  shards:
    kind: parquet_shards
    inputs: [decont]
"#
    );
    let out = dir.path().join("out");
    run_yaml(&yaml, &out, 2);
    let flagged: BTreeMap<String, String> = reject_rows(&out)
        .into_iter()
        .filter(|r| r.2 == "contaminated")
        .map(|r| (r.0.trim_start_matches("dev:").to_string(), r.3))
        .collect();
    let (mut tp, mut fp, mut pos) = (0usize, 0usize, 0usize);
    let mut layouts_caught: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in &dev {
        let id = r["id"].as_str().unwrap();
        let kind = r["kind"].as_str().unwrap().to_string();
        let hit = flagged.contains_key(id);
        if r["label"] == 1 {
            pos += 1;
            tp += usize::from(hit);
            let e = layouts_caught.entry(kind).or_default();
            e.0 += usize::from(hit);
            e.1 += 1;
            let detail = flagged.get(id).map_or("", |s| s.as_str());
            assert!(detail.contains(" coverage="), "{detail}");
        } else {
            fp += usize::from(hit);
        }
    }
    let precision = tp as f64 / (tp + fp).max(1) as f64;
    let recall = tp as f64 / pos as f64;
    assert!(pos >= 100, "{pos} positives");
    assert!(
        precision >= 0.99 && recall >= 0.99,
        "precision {precision:.4} recall {recall:.4} (tp {tp}, fp {fp}, positives {pos})"
    );
    let want: BTreeSet<&str> = [
        "published",
        "inline",
        "exam",
        "qa",
        "fullwidth",
        "halfwidth",
        "spaces",
        "gsm8k",
    ]
    .into();
    assert_eq!(
        layouts_caught
            .keys()
            .map(|k| k.as_str())
            .collect::<BTreeSet<_>>(),
        want
    );
    for (k, (a, b)) in &layouts_caught {
        assert_eq!(a, b, "layout {k}: {a}/{b} caught");
    }
    let st: Value =
        serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap();
    let ex = &st["nodes"]["decont"]["extra"];
    assert_eq!(ex["benchmarks"]["gaokao_zh"]["entries"], 1249);
    assert_eq!(ex["ngram"], 10);
    assert_eq!(ex["min_coverage"], 0.8);
}
