use super::*;
use crate::testing::run_stage_docs;

fn ctx(dir: &std::path::Path) -> BuildCtx {
    BuildCtx::for_tests("mh", dir)
}

fn words(range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ")
}

fn doc(id: &str, text: &str) -> Document {
    Document::new(id, "test", text)
}

fn reason(d: &Document) -> &str {
    &d.reject
        .as_ref()
        .expect("rejected doc has RejectInfo")
        .reason
}

fn detail(d: &Document) -> &str {
    &d.reject
        .as_ref()
        .expect("rejected doc has RejectInfo")
        .detail
}

/// Word-set documents: with `ngram_whitespace: 1` the shingle sets are exactly the word sets,
/// so Jaccard values are known by construction.
fn chain_cfg() -> Config {
    Config {
        threshold: 0.6,
        num_perm: 128,
        bands: Some(32),
        rows: Some(4),
        ngram_whitespace: 1,
        ..Config::default()
    }
}

#[test]
fn chain_a_b_c_keeps_one() {
    // J(A,B) = J(B,C) = 80/120 = 0.67 ≥ 0.6, but J(A,C) = 60/140 = 0.43 < 0.6.
    let docs = vec![
        doc("A", &words(0..100)),
        doc("B", &words(20..120)),
        doc("C", &words(40..140)),
        doc("D", &words(1000..1100)),
    ];
    for bs in [1, 3, 1000] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = MinhashDedup::new(chain_cfg(), &ctx(dir.path()));
        let (out, rej) = run_stage_docs(&mut s, docs.clone(), bs);
        let kept: Vec<_> = out.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(kept, vec!["A", "D"], "batch size {bs}");
        assert_eq!(rej.len(), 2);
        for r in &rej {
            assert_eq!(reason(r), "near_duplicate");
            assert_eq!(
                r.meta.get("duplicate_of").map(String::as_str),
                Some("A"),
                "{}",
                detail(r)
            );
        }
        // C was matched through B (its estimated similarity to A is far below threshold).
        assert!(detail(&rej[1]).contains("matched=B"), "{}", detail(&rej[1]));
        assert!(rej[1].reject.as_ref().unwrap().score.unwrap() >= 0.6);
        assert_eq!(out[0].attrs["dedup.cluster_size"], 3.0);
        assert_eq!(out[1].attrs["dedup.cluster_size"], 1.0);
        assert_ne!(
            out[0].attrs["dedup.cluster_id"],
            out[1].attrs["dedup.cluster_id"]
        );
    }
}

#[test]
fn below_threshold_pairs_are_kept() {
    let docs = vec![doc("A", &words(0..100)), doc("C", &words(40..140))];
    let dir = tempfile::tempdir().unwrap();
    let mut s = MinhashDedup::new(chain_cfg(), &ctx(dir.path()));
    let (out, rej) = run_stage_docs(&mut s, docs, 2);
    assert_eq!(out.len(), 2);
    assert!(rej.is_empty());
}

const ZH: &str = "北京大学创办于1898年，初名京师大学堂，是中国近代第一所国立综合性大学，也是当时中国最高教育行政机关。\
辛亥革命后，于1912年改为现名。在悠久的历史中，北京大学作为新文化运动的中心和五四运动的策源地，\
作为中国最早传播马克思主义和民主科学思想的发祥地，为民族的振兴和解放、国家的建设和发展、社会的文明和进步做出了不可替代的贡献。";

const ZH_OTHER: &str = "长江是亚洲第一长河和世界第三长河，全长约6300公里，流域面积约180万平方公里。\
长江干流自西而东横贯中国中部，流经青海、西藏、四川、云南、重庆、湖北、湖南、江西、安徽、江苏、上海等省级行政区，\
在上海崇明岛以东注入东海。长江流域是中国经济最发达的地区之一。";

#[test]
fn chinese_near_duplicates_by_lang_use_chars() {
    let mut edited = ZH.replace("初名", "原名").replace("1912年", "1912年时");
    edited.push_str("\n本文来源：某某网站，转载请注明出处。");
    let mut a = doc("zh-a", ZH);
    a.lang = Some("zh".into());
    let mut b = doc("zh-b", &edited);
    b.lang = Some("zh".into());
    let c = doc("zh-c", ZH_OTHER); // no lang: `auto` sees CJK text → chars
    let dir = tempfile::tempdir().unwrap();
    let mut s = MinhashDedup::new(Config::default(), &ctx(dir.path()));
    let (out, rej) = run_stage_docs(&mut s, vec![a, b, c], 3);
    assert_eq!(
        out.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec!["zh-a", "zh-c"]
    );
    assert_eq!(rej.len(), 1);
    assert!(detail(&rej[0]).starts_with("duplicate_of=zh-a matched=zh-a jaccard_est="));
    let stats = s.stats().unwrap();
    assert_eq!(stats["counters"]["by_mode"]["chars"], 3);
    assert_eq!(stats["counters"]["duplicates"], 1);
}

