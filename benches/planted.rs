//! Seeded generator of a Chinese near-duplicate benchmark with planted, labelled duplicates.
//!
//! Input: clean Chinese paragraphs (CMRC 2018 Wikipedia contexts). Consecutive paragraphs
//! are grouped into base documents of 3 paragraphs. About half of the bases get 1–3 planted
//! copies, each made by one transform:
//! * `edit`: 1–3 % of characters replaced, deleted or followed by an inserted character;
//! * `boilerplate`: 2–4 site boilerplate lines inserted at the top, bottom or between paragraphs;
//! * `truncate`: only the first 75–95 % of the characters kept;
//! * `shuffle`: paragraph order permuted;
//! * `mixed`: 1 % edits plus 2 boilerplate lines.
//!
//! All documents are then shuffled. Every document carries its cluster number (the base it
//! came from), which is the ground truth. Same paragraphs + seed ⇒ the same set.

use sluice::stages::minhash_dedup::signature::SplitMix64;

/// One generated document.
#[derive(Debug, Clone)]
pub struct PlantedDoc {
    pub id: String,
    pub text: String,
    pub cluster: usize,
    pub transform: &'static str,
}

const BOILERPLATE: &[&str] = &[
    "本文来源：新华网 责任编辑：王小明",
    "版权所有 © 2024 某某信息网 京ICP备12345678号",
    "点击关注我们的微信公众号，获取更多精彩内容！",
    "声明：本文仅代表作者观点，不代表本站立场。",
    "相关阅读：更多新闻请访问首页",
    "免责声明：转载请注明出处，如有侵权请联系删除。",
    "分享到：微博 微信 QQ空间",
    "首页 > 新闻中心 > 正文",
];

fn pick<'a, T>(rng: &mut SplitMix64, v: &'a [T]) -> &'a T {
    &v[rng.below(v.len() as u64) as usize]
}

fn edit(text: &str, rate_pct_x10: u64, pool: &[char], rng: &mut SplitMix64) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c == '\n' || rng.below(1000) >= rate_pct_x10 {
            out.push(c);
            continue;
        }
        match rng.below(3) {
            0 => out.push(*pick(rng, pool)),
            1 => {}
            _ => {
                out.push(c);
                out.push(*pick(rng, pool));
            }
        }
    }
    out
}

fn add_boilerplate(paras: &[String], n: usize, rng: &mut SplitMix64) -> String {
    let mut parts: Vec<String> = paras.to_vec();
    for _ in 0..n {
        let line = pick(rng, BOILERPLATE).to_string();
        let at = rng.below(parts.len() as u64 + 1) as usize;
        parts.insert(at, line);
    }
    parts.join("\n")
}

/// Generate the benchmark from paragraphs (at most `max_bases` base documents).
pub fn generate(paragraphs: &[String], max_bases: usize, seed: u64) -> Vec<PlantedDoc> {
    let mut rng = SplitMix64(seed);
    let pool: Vec<char> = paragraphs
        .iter()
        .take(50)
        .flat_map(|p| p.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut docs = Vec::new();
    for (cluster, chunk) in paragraphs.chunks_exact(3).take(max_bases).enumerate() {
        let paras: Vec<String> = chunk.to_vec();
        let base = paras.join("\n");
        docs.push(PlantedDoc {
            id: format!("c{cluster}-base"),
            text: base.clone(),
            cluster,
            transform: "base",
        });
        if rng.below(2) == 0 {
            continue;
        }
        let copies = 1 + rng.below(3);
        for k in 0..copies {
            let (transform, text) = match rng.below(5) {
                0 => ("edit", edit(&base, 10 + rng.below(21), &pool, &mut rng)),
                1 => {
                    let n = 2 + rng.below(3) as usize;
                    ("boilerplate", add_boilerplate(&paras, n, &mut rng))
                }
                2 => {
                    let total = base.chars().count() as u64;
                    let keep = total * (75 + rng.below(21)) / 100;
                    ("truncate", base.chars().take(keep as usize).collect())
                }
                3 => {
                    let mut p = paras.clone();
                    for _ in 0..10 {
                        if p != paras {
                            break;
                        }
                        for i in (1..p.len()).rev() {
                            let j = rng.below(i as u64 + 1) as usize;
                            p.swap(i, j);
                        }
                    }
                    ("shuffle", p.join("\n"))
                }
                _ => {
                    let bp = add_boilerplate(&paras, 2, &mut rng);
                    ("mixed", edit(&bp, 10, &pool, &mut rng))
                }
            };
            docs.push(PlantedDoc {
                id: format!("c{cluster}-copy{k}-{transform}"),
                text,
                cluster,
                transform,
            });
        }
    }
    for i in (1..docs.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        docs.swap(i, j);
    }
    docs
}
