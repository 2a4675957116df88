#!/usr/bin/env python3
"""Generate a seeded dev set for `decontaminate`: benchmark items pasted into Chinese
documents in several layouts (positives) and planted near-misses (negatives).

Host text is Chinese Wikipedia paragraphs (CMRC 2018 contexts); the benchmarks are the
GAOKAO multiple-choice items (`gaokao_mcq_zh.jsonl`) and, to keep an eye on English,
GSM8K test questions. Every output line is

    {"id", "text", "label": 1|0, "kind", "bench", "item", "subject"}

`label` 1 = contains a whole benchmark item (must be flagged), 0 = must be kept. `kind`
is the layout of a positive or the near-miss kind of a negative:

positives (gaokao): published   the item as published, between two halves of a paragraph
                    inline      stem and options on one line inside a paragraph
                    exam        new number, stem with `（　　）`, options one per line,
                                `【答案】`/`【解析】` lines (the item's own number and score
                                marker dropped)
                    qa          `问：` item `答：` answer (number and score marker dropped)
                    fullwidth   the item with every ASCII character made full-width
                    halfwidth   the item with full-width forms made ASCII
                    spaces      extra spaces between characters, doubled line breaks
positives (gsm8k):  gsm8k       an English GSM8K question inside Chinese text
negatives:          half        the first half of an item (by characters) then "……"
                    topic       a paragraph plus sentences built from 2-4 character words
                                of one item's stem (shares only topic words)
                    clean       a paragraph alone
                    gsm8k_half  the first half of a GSM8K question then "……"

Same arguments -> same file (random.Random(seed) only).

usage: zh_decont_gen.py OUT.jsonl [--gaokao PATH] [--gsm8k PATH] [--hosts PATH]
                        [--per-layout 200] [--host-chars 0] [--seed 16]
"""
import argparse
import json
import random
import re

LAYOUTS = ["published", "inline", "exam", "qa", "fullwidth", "halfwidth", "spaces"]
PREFIX = re.compile(r"^\s*\d{1,3}\s*[.．、]\s*(?:[（(]\s*\d+(?:\.\d+)?\s*分\s*[)）])?\s*")
OPTION = re.compile(r"(?:(?<=\s)|^)([A-D])\s*[.．、]\s*")
BLANK = re.compile(r"[（(][\s\u3000]*(?:\\quad)?[\s\u3000]*[)）]")


def is_cjk(c):
    o = ord(c)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def split_options(q):
    """(stem, [(letter, text)]) of an item without its number; options may share lines."""
    ms = [m for m in OPTION.finditer(q)]
    # Keep the last run A, B, C, D in order: the options.
    for i in range(len(ms) - 3, -1, -1):
        if [m.group(1) for m in ms[i:i + 4]] == ["A", "B", "C", "D"]:
            ms = ms[i:i + 4]
            break
    else:
        return q.strip(), []
    stem = q[: ms[0].start()].strip()
    opts = []
    for j, m in enumerate(ms):
        end = ms[j + 1].start() if j + 1 < len(ms) else len(q)
        opts.append((m.group(1), q[m.end():end].strip()))
    return stem, opts


def host(rng, paras, host_chars):
    p = rng.choice(paras)
    if host_chars:
        p = p[:host_chars]
    cuts = [i + 1 for i, c in enumerate(p) if c in "。！？"][:-1]
    k = rng.choice(cuts) if cuts else len(p) // 2
    return p[:k], p[k:]


def fullwidth(s):
    return "".join(
        "\u3000" if c == " " else chr(ord(c) + 0xFEE0) if 0x21 <= ord(c) <= 0x7E else c for c in s
    )


def halfwidth(s):
    s = "".join(
        " " if c == "\u3000" else chr(ord(c) - 0xFEE0) if 0xFF01 <= ord(c) <= 0xFF5E else c for c in s
    )
    return s.replace("，", ",").replace("。", ".").replace("；", ";").replace("：", ":")


def spaced(rng, s):
    out = []
    for c in s:
        out.append(c)
        if is_cjk(c) and rng.random() < 0.3:
            out.append(" " if rng.random() < 0.7 else "\u3000")
    return "".join(out).replace("\n", "\n\n  ").replace(" ", "  ")


