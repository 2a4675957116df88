#!/usr/bin/env python3
"""Regenerate tests/golden/tokenizer_parity/{qwen2,deepseek-v3}.json.

Reference token ids from the Python `tokenizers` library for real sample documents, which
tests/engine.rs compares with the Rust stage. Exact command used:

    python3 -m venv /tmp/venv-tok && /tmp/venv-tok/bin/pip install tokenizers==0.23.3
    /tmp/venv-tok/bin/python tests/scripts/make_tokenizer_refs.py

Inputs: the first 12 Chinese paragraphs of samples/text/cmrc2018_zh.jsonl, the first 8
English articles of samples/text/articles_en.jsonl, and a few hand-written edge cases
(whitespace runs, emoji, full-width forms, mixed scripts). add_special_tokens=False.
"""
import json
import pathlib

import tokenizers

ROOT = pathlib.Path(__file__).resolve().parents[2]


def texts():
    out = []
    with open(ROOT / "samples/text/cmrc2018_zh.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= 12:
                break
            out.append(json.loads(line)["text"])
    with open(ROOT / "samples/text/articles_en.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= 8:
                break
            out.append(json.loads(line)["text"])
    out += [
        "  多个 空格\n\n换行\tTab 😀 ﬁ",
        "ＡＢＣ１２３，全角字符。繁體中文與简体中文混排。",
        "价格：¥1,299.00（含税）— 限时 3 天！http://example.com/路径?q=中文",
        "",
    ]
    return out


def main():
    for name in ["qwen2", "deepseek-v3"]:
        tok = tokenizers.Tokenizer.from_file(str(ROOT / f"samples/tokenizers/{name}/tokenizer.json"))
        rows = [
            {"text": t, "ids": tok.encode(t, add_special_tokens=False).ids}
            for t in texts()
        ]
        dst = ROOT / f"tests/golden/tokenizer_parity/{name}.json"
        dst.write_text(
            json.dumps({"tokenizers_version": tokenizers.__version__, "cases": rows}, ensure_ascii=False, indent=0) + "\n",
            encoding="utf-8",
        )
        print(f"wrote {dst} ({len(rows)} cases)")


if __name__ == "__main__":
    main()
