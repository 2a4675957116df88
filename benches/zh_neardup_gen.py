#!/usr/bin/env python3
"""Seeded generator of a Chinese near-duplicate dev set with planted, labelled copies.

Usage (from the repo root):
    python3 benches/zh_neardup_gen.py --seed 1 --out /tmp/zh-neardup-s1
    # data paths default to ../shared/data/...; override with --cmrc/--gaokao/--warc
    # the committed test sample (CMRC only, CC BY-SA 4.0), samples/text/zh_neardup/:
    python3 benches/zh_neardup_gen.py --seed 7 --cmrc samples/text/cmrc2018_zh.jsonl \
        --no-gaokao --no-warc --max-bases 70 --out samples/text/zh_neardup

Base documents (every source paragraph is used by exactly one base, so two bases share no
text beyond what their sources share):
  * `wiki`: 2-5 consecutive CMRC 2018 Wikipedia paragraphs joined by newlines (an article);
  * `exam`: 4-8 GAOKAO multiple-choice items of one subject (an exam sheet: the items share
    their template text, "（ 4分）", "下列", the A．B．C．D． options: hard negatives);
  * `spam`: the visible text of the Chinese pages of the CC-MAIN-2020-34 spam WARC.
A quarter of the bases also carry one "site footer" line drawn from a small set, so
unrelated documents share boilerplate (more hard negatives).

Planted copies: 50 % of the bases get one copy, 25 % two, 10 % three. Each copy is made from
its base by one recipe of graded strength:
  * `exact`: verbatim;
  * `swap`: two paragraphs swapped (or one moved to the end);
  * `cut`: only the first 45-95 % of the characters kept (the tail cut);
  * `subst`: 1-5 % of the CJK characters replaced by other CJK characters;
  * `boiler`: 1-4 reposting lines added at the top and/or bottom
    (来源：… / 责任编辑：… / 版权所有 … / 转载请注明出处 …);
  * combinations: `swap+subst`, `cut+boiler`, `subst+boiler`, `swap+cut+boiler`,
    `cut+subst+boiler` (a repost: cut, retyped, re-branded).
Every copy records its recipe, its strength and the TRUE character-5-gram Jaccard and
containment with its base. Characters are those sluice shingles: alphanumeric Unicode
scalars, lower-cased (punctuation and whitespace skipped); 5-grams are compared as strings.

Output (`--out DIR`):
  * `docs.jsonl`: `{"id", "text"}` in a seeded random order (no lang field: the dedup stage
    must recognise Chinese by itself);
  * `truth.jsonl`: one line per document `{"id", "family", "role": "base"|"copy", "source",
    "recipe", "strength", "jaccard", "containment"}` (the last four for copies only);
  * `summary.json`: counts per source, recipe and Jaccard bucket.
Same inputs and seed => byte-identical files.
"""

import argparse
import html
import json
import random
import re
from pathlib import Path

SITES = ["新华网", "人民网", "中国新闻网", "澎湃新闻", "央视网", "光明网", "环球网", "凤凰网", "腾讯新闻", "网易新闻"]
EDITORS = ["王小明", "李娜", "张伟", "刘洋", "陈静", "杨帆", "赵磊", "黄丽", "周杰", "吴敏"]
REPOST_LINES = [
    "来源：{site}",
    "本文来源：{site}　作者：{editor}",
    "责任编辑：{editor}",
    "【责任编辑：{editor}】",
    "版权所有 © {year} {site} 保留所有权利",
    "版权声明：本文为{site}原创，转载请注明出处。",
    "转载请注明出处：{site}",
    "（原标题：{title}）",
    "声明：本文仅代表作者观点，不代表{site}立场。",
    "免责声明：转载目的在于传递更多信息，如有侵权请联系删除。",
]
FOOTERS = [
    "关注我们的微信公众号，获取更多精彩内容！",
    "首页 | 关于我们 | 联系我们 | 网站地图 | 免责声明",
    "Copyright © 2020 All Rights Reserved 京ICP备05012345号",
    "扫一扫，分享到朋友圈",
]

BUCKETS = [(0.0, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0001)]


def bucket_name(j):
    for lo, hi in BUCKETS:
        if lo <= j < hi:
            return f"{lo:.1f}-{min(hi, 1.0):.1f}"
    return "?"


def norm_chars(text):
    return [c.lower() for c in text if c.isalnum()]


def grams(text, n=5):
    cs = norm_chars(text)
    if not cs:
        return set()
    if len(cs) < n:
        return {"".join(cs)}
    return {"".join(cs[i : i + n]) for i in range(len(cs) - n + 1)}


