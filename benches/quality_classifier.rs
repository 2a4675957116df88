//! Benchmark: the `quality_classifier` stage vs bare fastText prediction on the same
//! preprocessed lines, one thread each. Run side by side with the official fastText through
//! `benches/quality_classifier.sh` (which also runs `quality_classifier_fasttext.py`).
//!
//! The stage gets documents as they arrive after `segment_zh` (text + `words` spans, lang zh),
//! so its time includes building the fastText line from the words (join, lowercase) plus the
//! prediction and routing. Also timed on the already-built lines: sluice's model alone
//! (`Model::prob`) and the `fasttext` crate's `predict` (which differs from C++ fastText, see
//! `model.rs`); the official C++ side is `quality_classifier_fasttext.py`.
//!
//! ```text
//! cargo bench --bench quality_classifier -- [MODEL] [N_DOCS]
//! ```
//! MODEL defaults to `samples/models/zh_quality.ftz`, N_DOCS to 20,000. The built lines are
//! written to `$BENCH_LINES` (default `sluice_qc_bench_lines.txt` in the system temp
//! directory) for the official side.

use std::time::Instant;

use sluice::stage::{Emitter, Transform, OUT_REJECTED};
use sluice::stages::quality_classifier::{preprocess, Config, QualityClassifier};
use sluice::{DocBatch, Document};

fn read_texts(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let model = args
        .first()
        .cloned()
        .unwrap_or_else(|| "samples/models/zh_quality.ftz".into());
    let n_docs: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let mut texts = read_texts("samples/text/cmrc2018_zh.jsonl");
    texts.extend(read_texts("samples/classifier/zh_negatives.jsonl"));
    assert!(
        !texts.is_empty(),
        "no sample texts (run from the repo root)"
    );
    let jieba = sluice::stages::segment_zh::default_jieba();
    let base: Vec<Document> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut d = Document::new(format!("d{i}"), "bench", t.clone());
            d.lang = Some("zh".into());
            d.words = Some(sluice::stages::segment_zh::segment(jieba, t, true));
            d
        })
        .collect();
    let docs: Vec<Document> = (0..n_docs).map(|i| base[i % base.len()].clone()).collect();
    let bytes: usize = docs.iter().map(|d| d.text.len()).sum();
    let lines: Vec<String> = docs
        .iter()
        .map(|d| preprocess::line(&d.text, d.words.as_deref(), Some("zh"), true))
        .collect();
    let lines_path = std::env::var_os("BENCH_LINES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("sluice_qc_bench_lines.txt"));
    let _ = std::fs::write(&lines_path, lines.join("\n") + "\n");

    let stage = QualityClassifier::new(
        Config {
            model: model.clone().into(),
            label: "hq".into(),
            attr: String::new(),
            threshold: 0.5,
            reason: "low_quality".into(),
            langs: vec![],
            hmm: true,
        },
        "quality_zh",
    )
    .expect("load model");
    let ft = fasttext::FastText::load_model(&model).expect("crate load");
    let sluice_model = stage.model();
    let hq = sluice_model.label_index("hq").expect("label hq");

    let mut best_stage = f64::MAX;
    let mut best_bare = f64::MAX;
    let mut best_model = f64::MAX;
    let mut kept = 0usize;
    let mut sink = 0f32;
    for _round in 0..5 {
        let batches: Vec<DocBatch> = docs
            .chunks(256)
            .enumerate()
            .map(|(i, c)| DocBatch::new(i as u64, c.to_vec()))
            .collect();
        let t = Instant::now();
        kept = 0;
        for b in batches {
            let mut em = Emitter::new(OUT_REJECTED);
            stage.process(b, &mut em).expect("process");
            kept += em.take(0).len();
        }
        best_stage = best_stage.min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        for l in &lines {
            let p = ft.predict(l, 2, 0.0);
            sink += p.first().map_or(0.0, |p| p.prob);
        }
        best_bare = best_bare.min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        for l in &lines {
            sink += sluice_model.prob(l, hq).unwrap_or(0.0);
        }
        best_model = best_model.min(t.elapsed().as_secs_f64());
    }
    let mb = bytes as f64 / 1e6;
    println!(
        "{}",
        serde_json::json!({
            "bench": "quality_classifier", "model": model, "docs": n_docs, "text_mb": mb, "threads": 1,
            "stage_docs_per_s": n_docs as f64 / best_stage, "stage_mb_per_s": mb / best_stage,
            "sluice_model_prob_lines_per_s": n_docs as f64 / best_model,
            "bare_crate_predict_lines_per_s": n_docs as f64 / best_bare,
            "stage_vs_bare_crate": best_bare / best_stage,
            "kept": kept, "checksum": sink,
            "lines_file": lines_path.display().to_string(),
        })
    );
}
