#!/usr/bin/env python3
"""Reference probabilities from the OFFICIAL fastText for the classifier parity test.

Regenerate (from the repo root):
    python3 -m venv /tmp/venv-ft && /tmp/venv-ft/bin/pip install fasttext-wheel==0.9.2 "numpy<2" jieba
    cargo run -- classifier preprocess tests/golden/classifier_parity/cases.jsonl \
        > tests/golden/classifier_parity/lines.jsonl    # (or: UPDATE_GOLDEN=1 cargo test classifier::parity)
    /tmp/venv-ft/bin/python tests/golden/classifier_parity/reference.py  # writes expected.json

lines.jsonl holds the preprocessed lines the stage feeds fastText (built from cases.jsonl by
the stage's own preprocessing; the Rust test checks they are still what the stage builds). This script:
  * trains the small official-fastText models below (only if missing; they are committed):
    softmax, hierarchical softmax and one-vs-all (.bin and quantized .ftz, with and without a
    quantized output matrix), quantized negative sampling, softmax with character n-grams;
    trained on samples/ (positives cmrc2018, negatives zh_negatives.jsonl);
  * writes expected.json: for every model and line, fastText's predict(line, k=-1) as
    {label: prob}. The shipped samples/models/zh_quality.ftz (trained by sluice) is included.
"""
import json, os, sys
import fasttext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))

OFFICIAL = {
    # name: (loss, quantize, extra training / quantization options)
    "official_hs": ("hs", False, {}),
    "official_hs_q": ("hs", True, {}),
    "official_ns_q": ("ns", True, {}),
    "official_ova": ("ova", False, {}),
    "official_softmax_q": ("softmax", True, {}),
    # (minCount 3 keeps these dense files small)
    "official_softmax": ("softmax", False, {"minCount": 3}),
    # character n-grams (subword rows for known and unknown words)
    "official_softmax_subwords": ("softmax", False, {"minCount": 3, "minn": 2, "maxn": 4}),
    # quantized output matrix too (-qout); fastText needs >= 256 output rows for that, so these
    # two are trained on the same texts with 300 synthetic labels (line number % 300): a
    # meaningless classifier, but the arithmetic of every path is what parity checks
    "official_hs_qout": ("hs", True, {"qout": True, "labels300": True}),
    "official_ova_qout": ("ova", True, {"qout": True, "labels300": True}),
}


def write_train(path, labels300=False):
    """fastText-format training file from samples/ (jieba tokens; any tokenisation would do,
    parity only needs both sides to see the same test lines)."""
    import jieba
    pos = os.environ.get("POSITIVES", os.path.join(ROOT, "samples", "text", "cmrc2018_zh.jsonl"))
    neg = os.path.join(ROOT, "samples", "classifier", "zh_negatives.jsonl")
    with open(path, "w", encoding="utf-8") as w:
        n = 0
        for src, label in ((pos, "hq"), (neg, "lq")):
            for l in open(src, encoding="utf-8"):
                toks = [t.strip().lower() for t in jieba.cut(json.loads(l)["text"])]
                if labels300:
                    label = "c%d" % (n % 300)
                n += 1
                w.write("__label__" + label + " " + " ".join(t for t in toks if t) + "\n")


def train_official():
    train = "/tmp/classifier_parity_train.txt"
    write_train(train)
    train300 = "/tmp/classifier_parity_train300.txt"
    write_train(train300, labels300=True)
    for name, (loss, quant, extra) in OFFICIAL.items():
        path = os.path.join(HERE, name + (".ftz" if quant else ".bin"))
        if os.path.exists(path):
            continue
        extra = dict(extra)
        qout = extra.pop("qout", False)
        data = train300 if extra.pop("labels300", False) else train
        opts = dict(input=data, loss=loss, dim=8, epoch=5, lr=0.5, wordNgrams=2, minCount=1,
                    bucket=2000, thread=1, seed=1, verbose=0)
        opts.update(extra)
        m = fasttext.train_supervised(**opts)
        if quant:
            m.quantize(input=data, cutoff=1000, qnorm=True, qout=qout, retrain=False)
        m.save_model(path)
        print("trained", path, os.path.getsize(path), file=sys.stderr)


def main():
    train_official()
    lines = [json.loads(l) for l in open(os.path.join(HERE, "lines.jsonl"), encoding="utf-8")]
    models = {"zh_quality": os.path.join(ROOT, "samples", "models", "zh_quality.ftz")}
    for name, (_, quant, _) in OFFICIAL.items():
        models[name] = os.path.join(HERE, name + (".ftz" if quant else ".bin"))
    out = {"fasttext": "fasttext-wheel " + getattr(fasttext, "__version__", "0.9.2"), "models": {}}
    for name, path in models.items():
        m = fasttext.load_model(path)
        rows = []
        for rec in lines:
            labels, probs = m.predict(rec["line"], k=-1, threshold=0.0)
            rows.append({"id": rec["id"], "probs": {l: float(p) for l, p in zip(labels, probs)}})
        out["models"][name] = {"path": os.path.relpath(path, ROOT), "predictions": rows}
    # one prediction row per line (the 300-label models would make an indented file huge)
    with open(os.path.join(HERE, "expected.json"), "w", encoding="utf-8") as f:
        f.write('{"fasttext": %s, "models": {\n' % json.dumps(out["fasttext"]))
        names = sorted(out["models"])
        for i, name in enumerate(names):
            m = out["models"][name]
            f.write(' %s: {"path": %s, "predictions": [\n' % (json.dumps(name), json.dumps(m["path"])))
            rows = [json.dumps(r, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
                    for r in m["predictions"]]
            f.write(",\n".join("  " + r for r in rows))
            f.write("\n ]}%s\n" % ("," if i + 1 < len(names) else ""))
        f.write("}}\n")


if __name__ == "__main__":
    main()