def jaccard_containment(a, b):
    ga, gb = grams(a), grams(b)
    inter = len(ga & gb)
    union = len(ga | gb)
    j = inter / union if union else 1.0
    c = inter / min(len(ga), len(gb)) if ga and gb else 0.0
    return j, c


# ---------------------------------------------------------------------------------------
# Sources


def load_cmrc(path):
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            v = json.loads(line)
            out.append(v["text"].strip())
    return out


def load_gaokao(path):
    by_subject = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            v = json.loads(line)
            q = "\n".join(l.strip() for l in v["question"].splitlines() if l.strip())
            by_subject.setdefault(v["subject"], []).append(q)
    return by_subject


def warc_pages(path):
    """(charset-decoded HTML) of every response record of an uncompressed WARC."""
    data = Path(path).read_bytes()
    pages = []
    for rec in data.split(b"WARC/1.0\r\n")[1:]:
        head, _, body = rec.partition(b"\r\n\r\n")
        if b"WARC-Type: response" not in head:
            continue
        _, _, payload = body.partition(b"\r\n\r\n")
        m = re.search(rb"charset=[\"']?([A-Za-z0-9_-]+)", payload[:4096])
        cs = m.group(1).decode().lower() if m else "utf-8"
        if cs in ("gb2312", "gbk", "gb18030"):
            cs = "gb18030"
        try:
            pages.append(payload.decode(cs, errors="replace"))
        except LookupError:
            pages.append(payload.decode("utf-8", errors="replace"))
    return pages


def html_text(page):
    page = re.sub(r"(?is)<(script|style|noscript)\b.*?</\1>", "\n", page)
    page = re.sub(r"(?is)<!--.*?-->", "\n", page)
    page = re.sub(r"(?i)<(br|p|div|li|tr|h[1-6]|title)\b[^>]*>", "\n", page)
    page = re.sub(r"(?s)<[^>]+>", " ", page)
    page = html.unescape(page)
    lines = []
    for l in page.splitlines():
        l = re.sub(r"\s+", " ", l).strip()
        if sum("\u4e00" <= c <= "\u9fff" for c in l) >= 6:
            lines.append(l)
    return lines


def cjk_share(text):
    t = [c for c in text if not c.isspace()]
    return sum("\u4e00" <= c <= "\u9fff" for c in t) / max(1, len(t))


# ---------------------------------------------------------------------------------------
# Edits


def paragraphs(text):
    return text.split("\n")


def swap(rng, text):
    ps = paragraphs(text)
    if len(ps) < 2:
        return text, "none"
    if rng.random() < 0.5:
        i, j = rng.sample(range(len(ps)), 2)
        ps[i], ps[j] = ps[j], ps[i]
        return "\n".join(ps), "swap2"
    i = rng.randrange(len(ps) - 1)
    p = ps.pop(i)
    ps.append(p)
    return "\n".join(ps), "move_to_end"


def cut(rng, text, keep=None):
    keep = keep if keep is not None else rng.choice([0.95, 0.85, 0.75, 0.65, 0.55, 0.45])
    n = max(1, int(len(text) * keep))
    return text[:n], f"keep{int(keep * 100)}"


def subst(rng, text, pool, rate=None):
    rate = rate if rate is not None else rng.choice([0.01, 0.02, 0.03, 0.04, 0.05])
    cs = list(text)
    idx = [i for i, c in enumerate(cs) if "\u4e00" <= c <= "\u9fff"]
    k = round(len(idx) * rate)
    for i in rng.sample(idx, min(k, len(idx))):
        cs[i] = rng.choice(pool)
    return "".join(cs), f"{int(round(rate * 100))}pct"