#[test]
fn words_mode_without_segmentation_falls_back_to_chars() {
    let cfg = Config {
        shingle_by_lang: [("zh".to_string(), ShingleMode::Words)]
            .into_iter()
            .collect(),
        ..Config::default()
    };
    let mut a = doc("a", ZH);
    a.lang = Some("zh".into());
    let mut b = doc("b", ZH);
    b.lang = Some("zh".into());
    // b carries segmentation (spans of whole chars, as segment_zh would write).
    let mut spans = Vec::new();
    let mut pos = 0u32;
    for c in ZH.chars() {
        let l = c.len_utf8() as u32;
        spans.push(pos..pos + l);
        pos += l;
    }
    b.words = Some(spans);
    let dir = tempfile::tempdir().unwrap();
    let mut s = MinhashDedup::new(cfg, &ctx(dir.path()));
    let (out, _rej) = run_stage_docs(&mut s, vec![a, b], 1);
    assert_eq!(
        out.len(),
        2,
        "char 5-grams and word 3-grams are different shingle spaces"
    );
    let st = s.stats().unwrap();
    assert_eq!(st["counters"]["words_fallback"], 1);
    assert_eq!(st["counters"]["by_mode"]["words"], 1);
}

#[test]
fn empty_and_punctuation_only_docs_pass_through_unindexed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = MinhashDedup::new(Config::default(), &ctx(dir.path()));
    let (out, rej) = run_stage_docs(
        &mut s,
        vec![doc("e1", ""), doc("e2", "，。！"), doc("e3", "")],
        2,
    );
    assert_eq!(out.len(), 3);
    assert!(rej.is_empty());
    assert_eq!(s.stats().unwrap()["counters"]["no_shingles"], 3);
}

/// A small corpus of Chinese and English documents with planted near-duplicates.
fn planted_corpus() -> Vec<Document> {
    let mut v = Vec::new();
    let mut rng = signature::SplitMix64(7);
    for i in 0..60 {
        let base = if i % 2 == 0 { ZH } else { ZH_OTHER };
        // Unique-ish base: prefix a distinct sentence so bases differ.
        let mut t = format!("第{i}篇：{}", base.chars().skip(i % 40).collect::<String>());
        if rng.below(3) == 0 {
            t = t.replace('的', "之");
        }
        v.push(doc(&format!("d{i}"), &t));
        v.push(doc(&format!("en{i}"), &words(i * 37..i * 37 + 60)));
    }
    v
}

#[test]
fn deterministic_across_batch_sizes_and_spill() {
    let run = |bs: usize, spill_words: usize, window: usize| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            cluster_size_window_docs: window,
            ..Config::default()
        };
        let mut s = MinhashDedup::with_spill_buffer(cfg, &ctx(dir.path()), spill_words);
        let (out, rej) = run_stage_docs(&mut s, planted_corpus(), bs);
        let o: Vec<_> = out
            .iter()
            .map(|d| (d.id.clone(), d.attrs.clone()))
            .collect();
        let r: Vec<_> = rej
            .iter()
            .map(|d| (d.id.clone(), d.reject.clone()))
            .collect();
        (o, r)
    };
    let base = run(1000, 1 << 20, 10_000);
    assert!(!base.1.is_empty(), "the corpus has duplicates");
    assert!(base.0.len() > 10);
    for (bs, spill) in [(1, 1 << 20), (3, 1 << 20), (1000, 64), (3, 7)] {
        assert_eq!(run(bs, spill, 10_000), base, "bs={bs} spill={spill}");
    }
    // A zero window changes only cluster sizes (all 1), never decisions.
    let (o0, r0) = run(3, 64, 0);
    assert_eq!(r0, base.1);
    assert_eq!(
        o0.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        base.0.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>()
    );
    assert!(o0.iter().all(|(_, a)| a["dedup.cluster_size"] == 1.0));
    let total: f64 = base.0.iter().map(|(_, a)| a["dedup.cluster_size"]).sum();
    assert_eq!(
        total as usize,
        planted_corpus().len(),
        "kept docs + charged duplicates partition the input"
    );
}

