#!/usr/bin/env python3
"""Score near-duplicate detection on a dev set made by benches/zh_neardup_gen.py.

Usage (from the repo root):
    # sluice at its defaults (a config with only `kind: minhash_dedup` and its input):
    python3 benches/zh_neardup_score.py --data /tmp/zh-neardup-s1 --system sluice \
        --sluice-bin target/release/sluice
    # sluice with overrides of the dedup node (YAML values), e.g. the old defaults:
    python3 benches/zh_neardup_score.py --data DIR --system sluice --set threshold=0.7
    # peers (in a venv with `pip install datatrove rensa regex tokenizers`):
    /tmp/venv/bin/python benches/zh_neardup_score.py --data DIR --system datatrove
    /tmp/venv/bin/python benches/zh_neardup_score.py --data DIR --system rensa

Systems:
  * `sluice`: `sluice run` of ingest_jsonl -> minhash_dedup -> parquet_shards; a rejected
    document's cluster is its `meta.duplicate_of`. CPU time = the child's user + system time
    (the whole run: ingest, dedup, parquet writing).
  * `datatrove`: its four-step MinHash (signature, buckets, cluster) with its default
    MinhashConfig (14 buckets x 8 hashes, 5-grams) but CHARACTER 5-gram shingles (the same
    characters sluice shingles); clusters from `save_cluster_id`. CPU = process time.
  * `rensa`: RMinHash (128 perms) on the same character 5-grams, RMinHashLSH at
    `--rensa-threshold` (default 0.5) with 32 bands, online: every earlier indexed document
    whose estimated Jaccard passes the threshold joins the document's cluster (union-find).
    CPU = process time of the whole loop: Python shingling (the set of character 5-gram
    strings, unsorted), RMinHash.update, the LSH query and insert, the Jaccard checks. The
    documents are loaded before timing (sluice's time includes its JSON parsing, Parquet
    writing and process start).

Scoring (pairs). Planted pairs are (base, copy) for every planted copy; a pair is IN SCOPE
when its true character-5-gram Jaccard is >= 0.5 (the target of the defaults). Predicted
pairs are the pairs in the same predicted cluster of which at least one document was
removed (a cluster that a later document bridged can keep two documents: that pair was not
deduplicated). sluice's clusters are the components of the edges from each removed
document to its `duplicate_of` and its `matched` document (both in the reject detail).
  * TP: in-scope planted pairs predicted; FN: in-scope planted pairs not predicted;
  * FP: predicted pairs of documents from different families;
  * predicted pairs within one family that are not in-scope planted pairs (copy-copy, or a
    copy below 0.5) count neither way; recall below 0.5 is reported separately.
Per Jaccard bucket: TP and FN by the planted pair's Jaccard, FP by the predicted pair's
exact Jaccard (computed here). Output: Markdown tables; `--json FILE` also writes them,
and `zh_neardup_score.py --compare A.json B.json ...` prints several runs side by side.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in benches/
sys.path.insert(0, str(Path(__file__).resolve().parent))
from zh_neardup_gen import BUCKETS, bucket_name, grams, norm_chars  # noqa: E402


def load(data):
    docs = [json.loads(l) for l in open(Path(data) / "docs.jsonl", encoding="utf-8")]
    truth = {t["id"]: t for t in (json.loads(l) for l in open(Path(data) / "truth.jsonl", encoding="utf-8"))}
    return docs, truth


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_sluice(docs, data, args):
    import pyarrow.parquet as pq

    tmp = Path(tempfile.mkdtemp(prefix="zhnd-sluice-"))
    sets = "".join(f"    {s.split('=', 1)[0]}: {s.split('=', 1)[1]}\n" for s in args.set)
    yaml = (
        "run:\n  batch_size: 256\nnodes:\n  docs:\n    kind: ingest_jsonl\n"
        f"    paths: [{(Path(data) / 'docs.jsonl').resolve()}]\n    id_field: id\n"
        "  near_dups:\n    kind: minhash_dedup\n    inputs: [docs]\n"
        f"{sets}"
        "  shards:\n    kind: parquet_shards\n    inputs: [near_dups]\n"
    )
    (tmp / "cfg.yaml").write_text(yaml)
    cmd = [args.sluice_bin, "run", str(tmp / "cfg.yaml"), "--out", str(tmp / "out"), "--no-progress"]
    if args.local_tasks:
        cmd += ["--local-tasks", str(args.local_tasks)]
    c0, t0 = child_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    cpu, wall = child_cpu() - c0, time.perf_counter() - t0
    uf = UnionFind()
    removed = set()
    for f in sorted((tmp / "out" / "rejects").glob("**/*.parquet")):
        t = pq.read_table(f).to_pylist()
        for row in t:
            if row.get("reason") != "near_duplicate":
                continue
            did = row["id"].split(":", 1)[1]
            removed.add(did)
            # Edges to the kept root and to the matched document: a later document can
            # bridge two clusters that each keep a document.
            for kv in row["detail"].split():
                k, _, v = kv.partition("=")
                if k in ("duplicate_of", "matched"):
                    uf.union(did, v.split(":", 1)[1])
    cluster = {d["id"]: uf.find(d["id"]) for d in docs}
    stats = json.loads((tmp / "out" / "stats.json").read_text())
    extra = stats.get("nodes", {}).get("near_dups", {}).get("extra", {})
    info = {k: extra.get(k) for k in ("bands", "rows", "threshold", "state_bytes_per_doc")}
    return cluster, removed, cpu, wall, info


class UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def char_shingles(text, n=5):
    return sorted(grams(text, n))


def run_datatrove(docs, args):
    import numpy as np
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupSignature,
    )

    import datatrove.pipeline.dedup.minhash as dm

    # Character shingles need no word tokenizer (the English default would need spaCy).
    dm.load_word_tokenizer = lambda _lang: None

    class CharSignature(MinhashDedupSignature):
        def get_shingles(self, text):
            return np.fromiter((self._hash_func(g.encode()) for g in char_shingles(text)), dtype=np.uint64).reshape((-1, 1))

    cfg = MinhashConfig()
    tmp = Path(tempfile.mkdtemp(prefix="zhnd-datatrove-"))
    c0, t0 = time.process_time(), time.perf_counter()
    sig = CharSignature(output_folder=str(tmp / "sigs"), config=cfg)
    r = sig.run(iter(Document(text=d["text"], id=d["id"]) for d in docs), 0, 1)
    if r is not None:
        for _ in r:
            pass
    for b in range(cfg.num_buckets):
        r = MinhashDedupBuckets(input_folder=str(tmp / "sigs"), output_folder=str(tmp / "buckets"), config=cfg).run(
            None, b, cfg.num_buckets
        )
        if r is not None:
            for _ in r:
                pass
    r = MinhashDedupCluster(
        input_folder=str(tmp / "buckets"), output_folder=str(tmp / "remove"), config=cfg, save_cluster_id=True
    ).run(None, 0, 1)
    if r is not None:
        for _ in r:
            pass
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    cluster = {d["id"]: d["id"] for d in docs}
    f = tmp / "remove" / "000000.clusters"
    if f.exists():
        raw = np.fromfile(f, dtype="<u4").reshape(-1, 2)
        root = {}
        for idx, cid in raw:
            root.setdefault(int(cid), docs[int(idx)]["id"])
            cluster[docs[int(idx)]["id"]] = root[int(cid)]
    removed = set()
    f = tmp / "remove" / "000000.remove"
    if f.exists():
        removed = {docs[int(i)]["id"] for i in np.fromfile(f, dtype="<u4")}
    info = {"bands": cfg.num_buckets, "rows": cfg.hashes_per_bucket}
    return cluster, removed, cpu, wall, info


def run_rensa(docs, args):
    from rensa import RMinHash, RMinHashLSH

    c0, t0 = time.process_time(), time.perf_counter()
    lsh = RMinHashLSH(threshold=args.rensa_threshold, num_perm=128, num_bands=32)
    mh = []
    parent = list(range(len(docs)))
    removed = set()

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, d in enumerate(docs):
        m = RMinHash(num_perm=128, seed=1)
        # A MinHash does not depend on the order of its input: the set goes in unsorted
        # (sorting it, as this bench did before, added ~30 % to rensa's time).
        m.update(sorted(grams(d["text"])) if args.rensa_sorted else list(grams(d["text"])))
        for j in lsh.query(m):
            if m.jaccard(mh[j]) >= args.rensa_threshold:
                removed.add(d["id"])
                a, b = find(i), find(j)
                parent[max(a, b)] = min(a, b)
        lsh.insert(i, m)
        mh.append(m)
    cluster = {d["id"]: docs[find(i)]["id"] for i, d in enumerate(docs)}
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return cluster, removed, cpu, wall, {"bands": 32, "rows": 4, "threshold": args.rensa_threshold}


def jaccard(a, b):
    ga, gb = grams(a), grams(b)
    u = len(ga | gb)
    return len(ga & gb) / u if u else 1.0


def score(docs, truth, cluster, removed):
    text = {d["id"]: d["text"] for d in docs}
    fam = {i: t["family"] for i, t in truth.items()}
    base = {t["family"]: i for i, t in truth.items() if t["role"] == "base"}
    members = {}
    for i, c in cluster.items():
        members.setdefault(c, []).append(i)
    pred = set()
    for m in members.values():
        m.sort()
        for a in range(len(m)):
            for b in range(a + 1, len(m)):
                if m[a] in removed or m[b] in removed:
                    pred.add((m[a], m[b]))
    planted = {}
    for i, t in truth.items():
        if t["role"] == "copy":
            planted[tuple(sorted((base[t["family"]], i)))] = t
    names = [bucket_name((lo + hi) / 2) for lo, hi in BUCKETS]
    rows = {n: {"tp": 0, "fn": 0, "fp": 0} for n in names}
    recipes = {}
    missed = []
    for p, t in planted.items():
        b = bucket_name(t["jaccard"])
        hit = p in pred
        rows[b]["tp" if hit else "fn"] += 1
        if not hit and t["jaccard"] >= 0.5:
            missed.append((p[0], p[1], t["recipe"], t["strength"], t["jaccard"]))
        r = recipes.setdefault(t["recipe"], {"in_tp": 0, "in_n": 0, "out_tp": 0, "out_n": 0})
        k = "in" if t["jaccard"] >= 0.5 else "out"
        r[f"{k}_n"] += 1
        r[f"{k}_tp"] += hit
    fps = []
    for a, b in pred:
        if fam[a] != fam[b]:
            j = jaccard(text[a], text[b])
            rows[bucket_name(j)]["fp"] += 1
            fps.append((a, b, round(j, 3)))
    scope = [n for n in names if not n.startswith("0.0")]
    tp = sum(rows[n]["tp"] for n in scope)
    fn = sum(rows[n]["fn"] for n in scope)
    fp = sum(rows[n]["fp"] for n in names)
    prf = lambda tp, fp, fn: (  # noqa: E731
        tp / (tp + fp) if tp + fp else 1.0,
        tp / (tp + fn) if tp + fn else 1.0,
    )
    p, r = prf(tp, fp, fn)
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {
        "precision": p,
        "recall": r,
        "f1": f1,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "buckets": rows,
        "recipes": recipes,
        "false_positives": fps[:20],
        "missed": sorted(missed, key=lambda m: -m[4]),
    }


def compare(paths):
    """Side-by-side Markdown tables of several `--json` results."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    head = "| | " + " | ".join(r["label"] for r in runs) + " |"
    sep = "|---" * (len(runs) + 1) + "|"
    print(head + "\n" + sep)
    for key, fmt in (("precision", "{:.3f}"), ("recall", "{:.3f}"), ("f1", "{:.3f}")):
        print(f"| {key} (J >= 0.5) | " + " | ".join(fmt.format(r[key]) for r in runs) + " |")
    print("| TP / FP / FN | " + " | ".join(f"{r['tp']} / {r['fp']} / {r['fn']}" for r in runs) + " |")
    print("| docs per CPU-second | " + " | ".join(f"{r['docs_per_cpu_s']:,.0f}" for r in runs) + " |")
    print("\nRecall per true character-5-gram Jaccard of the planted pair (found / pairs):\n")
    print(head.replace("| |", "| true Jaccard |", 1) + "\n" + sep)
    for b in runs[0]["buckets"]:
        cells = []
        for r in runs:
            x = r["buckets"][b]
            n = x["tp"] + x["fn"]
            cells.append(f"{x['tp'] / n:.3f} ({x['tp']}/{n})" if n else "-")
        note = " (below scope)" if b.startswith("0.0") else ""
        print(f"| {b}{note} | " + " | ".join(cells) + " |")
    print("\nRecall per edit recipe, pairs with J >= 0.5 (found / pairs):\n")
    print(head.replace("| |", "| recipe |", 1) + "\n" + sep)
    for k in sorted(runs[0]["recipes"]):
        cells = []
        for r in runs:
            x = r["recipes"].get(k, {"in_tp": 0, "in_n": 0})
            cells.append(f"{x['in_tp'] / x['in_n']:.3f} ({x['in_tp']}/{x['in_n']})" if x["in_n"] else "-")
        print(f"| {k} | " + " | ".join(cells) + " |")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--compare":
        return compare(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a directory written by zh_neardup_gen.py")
    ap.add_argument("--system", choices=["sluice", "datatrove", "rensa"], default="sluice")
    ap.add_argument("--sluice-bin", default=os.environ.get("SLUICE_BIN", "target/release/sluice"))
    ap.add_argument("--set", action="append", default=[], help="KEY=YAML override of the dedup node")
    ap.add_argument("--local-tasks", type=int, default=0, help="sluice --local-tasks N (with --set mode=distributed)")
    ap.add_argument("--rensa-threshold", type=float, default=0.5)
    ap.add_argument("--rensa-sorted", action="store_true",
                    help="sort rensa's shingle list first (the old harness; slower, same result)")
    ap.add_argument("--label", default="")
    ap.add_argument("--speed-only", action="store_true", help="time the system, skip the scoring")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    docs, truth = load(args.data)
    if args.system == "sluice":
        cluster, removed, cpu, wall, info = run_sluice(docs, args.data, args)
    elif args.system == "datatrove":
        cluster, removed, cpu, wall, info = run_datatrove(docs, args)
    else:
        cluster, removed, cpu, wall, info = run_rensa(docs, args)
    if args.speed_only:
        print(f"{args.label or args.system}: {len(docs)} docs, {cpu:.2f} CPU-s, {wall:.2f} s wall, "
              f"{len(docs) / cpu:,.0f} docs per CPU-second, {len(removed)} removed; {info}")
        return
    s = score(docs, truth, cluster, removed)
    s.update(
        system=args.system,
        label=args.label or args.system + (" " + " ".join(args.set) if args.set else ""),
        docs=len(docs),
        cpu_s=cpu,
        wall_s=wall,
        docs_per_cpu_s=len(docs) / cpu if cpu else None,
        info=info,
    )
    print(f"\n### {s['label']} on {args.data} ({len(docs)} docs; {info})\n")
    print("| precision | recall (J >= 0.5) | F1 | TP / FP / FN | docs per CPU-second |")
    print("|---|---|---|---|---|")
    print(
        f"| {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['tp']} / {s['fp']} / {s['fn']} | {s['docs_per_cpu_s']:,.0f} |"
    )
    print("\n| true Jaccard | planted pairs | recall | precision | F1 | TP / FP / FN |")
    print("|---|---|---|---|---|---|")
    for n, r in s["buckets"].items():
        tot = r["tp"] + r["fn"]
        rec = r["tp"] / tot if tot else float("nan")
        pre = r["tp"] / (r["tp"] + r["fp"]) if r["tp"] + r["fp"] else float("nan")
        f1 = 2 * pre * rec / (pre + rec) if tot and r["tp"] else 0.0
        note = " (out of scope)" if n.startswith("0.0") else ""
        print(f"| {n}{note} | {tot} | {rec:.3f} | {pre:.3f} | {f1:.3f} | {r['tp']} / {r['fp']} / {r['fn']} |")
    print("\n| recipe | recall, J >= 0.5 | found / pairs | found / pairs below 0.5 |")
    print("|---|---|---|---|")
    for k, r in sorted(s["recipes"].items()):
        rec = r["in_tp"] / r["in_n"] if r["in_n"] else float("nan")
        print(f"| {k} | {rec:.3f} | {r['in_tp']} / {r['in_n']} | {r['out_tp']} / {r['out_n']} |")
    if s["false_positives"]:
        print("\nfalse positives (first 20):", s["false_positives"])
    if args.json:
        Path(args.json).write_text(json.dumps(s, indent=1) + "\n")


if __name__ == "__main__":
    main()
