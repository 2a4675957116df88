#!/usr/bin/env python3
"""Score sluice's `extract_html` against trafilatura on the 58 gold pages of the
magic-html Chinese benchmark (../shared/data/html-magic-html-bench-zh), in one run.

Metric (per page, then averaged over pages = macro average):
  Remove all whitespace from the extracted text and the gold text, take the multiset of
  character bigrams of each (B_pred, B_gold), and
    P = |B_pred ∩ B_gold| / |B_pred|,  R = |B_pred ∩ B_gold| / |B_gold|,  F1 = 2PR/(P+R)
  where ∩ is multiset intersection (min of counts). Empty prediction: P = R = F1 = 0.
  Character bigrams suit Chinese (no word boundaries) and reward both content and order
  locally; whitespace is ignored so formatting choices (line breaks) do not matter.

Speed: pages per second on one core, extraction only, on the same decoded strings
(sluice: release build, N repeated passes; trafilatura: `trafilatura.extract(html)` with
default settings, N passes). Both single-threaded.

Usage (from the repo root):
  python3 -m venv /tmp/venv-warc && /tmp/venv-warc/bin/pip install trafilatura
  CARGO_TARGET_DIR=target-rel cargo build --release --bench extract_html   # or cargo bench
  /tmp/venv-warc/bin/python benches/extract_eval.py [--data ../shared/data/html-magic-html-bench-zh]
"""
import argparse, collections, glob, json, os, subprocess, sys, time, tempfile


def bigrams(s):
    s = "".join(s.split())
    return collections.Counter(s[i:i + 2] for i in range(len(s) - 1))


def prf(pred, gold):
    bp, bg = bigrams(pred), bigrams(gold)
    inter = sum((bp & bg).values())
    p = inter / sum(bp.values()) if bp else 0.0
    r = inter / sum(bg.values()) if bg else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def find_bench_binary(root):
    cands = glob.glob(os.path.join(root, "target-rel/release/deps/extract_html-*")) + glob.glob(
        os.path.join(root, "target/release/deps/extract_html-*"))
    cands = [c for c in cands if os.access(c, os.X_OK) and not c.endswith(".d")]
    if not cands:
        sys.exit("build first: CARGO_TARGET_DIR=target-rel cargo build --release --bench extract_html")
    return max(cands, key=os.path.getmtime)


def main():
    ap = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data", "html-magic-html-bench-zh"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--traf-repeat", type=int, default=1)
    ap.add_argument("--json", help="write per-page scores here")
    a = ap.parse_args()
    import trafilatura

    dirs = [os.path.join(a.data, d) for d in ("article", "forum")]
    gold = {}
    for d in dirs:
        for k, v in json.load(open(os.path.join(d, "gold.json"), encoding="utf-8")).items():
            gold[k] = v["content"]
    # sluice
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    subprocess.run([find_bench_binary(root), *dirs, "--out", out, "--repeat", str(a.repeat)], check=True)
    sl = json.load(open(out, encoding="utf-8"))
    pages = sl["pages"]
    keys = sorted(k for k in pages if k in gold)
    # trafilatura gets the same decoded strings sluice extracted from.
    # (decode with Python: sluice's decoder was used for sluice; the pages are UTF-8 or
    # declare their charset, and trafilatura decodes bytes itself when given bytes.)
    raw = {}
    for d in dirs:
        for f in glob.glob(os.path.join(d, "*.html")):
            k = os.path.splitext(os.path.basename(f))[0]
            raw[k] = open(f, "rb").read()
    traf = {}
    for k in keys:
        traf[k] = trafilatura.extract(raw[k]) or ""
    # timing on decoded strings
    strs = {k: trafilatura.utils.decode_file(raw[k]) if hasattr(trafilatura.utils, "decode_file") else raw[k].decode("utf-8", "replace") for k in keys}
    t = time.perf_counter()
    for _ in range(a.traf_repeat):
        for k in keys:
            trafilatura.extract(strs[k])
    traf_secs = time.perf_counter() - t
    rows = []
    tot = {"sluice": [0, 0, 0], "trafilatura": [0, 0, 0]}
    for k in keys:
        s = prf(pages[k], gold[k])
        tr = prf(traf[k], gold[k])
        rows.append({"page": k, "sluice": s, "trafilatura": tr})
        for i in range(3):
            tot["sluice"][i] += s[i]
            tot["trafilatura"][i] += tr[i]
    n = len(keys)
    sl_pps = sl["n"] * sl["repeat"] / sl["secs"]
    tr_pps = n * a.traf_repeat / traf_secs
    print(f"pages scored: {n}")
    print(f"{'extractor':<12} {'P':>6} {'R':>6} {'F1':>6} {'pages/s/core':>13}")
    for name, pps in (("sluice", sl_pps), ("trafilatura", tr_pps)):
        p, r, f = (x / n for x in tot[name])
        print(f"{name:<12} {p:6.3f} {r:6.3f} {f:6.3f} {pps:13.1f}")
    print(f"speed ratio sluice/trafilatura: {sl_pps / tr_pps:.1f}x  (trafilatura {trafilatura.__version__})")
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
