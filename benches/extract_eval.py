#!/usr/bin/env python3
"""Score sluice's `extract_html` (optionally against trafilatura) on the 58 gold pages of the
magic-html Chinese benchmark (../shared/data/html-magic-html-bench-zh), in one run.

Metric (per page, then averaged over pages = macro average):
  Remove all whitespace from the extracted text and the gold text, take the multiset of
  character bigrams of each (B_pred, B_gold), and
    P = |B_pred ∩ B_gold| / |B_pred|,  R = |B_pred ∩ B_gold| / |B_gold|,  F1 = 2PR/(P+R)
  where ∩ is multiset intersection (min of counts). Empty prediction: P = R = F1 = 0.
  Character bigrams suit Chinese (no word boundaries) and reward both content and order
  locally; whitespace is ignored so formatting choices (line breaks) do not matter.

Tables: all pages, by page type (the dataset's `article/` and `forum/` folders), and by
split. The split guards against overfitting: pages whose sha256 file name starts with
0-7 are the *dev* half (rules were tuned looking at these), 8-f the *holdout* half (only
scored, never inspected while developing).

Speed: pages per CPU-second on one thread, extraction only, on decoded strings (decoding is
untimed): sluice's release build (`--repeat` passes, thread CPU time from
/proc/thread-self/schedstat); trafilatura (`--peer`): `trafilatura.extract(html)` with default
settings, process CPU time.

Usage (from the repo root):
  cargo build --release --manifest-path benches/standalone/Cargo.toml
  python3 benches/extract_eval.py [--data ../shared/data/html-magic-html-bench-zh] [--json per_page.json]
  # with the peer:
  python3 -m venv /tmp/venv-warc && /tmp/venv-warc/bin/pip install trafilatura lxml_html_clean
  /tmp/venv-warc/bin/python benches/extract_eval.py --peer
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
    cands = glob.glob(os.path.join(root, "benches/standalone/target/release/extract_html")) + glob.glob(
        os.path.join(root, "target-rel/release/deps/extract_html-*")) + glob.glob(
        os.path.join(root, "target/release/deps/extract_html-*"))
    cands = [c for c in cands if os.access(c, os.X_OK) and not c.endswith(".d")]
    if not cands:
        sys.exit("build first: cargo build --release --manifest-path benches/standalone/Cargo.toml")
    return max(cands, key=os.path.getmtime)


def split_of(key):
    return "dev" if int(key[0], 16) < 8 else "holdout"


def main():
    ap = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--data", default=os.environ.get("SLUICE_DATA", os.path.join(root, "..", "shared", "data")) + "/html-magic-html-bench-zh")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--peer", action="store_true", help="also run trafilatura")
    ap.add_argument("--traf-repeat", type=int, default=1)
    ap.add_argument("--json", help="write per-page scores here")
    ap.add_argument("--texts", help="write sluice's extracted texts here (JSON)")
    a = ap.parse_args()

    types = ("article", "forum")
    dirs = [os.path.join(a.data, d) for d in types]
    gold, ptype = {}, {}
    for t, d in zip(types, dirs):
        for k, v in json.load(open(os.path.join(d, "gold.json"), encoding="utf-8")).items():
            gold[k] = v["content"]
            ptype[k] = t
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    subprocess.run([find_bench_binary(root), *dirs, "--out", out, "--repeat", str(a.repeat)], check=True)
    sl = json.load(open(out, encoding="utf-8"))
    os.unlink(out)
    pages = sl["pages"]
    keys = sorted(k for k in pages if k in gold)
    if a.texts:
        json.dump({k: pages[k] for k in keys}, open(a.texts, "w"), ensure_ascii=False, indent=1)
    tools = {"sluice": pages}
    speeds = {"sluice": sl["n"] * sl["repeat"] / sl["cpu_secs"]}
    if a.peer:
        import trafilatura
        raw = {}
        for d in dirs:
            for f in glob.glob(os.path.join(d, "*.html")):
                raw[os.path.splitext(os.path.basename(f))[0]] = open(f, "rb").read()
        # trafilatura decodes the bytes with its own decoder (not timed), then extracts (timed).
        strs = {k: trafilatura.utils.decode_file(raw[k]) for k in keys}
        traf = {}
        t = time.process_time()
        for rep in range(a.traf_repeat):
            for k in keys:
                r = trafilatura.extract(strs[k]) or ""
                if rep == 0:
                    traf[k] = r
        speeds["trafilatura"] = len(keys) * a.traf_repeat / (time.process_time() - t)
        tools["trafilatura"] = traf
    scores = {name: {k: prf(txt.get(k, ""), gold[k]) for k in keys} for name, txt in tools.items()}

    groups = [("all", keys)]
    groups += [(t, [k for k in keys if ptype[k] == t]) for t in types]
    groups += [(s, [k for k in keys if split_of(k) == s]) for s in ("dev", "holdout")]
    groups += [(f"{t}/{s}", [k for k in keys if ptype[k] == t and split_of(k) == s]) for t in types for s in ("dev", "holdout")]
    print(f"| pages | n | " + " | ".join(f"{name} P | {name} R | {name} F1" for name in tools) + " |")
    print("|---|---:|" + "---:|" * (3 * len(tools)))
    for g, ks in groups:
        cells = []
        for name in tools:
            for i in range(3):
                cells.append(f"{sum(scores[name][k][i] for k in ks) / max(len(ks), 1):.3f}")
        print(f"| {g} | {len(ks)} | " + " | ".join(cells) + " |")
    print()
    for name, pps in speeds.items():
        print(f"{name}: {pps:.0f} pages per CPU-second (single thread, extraction only)")
    if a.peer:
        print(f"speed ratio sluice/trafilatura: {speeds['sluice'] / speeds['trafilatura']:.1f}x  (trafilatura {trafilatura.__version__})")
    if a.json:
        rows = [{"page": k, "type": ptype[k], "split": split_of(k), **{n: scores[n][k] for n in tools}} for k in keys]
        json.dump(rows, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
