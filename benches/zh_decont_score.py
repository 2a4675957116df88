#!/usr/bin/env python3
"""Score `decontaminate` on a dev set made by zh_decont_gen.py.

Runs `sluice run` on a pipeline ingest_jsonl(DEV) -> decontaminate -> parquet_shards,
with the GAOKAO MCQ and GSM8K test benchmarks, then reads the run's rejects and reports:

* strict precision: near-misses that are flagged count as false positives;
* recall by layout (and for mixed-script subjects: Math, Physics, Chemistry);
* false-positive rate per near-miss kind (half, topic, clean, gsm8k_half), and the
  highest `decontaminate.coverage` among the kept ones (the margin to `min_coverage`);
* for the new stage, the share of flagged positives whose detail names the planted item.

`--legacy` writes the config main's stage accepts (no `id_field`), to score the old
stage with its defaults. `--set key=value` adds a top-level decontaminate key (YAML
value), e.g. `--set min_coverage=0.7`. Prints Markdown tables; `--json` writes the
figures.

usage: zh_decont_score.py DEV.jsonl --sluice target/debug/sluice --run-dir /tmp/run
                          [--gaokao PATH] [--gsm8k PATH] [--legacy] [--set k=v ...]
                          [--json OUT.json] [--label NAME]
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time

import pyarrow.parquet as pq

LAYOUTS = ["published", "inline", "exam", "qa", "fullwidth", "halfwidth", "spaces", "gsm8k"]
NEAR = ["half", "topic", "clean", "gsm8k_half"]
MIXED = {"Math_I_MCQs", "Physics_MCQs", "Chemistry_MCQs"}


def config(dev, gaokao, gsm8k, legacy, sets):
    idf = "" if legacy else "\n        id_field: id"
    extra = "".join(f"\n    {k}: {v}" for k, v in sets)
    return f"""nodes:
  dev:
    kind: ingest_jsonl
    paths: [{os.path.abspath(dev)}]
    id_field: id
  decont:
    kind: decontaminate
    inputs: [dev]
    benchmarks:
      - name: gaokao_zh
        paths: [{os.path.abspath(gaokao)}]
        fields: [question]{idf}
      - name: gsm8k
        paths: [{os.path.abspath(gsm8k)}]
        fields: [question]{extra}
  shards:
    kind: parquet_shards
    inputs: [decont]
"""


def rejects(run_dir):
    out = {}
    for f in sorted(glob.glob(os.path.join(run_dir, "rejects", "*.parquet"))):
        t = pq.read_table(f).to_pylist()
        for r in t:
            if r.get("reason") == "contaminated":
                # ingest_jsonl prefixes ids with the source name (`dev:`).
                out[r["id"].split(":", 1)[-1]] = r.get("detail") or ""
    return out


def coverages(run_dir):
    """`decontaminate.coverage` of every kept document (0 when absent)."""
    out = {}
    for f in sorted(glob.glob(os.path.join(run_dir, "shards", "*.parquet"))):
        for r in pq.read_table(f, columns=["id", "attrs"]).to_pylist():
            a = r["attrs"]
            a = json.loads(a) if isinstance(a, str) else dict(a or {})
            out[r["id"].split(":", 1)[-1]] = a.get("decontaminate.coverage", 0.0)
    return out


def pct(a, b):
    return f"{100.0 * a / b:.1f}%" if b else "n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dev")
    ap.add_argument("--sluice", required=True, help="sluice binary")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--gaokao", default="samples/benchmarks/gaokao_mcq_zh.jsonl")
    ap.add_argument("--gsm8k", default="samples/benchmarks/gsm8k_test.jsonl")
    ap.add_argument("--legacy", action="store_true", help="config for main's stage (no id_field)")
    ap.add_argument("--set", action="append", default=[], help="extra decontaminate key=value")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    sets = [s.split("=", 1) for s in args.set]
    os.makedirs(args.run_dir, exist_ok=True)
    cfg_path = os.path.join(args.run_dir, "pipeline.yaml")
    with open(cfg_path, "w", encoding="utf-8") as f:
        f.write(config(args.dev, args.gaokao, args.gsm8k, args.legacy, sets))
    out_dir = os.path.join(args.run_dir, "out")
    t0 = time.time()
    subprocess.run([args.sluice, "-q", "run", cfg_path, "--out", out_dir, "--overwrite", "--no-progress",
                    "--threads", str(args.threads)], check=True)
    wall = time.time() - t0
    flagged = rejects(out_dir)
    dev = [json.loads(l) for l in open(args.dev, encoding="utf-8") if l.strip()]

    tp = sum(1 for r in dev if r["label"] == 1 and r["id"] in flagged)
    fp = sum(1 for r in dev if r["label"] == 0 and r["id"] in flagged)
    pos = sum(1 for r in dev if r["label"] == 1)
    res = {"label": args.label, "docs": len(dev), "positives": pos, "tp": tp, "fp": fp,
           "precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / pos if pos else 1.0,
           "wall_s": round(wall, 2), "recall_by_layout": {}, "fpr_by_kind": {}}
    for k in LAYOUTS:
        rs = [r for r in dev if r["kind"] == k]
        res["recall_by_layout"][k] = [sum(r["id"] in flagged for r in rs), len(rs)]
    gk = [r for r in dev if r["label"] == 1 and r["bench"] == "gaokao_zh"]
    for name, sel in [("mixed-script subjects", lambda r: r["subject"] in MIXED),
                      ("other subjects", lambda r: r["subject"] not in MIXED)]:
        rs = [r for r in gk if sel(r)]
        res["recall_by_layout"][name] = [sum(r["id"] in flagged for r in rs), len(rs)]
    kept_cov = coverages(out_dir)
    res["max_kept_coverage"] = {}
    for k in NEAR:
        rs = [r for r in dev if r["kind"] == k]
        res["fpr_by_kind"][k] = [sum(r["id"] in flagged for r in rs), len(rs)]
        res["max_kept_coverage"][k] = round(max([kept_cov.get(r["id"], 0.0) for r in rs] or [0.0]), 3)
    named = [r for r in dev if r["label"] == 1 and r["id"] in flagged]
    ok = 0
    for r in named:
        m = re.search(r"\bitem=(\S+)", flagged[r["id"]])
        ok += bool(m) and m.group(1) == r["item"]
    res["item_named"] = [ok, len(named)]

    print(f"## {args.label or args.sluice}: {len(dev)} docs, {pos} positives, run {wall:.1f}s\n")
    print("| strict precision | recall | TP | FP (near-misses included) |")
    print("|---|---|---|---|")
    print(f"| {res['precision']:.4f} | {res['recall']:.4f} | {tp} | {fp} |\n")
    print("| layout | caught | recall |")
    print("|---|---|---|")
    for k, (a, b) in res["recall_by_layout"].items():
        print(f"| {k} | {a}/{b} | {pct(a, b)} |")
    print("\n| near-miss kind | flagged | false-positive rate | max coverage of the kept ones |")
    print("|---|---|---|---|")
    for k, (a, b) in res["fpr_by_kind"].items():
        print(f"| {k} | {a}/{b} | {pct(a, b)} | {res['max_kept_coverage'][k]} |")
    covs = [float(m.group(1)) for r in named for m in [re.search(r"\bcoverage=([0-9.]+)", flagged[r["id"]])] if m]
    res["min_flagged_positive_coverage"] = min(covs) if covs else None
    print(f"\ndetail names the planted item: {ok}/{len(named)}")
    if covs:
        print(f"lowest coverage of a caught positive: {min(covs):.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
