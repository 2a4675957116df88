//! Unit tests of the `quality_classifier` stage on the shipped Chinese model.

use super::*;
use crate::document::Document;
use crate::stage::Transform;
use crate::testing::run_transform_docs;

const MODEL: &str = "samples/models/zh_quality.ftz";

const WIKI: &str = "《战国无双3》是由光荣和ω-force开发的战国无双系列的正统第三续作。本作以三大故事为主轴，分别是以武田信玄等人为主的《关东三国志》，织田信长等人为主的《战国三杰》，石田三成等人为主的《关原的年轻武者》，丰富游戏内的剧情。";
const SPAM: &str = "香港最快开奖现场直84期_主页 | 168最快开奖现场 | 香港最快开奖118kj开奖现场 | 充值300，600、1000计划跟上，赚取一倍流水，即可提现带走 | 添加下方QQ操作即可 | 记住QQ 215138693";

fn cfg() -> Config {
    Config {
        model: MODEL.into(),
        label: "hq".into(),
        attr: String::new(),
        threshold: 0.5,
        reason: "low_quality".into(),
        langs: vec![],
        hmm: true,
    }
}

fn doc(id: &str, text: &str, lang: Option<&str>) -> Document {
    let mut d = Document::new(id, "test", text);
    d.lang = lang.map(str::to_string);
    d
}

#[test]
fn keeps_wikipedia_rejects_spam_at_every_batch_size() {
    let stage = QualityClassifier::new(cfg(), "quality_zh").expect("model");
    assert_eq!(stage.attr(), "quality_zh.hq");
    for bs in [1, 3, 1000] {
        let docs = vec![
            doc("w", WIKI, Some("zh")),
            doc("s", SPAM, Some("zh")),
            doc("w2", WIKI, None),
        ];
        let (out, rej) = run_transform_docs(&stage, docs, bs);
        assert_eq!(
            out.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            vec!["w", "w2"]
        );
        assert_eq!(rej.len(), 1);
        let r = rej[0].reject.as_ref().expect("reject info");
        assert_eq!(r.reason, "low_quality");
        let score = r.score.expect("score");
        assert!(score < 0.5, "{score}");
        assert_eq!(rej[0].attrs["quality_zh.hq"], score);
        assert!(out[0].attrs["quality_zh.hq"] >= 0.5);
        // lang None with Han characters is segmented like lang zh
        assert_eq!(out[0].attrs["quality_zh.hq"], out[1].attrs["quality_zh.hq"]);
    }
}

#[test]
fn segment_zh_words_give_the_same_score_as_inline_jieba() {
    let stage = QualityClassifier::new(cfg(), "q").expect("model");
    let mut with_words = doc("a", WIKI, Some("zh"));
    let seg = crate::stages::segment_zh::SegmentZh::new(
        serde_json::from_value(serde_json::json!({})).expect("cfg"),
    )
    .expect("segment_zh");
    seg.apply(&mut with_words);
    assert!(with_words.words.is_some());
    let (out, _) = run_transform_docs(&stage, vec![with_words, doc("b", WIKI, Some("zh"))], 2);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].attrs["q.hq"], out[1].attrs["q.hq"]);
}

#[test]
fn two_classifiers_in_one_dag_write_distinct_attrs() {
    let a = QualityClassifier::new(cfg(), "quality_a").expect("model");
    let b = QualityClassifier::new(
        Config {
            label: "__label__lq".into(),
            attr: "junk.prob".into(),
            threshold: 0.0,
            ..cfg()
        },
        "quality_b",
    )
    .expect("model");
    let (out, _) = run_transform_docs(&a, vec![doc("w", WIKI, Some("zh"))], 1);
    let (out, _) = run_transform_docs(&b, out, 1);
    let d = &out[0];
    let (hq, lq) = (d.attrs["quality_a.hq"], d.attrs["junk.prob"]);
    // the two labels of a binary softmax model sum to one (plus fastText's 2 x 1e-5)
    assert!((hq + lq - 1.0).abs() < 1e-4, "{hq} + {lq}");
}

#[test]
fn other_languages_pass_unscored_and_empty_text_is_rejected() {
    let stage = QualityClassifier::new(
        Config {
            langs: vec!["zh".into()],
            ..cfg()
        },
        "q",
    )
    .expect("model");
    let docs = vec![
        doc("en", "An English page.", Some("en")),
        doc("none", "没有语言", None),
        doc("e", " \n\t", Some("zh")),
    ];
    let (out, rej) = run_transform_docs(&stage, docs, 3);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|d| d.attrs.is_empty()));
    assert_eq!(rej.len(), 1);
    assert_eq!(
        rej[0].reject.as_ref().map(|r| r.reason.as_str()),
        Some("no_tokens")
    );
    let stats = stage.stats().expect("stats");
    assert_eq!(stats["skipped_lang"], 2);
    assert_eq!(stats["no_tokens"], 1);
}

#[test]
fn config_problems_are_all_reported() {
    let ctx = BuildCtx::for_tests("q", std::env::temp_dir());
    let params = serde_json::json!({"model": "no/such/model.ftz", "threshold": 1.5, "label": " "});
    let err = match (kind().build)(&params, &ctx) {
        Err(e) => e,
        Ok(_) => panic!("bad config accepted"),
    };
    assert_eq!(err.len(), 3, "{err:?}");
    let params = serde_json::json!({"model": MODEL, "label": "nope"});
    let err = match (kind().build)(&params, &ctx) {
        Err(e) => e,
        Ok(_) => panic!("unknown label accepted"),
    };
    assert!(err[0].contains("__label__hq"), "{err:?}");
    let params = serde_json::json!({"model": MODEL, "treshold": 0.3});
    let err = match (kind().build)(&params, &ctx) {
        Err(e) => e,
        Ok(_) => panic!("typo accepted"),
    };
    assert!(
        err[0].contains(r#"unknown field "treshold" (did you mean "threshold"?)"#),
        "{err:?}"
    );
}
