use super::*;
use crate::testing::{docs, run_transform_docs};

/// A clean encyclopedic paragraph (written for these tests).
const CLEAN: &str = "长江是中国最长的河流，也是世界第三长河。它发源于青藏高原的唐古拉山脉，自西向东流经青海、西藏、四川、云南、重庆、湖北、湖南、江西、安徽、江苏和上海，最后注入东海。长江流域面积广阔，气候温和，雨量充沛，自古以来就是中国重要的农业区和经济区。流域内分布着许多大城市，例如重庆、武汉、南京和上海。三峡工程位于长江上游与中游的交界处，是世界上规模最大的水利枢纽工程之一，兼有防洪、发电和航运等多种功能。\n\n由于人类活动的影响，长江的生态环境曾经面临严重压力。近年来，国家实施了长江十年禁渔等保护措施，水质和生物多样性逐步得到改善。";

fn filter() -> HeuristicFilter {
    HeuristicFilter::new(Config::default()).unwrap()
}

fn failing(f: &HeuristicFilter, text: &str) -> Vec<String> {
    let mut d = Document::new("x", "t", text);
    d.lang = Some("zh".into());
    f.evaluate(&mut d)
        .unwrap()
        .into_iter()
        .filter(|o| o.failed.is_some())
        .map(|o| o.rule)
        .collect()
}

#[test]
fn clean_chinese_paragraph_passes_every_rule() {
    let f = filter();
    assert_eq!(failing(&f, CLEAN), Vec::<String>::new());
}

#[test]
fn too_short() {
    assert_eq!(failing(&filter(), "今天天气很好。")[0], "chars");
}

#[test]
fn latin_page_labelled_zh_fails_cjk_share() {
    let t = "Welcome to our online store! We sell shoes, bags and watches at the best prices. 欢迎光临。 Free shipping on all orders over 99 dollars.";
    assert!(failing(&filter(), t).contains(&"cjk_share".to_string()));
}

#[test]
fn gambling_and_porn_spam_fail_flagged_ratio() {
    let gambling = "香港六合彩最快开奖现场直播，今天的开奖结果已经公布。时时彩、北京赛车和百家乐真人娱乐都可以在我们的平台投注，网上开户注册送彩金，首存还有返水，提现秒到账，欢迎大家来玩。";
    assert_eq!(failing(&filter(), gambling)[0], "flagged_ratio");
    let porn = "本站提供最新的成人电影和成人小说，每天更新大量国产av和自拍视频，所有内容都可以免费观看，请记住我们的最新地址，以免失联，欢迎大家收藏本站并分享给你的朋友们。";
    assert!(failing(&filter(), porn).contains(&"flagged_ratio".to_string()));
    // Diluted: many different gambling terms inside long filler text.
    let diluted = format!(
        "{CLEAN}\n{CLEAN}\n{CLEAN}\n{CLEAN}\n{CLEAN}\n{CLEAN}\n{CLEAN}\n{CLEAN}\n{CLEAN}\n{CLEAN}\n加QQ进群，平特一肖，特码资料，六合彩开奖结果，包赔彩金，提现快，精准计划请找计划员。"
    );
    let f = failing(&filter(), &diluted);
    assert!(
        f.contains(&"flagged_distinct".to_string()) && !f.contains(&"flagged_ratio".to_string()),
        "{f:?}"
    );
    // Near miss: an article that mentions a lottery once stays clean.
    let news = format!("{CLEAN}\n\n据报道，当地彩票中心表示今年的销售额有所下降。");
    assert_eq!(failing(&filter(), &news), Vec::<String>::new());
}

#[test]
fn c4_rules() {
    let lorem = format!("{CLEAN}\nLorem ipsum dolor sit amet, consectetur adipiscing elit.");
    assert_eq!(failing(&filter(), &lorem), ["lorem_ipsum"]);
    let policy = format!("请启用JavaScript以获得最佳浏览体验。\n本网站使用Cookie，详见隐私政策。\n使用条款和服务条款。\n{CLEAN}");
    assert!(failing(&filter(), &policy).contains(&"c4_bad_lines".to_string()));
}

#[test]
fn menu_page_fails_line_rules() {
    let menu = "首页\n新闻中心\n产品展示\n体育频道\n财经频道\n科技频道\n娱乐频道\n汽车频道\n房产频道\n教育频道\n旅游频道\n联系我们\n关于我们\n网站地图\n友情链接\n人才招聘\n广告服务\n客服中心\n帮助中心\n意见反馈";
    let f = failing(&filter(), menu);
    for r in [
        "line_punct_ratio",
        "short_line_ratio",
        "newline_ratio",
        "words",
    ] {
        assert!(f.contains(&r.to_string()), "{r} not in {f:?}");
    }
}

#[test]
fn repeated_lines_and_ngrams() {
    let line = "二肖输尽光，四肖八码，最新资料免费公开，欢迎访问本站。";
    let t = format!("{CLEAN}\n{}", [line; 6].join("\n"));
    let f = failing(&filter(), &t);
    for r in [
        "dup_line_frac",
        "dup_line_char_frac",
        "char_dup_ratio",
        "dup_5_gram",
    ] {
        assert!(f.contains(&r.to_string()), "{r} not in {f:?}");
    }
    // Near miss: two different paragraphs sharing a 12-character phrase only.
    let ok = format!("{CLEAN}\n\n长江是中国最长的河流，这一点人人皆知，但它的支流同样值得研究。");
    assert_eq!(failing(&filter(), &ok), Vec::<String>::new());
}