def layout(rng, kind, item, paras, host_chars):
    q = item["question"].strip()
    body = PREFIX.sub("", q, count=1)
    a, b = host(rng, paras, host_chars)
    if kind == "published":
        return f"{a}\n{q}\n{b}"
    if kind == "inline":
        return a + re.sub(r"\s*\n\s*", " ", q) + b
    if kind == "exam":
        stem, opts = split_options(body)
        if not BLANK.search(stem):
            stem += "（　　）"
        stem = BLANK.sub("（　　）", stem)
        lines = [f"{rng.randint(1, 30)}．{stem}"] + [f"{l}．{t}" for l, t in opts]
        if not opts:
            lines = [f"{rng.randint(1, 30)}．{stem}"]
        ans = "".join(item.get("answer") or []) or "略"
        return f"{a}\n" + "\n".join(lines) + f"\n【答案】{ans}\n【解析】略。\n{b}"
    if kind == "qa":
        ans = "".join(item.get("answer") or []) or "略"
        return f"{a}\n问：{body}\n答：{ans}。\n{b}"
    if kind == "fullwidth":
        return f"{a}\n{fullwidth(q)}\n{b}"
    if kind == "halfwidth":
        return f"{a}\n{halfwidth(q)}\n{b}"
    if kind == "spaces":
        return f"{a}\n\n   {spaced(rng, q)}   \n\n{b}"
    raise ValueError(kind)


def topic_doc(rng, item, paras, host_chars):
    stem, _ = split_options(PREFIX.sub("", item["question"], count=1))
    runs = [r for r in re.split(r"[^\u4e00-\u9fff]+", stem) if len(r) >= 2]
    words = []
    for r in runs:
        k = rng.randint(2, min(4, len(r)))
        s = rng.randint(0, len(r) - k)
        w = r[s:s + k]
        if w not in words:
            words.append(w)
    rng.shuffle(words)
    words = words[:6] or ["考试"]
    a, b = host(rng, paras, host_chars)
    w = (words * 6)[:6]
    return (f"这篇笔记整理了与{w[0]}、{w[1]}和{w[2]}有关的背景知识。{a}"
            f"其中{w[3]}与{w[4]}的关系尤其值得注意，{w[5]}也常被提及。{b}")


def half_doc(rng, text, paras, host_chars):
    t = text.strip()
    a, b = host(rng, paras, host_chars)
    return f"{a}\n{t[: len(t) // 2]}……\n{b}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--gaokao", default="samples/benchmarks/gaokao_mcq_zh.jsonl")
    ap.add_argument("--gsm8k", default="samples/benchmarks/gsm8k_test.jsonl")
    ap.add_argument("--hosts", default="../shared/data/text-zh-wikipedia-cmrc2018/cmrc2018_dev.contexts.jsonl")
    ap.add_argument("--per-layout", type=int, default=200, help="positives per layout")
    ap.add_argument("--host-chars", type=int, default=0, help="cut host paragraphs to this many chars (0 = whole)")
    ap.add_argument("--seed", type=int, default=16)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    items = read_jsonl(args.gaokao)
    gsm = read_jsonl(args.gsm8k)
    paras = [r["text"] for r in read_jsonl(args.hosts)]
    n = args.per_layout
    out = []

    def add(kind, label, bench, item, text, subject=""):
        out.append({"id": f"{kind}-{len(out):05d}", "text": text, "label": label, "kind": kind,
                    "bench": bench, "item": item, "subject": subject})

    for kind in LAYOUTS:
        for it in rng.sample(items, min(n, len(items))):
            add(kind, 1, "gaokao_zh", it["id"], layout(rng, kind, it, paras, args.host_chars), it["subject"])
    for it in rng.sample(items, min(2 * n, len(items))):
        add("half", 0, "gaokao_zh", it["id"], half_doc(rng, it["question"], paras, args.host_chars), it["subject"])
    for it in rng.sample(items, min(n, len(items))):
        add("topic", 0, "gaokao_zh", it["id"], topic_doc(rng, it, paras, args.host_chars), it["subject"])
    for _ in range(2 * n):
        a, b = host(rng, paras, args.host_chars)
        add("clean", 0, "", "", a + b)
    for i in rng.sample(range(len(gsm)), min(n // 2, len(gsm))):
        a, b = host(rng, paras, args.host_chars)
        add("gsm8k", 1, "gsm8k", str(i), f"{a}\n{gsm[i]['question']}\n{b}")
    for i in rng.sample(range(len(gsm)), min(n // 2, len(gsm))):
        add("gsm8k_half", 0, "gsm8k", str(i), half_doc(rng, gsm[i]["question"], paras, args.host_chars))
    rng.shuffle(out)
    with open(args.out, "w", encoding="utf-8") as f:
        for r in out:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(out)} docs to {args.out}")


if __name__ == "__main__":
    main()