#[test]
fn exact_verification_uses_true_jaccard() {
    let cfg = Config {
        verify: Verify::Exact,
        ..chain_cfg()
    };
    let docs = vec![
        doc("A", &words(0..100)),
        doc("B", &words(20..120)),
        doc("C", &words(40..140)),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut s = MinhashDedup::with_spill_buffer(cfg, &ctx(dir.path()), 16);
    let (out, rej) = run_stage_docs(&mut s, docs, 1);
    assert_eq!(out.len(), 1);
    assert!(
        detail(&rej[0]).ends_with("jaccard_exact=0.6667"),
        "{}",
        detail(&rej[0])
    );
}

/// A cut copy (the first 35 of 100 words) has Jaccard 0.35 but containment 1: it is a
/// duplicate through the containment test alone, estimated or exact, and kept when the
/// test is off.
#[test]
fn truncated_copy_is_caught_by_containment_only() {
    let docs = vec![doc("A", &words(0..100)), doc("B", &words(0..35))];
    // 64 bands of 2 rows: a pair at Jaccard 0.35 is an LSH candidate with p ≈ 0.9998.
    let base = Config {
        threshold: 0.5,
        bands: Some(64),
        rows: Some(2),
        ngram_whitespace: 1,
        ..Config::default()
    };
    for verify in [Verify::Signature, Verify::Exact] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            verify,
            ..base.clone()
        };
        let mut s = MinhashDedup::new(cfg, &ctx(dir.path()));
        let (out, rej) = run_stage_docs(&mut s, docs.clone(), 2);
        assert_eq!(out.len(), 1, "{verify:?}");
        assert_eq!(rej[0].id, "B");
        assert!(rej[0].reject.as_ref().unwrap().score.unwrap() < 0.5);
        let st = s.stats().unwrap();
        assert_eq!(st["counters"]["accepted_by_containment"], 1, "{st}");

        let dir = tempfile::tempdir().unwrap();
        let off = Config {
            verify,
            containment_threshold: 0.0,
            ..base.clone()
        };
        let mut s = MinhashDedup::new(off, &ctx(dir.path()));
        let (out, rej) = run_stage_docs(&mut s, docs.clone(), 2);
        assert_eq!((out.len(), rej.len()), (2, 0), "{verify:?}");
    }
    // Out-of-range containment thresholds are refused.
    let dir = tempfile::tempdir().unwrap();
    let err = parse_config::<Config>(
        &serde_json::json!({"containment_threshold": 1.2}),
        &ctx(dir.path()),
    )
    .unwrap_err();
    assert!(err[0].contains("containment_threshold"), "{err:?}");
}

#[test]
fn config_validation_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let params = serde_json::json!({"threshold": 1.5, "bands": 4, "ngram_chars": 0});
    let err = parse_config::<Config>(&params, &ctx(dir.path())).unwrap_err();
    assert_eq!(err.len(), 3, "{err:?}");
    let params = serde_json::json!({"num_perms": 64});
    let err = parse_config::<Config>(&params, &ctx(dir.path())).unwrap_err();
    assert!(err[0].contains("did you mean `num_perm`"), "{err:?}");
    let ok: Config = parse_config(
        &serde_json::json!({"bands": 16, "rows": 8}),
        &ctx(dir.path()),
    )
    .unwrap();
    assert_eq!(ok.lsh_params(), LshParams { bands: 16, rows: 8 });
}

/// The labelled pairs of `samples/text/articles_en.jsonl` (articles_100.truth) are found,
/// and nothing else is flagged.
#[test]
fn finds_labelled_pairs_in_english_sample() {
    let txt = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/text/articles_en.jsonl"
    ))
    .unwrap();
    let docs: Vec<Document> = txt
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            doc(v["id"].as_str().unwrap(), v["text"].as_str().unwrap())
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut s = MinhashDedup::new(Config::default(), &ctx(dir.path()));
    let (out, rej) = run_stage_docs(&mut s, docs, 7);
    let mut got: Vec<(String, String)> = rej
        .iter()
        .map(|d| (d.meta["duplicate_of"].clone(), d.id.clone()))
        .collect();
    got.sort();
    let want: Vec<(String, String)> = [
        ("t1088", "t5015"),
        ("t1297", "t4638"),
        ("t1768", "t5248"),
        ("t1952", "t3495"),
        ("t980", "t2023"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want, "{:?}", s.stats());
    assert_eq!(out.len(), 95);
}