#[test]
fn reject_names_first_rule_and_lists_all_in_meta() {
    let f = filter();
    let texts = [CLEAN, "首页\n新闻\n体育\n财经", CLEAN];
    // A one-paragraph text that stops mid-sentence is not judged by line-share rules.
    assert_eq!(
        failing(&f, &CLEAN[..CLEAN.len() - "改善。".len()]),
        Vec::<String>::new()
    );
    for bs in [1, 3, 1000] {
        let (out, rej) = run_transform_docs(&f, docs(&texts), bs);
        assert_eq!(out.len(), 2);
        assert_eq!(rej.len(), 1);
        let r = rej[0].reject.as_ref().unwrap();
        assert_eq!(r.reason, "chars");
        let failed = &rej[0].meta["heuristic_filter.failed"];
        assert!(failed.starts_with("chars,"), "{failed}");
        assert!(
            failed.contains("stop_words") && failed.contains("words"),
            "{failed}"
        );
        assert!(r.detail.contains("chars=11.0000 < 50"), "{}", r.detail);
        // Values written for every rule, kept documents included; words were segmented once.
        assert!(out[0].attrs.contains_key("heuristic_filter.top_2_gram"));
        assert!(out[0].attrs["heuristic_filter.stop_words"] >= 2.0);
        assert!(out[0].words.is_some());
    }
}

#[test]
fn reuses_existing_words() {
    // Words set by an earlier stage are used as they are (here: one word per character).
    let f = filter();
    let mut d = Document::new("x", "t", CLEAN);
    d.lang = Some("zh".into());
    d.words = Some(
        CLEAN
            .char_indices()
            .map(|(i, c)| i as u32..(i + c.len_utf8()) as u32)
            .collect(),
    );
    let o = f.evaluate(&mut d).unwrap();
    let avg = o.iter().find(|o| o.rule == "avg_word_len").unwrap().value;
    assert_eq!(avg, 1.0);
}

#[test]
fn per_language_overrides_and_other_langs() {
    let cfg: Config = serde_json::from_value(serde_json::json!({
        "languages": {"zh": {"min_chars": 1000, "disable": ["stop_words"]}},
        "other_langs": "pass"
    }))
    .unwrap();
    let f = HeuristicFilter::new(cfg).unwrap();
    let fails = failing(&f, CLEAN);
    assert_eq!(fails, ["chars"]);
    let mut d = Document::new("x", "t", "Kurz.");
    d.lang = Some("de".into());
    assert!(f.evaluate(&mut d).is_none());
    // English gets datatrove's defaults and English stopwords.
    let mut e = Document::new("x", "t", "Short English text.");
    e.lang = Some("en".into());
    let o = filter().evaluate(&mut e).unwrap();
    assert!(o.iter().any(|o| o.rule == "stop_words"));
    assert!(!o.iter().any(|o| o.rule == "cjk_share"));

    let bad: Config = serde_json::from_value(
        serde_json::json!({"languages": {"zh": {"disable": ["stop_word"]}}}),
    )
    .unwrap();
    let problems = bad.validate(&BuildCtx::for_tests("q", "/tmp"));
    assert!(
        problems[0].contains(r#"unknown rule "stop_word" (did you mean "stop_words"?)"#),
        "{problems:?}"
    );
}

#[test]
fn rule_table_is_consistent_with_the_config_and_the_docs() {
    // Every configurable limit names a real `languages.<lang>` field (a typo would make
    // the override silently do nothing).
    let fields = serde_json::to_value(LangParams::default()).unwrap();
    let doc = include_str!("mod.rs");
    let mut names = HashSet::new();
    for rule in table::RULES {
        assert!(names.insert(rule.name), "rule {} listed twice", rule.name);
        for l in rule.limits.iter().filter(|l| !l.param.is_empty()) {
            assert!(
                fields.get(l.param).is_some(),
                "rule {}: no LangParams field {}",
                rule.name,
                l.param
            );
        }
        // Every rule is documented in the module doc's table.
        let shown = rule.name.replace("_n_", "_{n}_");
        assert!(
            doc.contains(&format!("`{shown}`")),
            "rule {} missing from the module doc",
            rule.name
        );
        assert!(
            rule.per_n || !rule.limits.is_empty(),
            "{} has no limit",
            rule.name
        );
    }
}

#[test]
fn disabled_rules_write_no_value_and_overrides_reach_their_rule() {
    let cfg: Config = serde_json::from_value(serde_json::json!({
        "languages": {"zh": {"max_hash_ratio": 0.0, "disable": ["chars", "top_n_gram"]}}
    }))
    .unwrap();
    let f = HeuristicFilter::new(cfg).unwrap();
    let mut d = Document::new("x", "t", format!("{CLEAN}#"));
    d.lang = Some("zh".into());
    let out = f.evaluate(&mut d).unwrap();
    let rules: Vec<&str> = out.iter().map(|o| o.rule.as_str()).collect();
    assert!(!rules.contains(&"chars") && !rules.iter().any(|r| r.starts_with("top_")));
    assert!(rules.iter().any(|r| r.starts_with("dup_5")));
    let hash = out.iter().find(|o| o.rule == "hash_ratio").unwrap();
    assert_eq!(hash.failed.as_deref(), Some("> 0"));
}