def boiler(rng, text, title):
    n = rng.choice([1, 2, 2, 3, 4])
    lines = [
        rng.choice(REPOST_LINES).format(
            site=rng.choice(SITES), editor=rng.choice(EDITORS), year=rng.choice(range(2015, 2025)), title=title
        )
        for _ in range(n)
    ]
    where = rng.choice(["top", "bottom", "both"])
    if where == "top":
        out = lines + [text]
    elif where == "bottom":
        out = [text] + lines
    else:
        k = max(1, n // 2)
        out = lines[:k] + [text] + lines[k:]
    return "\n".join(out), f"{n}lines_{where}"


RECIPES = [
    "exact",
    "swap",
    "cut",
    "subst",
    "boiler",
    "swap+subst",
    "cut+boiler",
    "subst+boiler",
    "swap+cut+boiler",
    "cut+subst+boiler",
]
# Relative weights: the single edits and the repost combinations about equally.
WEIGHTS = [0.5, 1, 1.2, 1.5, 1, 1, 1, 1, 0.8, 1]


def make_copy(rng, text, title, pool, recipe):
    strength = []
    for step in recipe.split("+"):
        if step == "exact":
            strength.append("verbatim")
        elif step == "swap":
            text, s = swap(rng, text)
            strength.append(s)
        elif step == "cut":
            text, s = cut(rng, text)
            strength.append(s)
        elif step == "subst":
            text, s = subst(rng, text, pool)
            strength.append(s)
        elif step == "boiler":
            text, s = boiler(rng, text, title)
            strength.append(s)
    return text, ",".join(strength)


# ---------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cmrc", default="../shared/data/text-zh-wikipedia-cmrc2018/cmrc2018_dev.contexts.jsonl")
    ap.add_argument("--gaokao", default="../shared/data/bench-gaokao-zh/gaokao_mcq_zh.jsonl")
    ap.add_argument("--warc", default="../shared/data/warc-cc-main-2020-34-zh-spam/warcfile.warc")
    ap.add_argument("--no-warc", action="store_true", help="skip the spam pages")
    ap.add_argument("--no-gaokao", action="store_true", help="skip the GAOKAO exam sheets")
    ap.add_argument("--max-bases", type=int, default=0, help="keep only the first N bases (0 = all)")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    bases = []  # (source, title, text)
    cmrc = load_cmrc(args.cmrc)
    i = 0
    while i < len(cmrc):
        k = rng.randint(2, 5)
        chunk = cmrc[i : i + k]
        i += k
        if chunk:
            bases.append(("wiki", chunk[0][:12], "\n".join(chunk)))
    gaokao = {} if args.no_gaokao else load_gaokao(args.gaokao)
    for subject, items in sorted(gaokao.items()):
        items = items[:]
        rng.shuffle(items)
        i = 0
        while i < len(items):
            k = rng.randint(4, 8)
            chunk = items[i : i + k]
            i += k
            if len(chunk) >= 2:
                bases.append(("exam", subject, "\n".join(chunk)))
    if not args.no_warc and Path(args.warc).is_file():
        for page in warc_pages(args.warc):
            lines = html_text(page)
            text = "\n".join(lines)
            if len(norm_chars(text)) >= 200 and cjk_share(text) > 0.5:
                bases.append(("spam", lines[0][:12], text))
    rng.shuffle(bases)
    if args.max_bases:
        bases = bases[: args.max_bases]

    pool = [c for _, _, t in bases for c in t if "\u4e00" <= c <= "\u9fff"]
    pool = sorted(set(pool))

    docs, truth = [], []
    for fam, (source, title, text) in enumerate(bases):
        if rng.random() < 0.25:
            text = text + "\n" + rng.choice(FOOTERS)
        bid = f"f{fam:04d}-base"
        docs.append({"id": bid, "text": text})
        truth.append({"id": bid, "family": fam, "role": "base", "source": source})
        r = rng.random()
        n_copies = 1 if r < 0.50 else 2 if r < 0.75 else 3 if r < 0.85 else 0
        for c in range(n_copies):
            recipe = rng.choices(RECIPES, weights=WEIGHTS)[0]
            ctext, strength = make_copy(rng, text, title, pool, recipe)
            j, cont = jaccard_containment(text, ctext)
            cid = f"f{fam:04d}-copy{c}"
            docs.append({"id": cid, "text": ctext})
            truth.append(
                {
                    "id": cid,
                    "family": fam,
                    "role": "copy",
                    "source": source,
                    "recipe": recipe,
                    "strength": strength,
                    "jaccard": round(j, 6),
                    "containment": round(cont, 6),
                }
            )
    order = list(range(len(docs)))
    rng.shuffle(order)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "docs.jsonl", "w", encoding="utf-8") as f:
        for i in order:
            f.write(json.dumps(docs[i], ensure_ascii=False) + "\n")
    with open(out / "truth.jsonl", "w", encoding="utf-8") as f:
        for i in order:
            f.write(json.dumps(truth[i], ensure_ascii=False) + "\n")
    summary = {"seed": args.seed, "docs": len(docs), "bases": len(bases), "by_source": {}, "by_recipe": {}, "by_bucket": {}}
    for t in truth:
        summary["by_source"][t["source"]] = summary["by_source"].get(t["source"], 0) + 1
        if t["role"] == "copy":
            summary["by_recipe"][t["recipe"]] = summary["by_recipe"].get(t["recipe"], 0) + 1
            b = bucket_name(t["jaccard"])
            summary["by_bucket"][b] = summary["by_bucket"].get(b, 0) + 1
    summary["by_bucket"] = dict(sorted(summary["by_bucket"].items()))
    (out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n")
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()
