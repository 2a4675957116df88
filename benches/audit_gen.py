#!/usr/bin/env python3
"""Generate a large synthetic sluice run directory for the audit benchmark.

Writes DIR/shards/*.parquet (document shards, >= --shard-gb GB on disk, zstd) and
DIR/rejects/*.parquet (>= --rejects rows), plus a stats.json and manifest.json that agree
with them, following the run-dir schema of the engine. Text is random CJK so that zstd
cannot shrink it away (real shards compress about as badly per character). Seeded:
the same arguments give the same files. Skips work if DIR/.complete exists.

usage: audit_gen.py DIR [--shard-gb 1.0] [--rejects 1200000] [--seed 7]
(e.g. DIR = target/audit-bench/run, under the repo's ignored target/ folder)
"""
import argparse
import hashlib
import json
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SOURCES = ["cc_2024_22", "cc_2024_26", "zh_wiki", "synthetic_qa"]
LANGS = ["zh", "zh", "zh", "en", "ja", None]
STAGES = [("len", ["too_short", "too_long"]), ("langid", ["lang", "low_score"]),
          ("quality", ["low_quality", "bad_words", "boilerplate"]), ("dedup", ["duplicate", "near_duplicate"])]
DOMAINS = [f"site{i}.example.com" for i in range(5000)]


def cjk_block(rng, n):
    cps = rng.integers(0x4E00, 0x9FA5, size=n, dtype=np.uint32)
    return cps.astype("<u4").tobytes().decode("utf-32-le")


def doc_table(rng, base, start, n):
    lens = rng.integers(200, 4000, size=n)
    offs = rng.integers(0, len(base) - 4001, size=n)
    texts = [base[o:o + l] for o, l in zip(offs, lens)]
    ntok = (lens * 0.7).astype(np.uint32)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(ntok, out=offsets[1:])
    values = rng.integers(0, 151643, size=int(offsets[-1]), dtype=np.uint32)
    tokens = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    src = rng.integers(0, len(SOURCES), size=n)
    lang = rng.integers(0, len(LANGS), size=n)
    dom = rng.integers(0, len(DOMAINS), size=n)
    ids = [f"doc/{start + i}" for i in range(n)]
    return pa.table({
        "id": pa.array(ids),
        "source": pa.array([SOURCES[s] for s in src]),
        "text": pa.array(texts),
        "lang": pa.array([LANGS[x] for x in lang]),
        "url": pa.array([f"https://www.{DOMAINS[d]}/p/{start + i}" for i, d in enumerate(dom)]),
        "tokens": tokens,
        "n_tokens": pa.array(ntok, type=pa.uint32()),
        "n_chars": pa.array(lens.astype(np.uint64), type=pa.uint64()),
        "attrs": pa.array([json.dumps({"quality.hq": round(float(q), 4)}) for q in rng.random(n)]),
        "meta": pa.array(["{}"] * n),
    })


def reject_table(rng, base, start, n):
    st = rng.integers(0, len(STAGES), size=n)
    rs = rng.integers(0, 3, size=n)
    offs = rng.integers(0, len(base) - 200, size=n)
    lens = rng.integers(1, 5000, size=n)
    dom = rng.integers(0, len(DOMAINS), size=n)
    stage = [STAGES[s][0] for s in st]
    reason = [STAGES[s][1][r % len(STAGES[s][1])] for s, r in zip(st, rs)]
    return pa.table({
        "id": pa.array([f"rej/{start + i}" for i in range(n)]),
        "source": pa.array([SOURCES[i % len(SOURCES)] for i in range(n)]),
        "stage": pa.array(stage),
        "reason": pa.array(reason),
        "score": pa.array(rng.random(n)),
        "detail": pa.array([""] * n),
        "url": pa.array([f"https://{DOMAINS[d]}/r/{start + i}" for i, d in enumerate(dom)]),
        "n_chars": pa.array(lens.astype(np.uint64), type=pa.uint64()),
        "text_prefix": pa.array([base[o:o + 100] for o in offs]),
        "attrs": pa.array(["{}"] * n),
        "meta": pa.array(["{}"] * n),
    })


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--shard-gb", type=float, default=1.0)
    ap.add_argument("--rejects", type=int, default=1_200_000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    if os.path.exists(os.path.join(a.dir, ".complete")):
        print(f"{a.dir}: already generated")
        return
    rng = np.random.default_rng(a.seed)
    base = cjk_block(rng, 8_000_000)
    os.makedirs(os.path.join(a.dir, "shards"), exist_ok=True)
    os.makedirs(os.path.join(a.dir, "rejects"), exist_ok=True)
    manifest = {"sluice_version": "bench", "config_hash": "bench", "world_size": 1,
                "shards": [], "rejects": [], "totals": {}, "nodes": {}}
    total_bytes, docs, tokens, idx = 0, 0, 0, 0
    per = 40_000
    while total_bytes < a.shard_gb * 1e9:
        t = doc_table(rng, base, docs, per)
        rel = f"shards/shards-r0000-{idx:05}.parquet"
        p = os.path.join(a.dir, rel)
        pq.write_table(t, p, compression="zstd", row_group_size=8192)
        size = os.path.getsize(p)
        ntok = int(pc.sum(t["n_tokens"]).as_py())
        manifest["shards"].append({"path": rel, "node": "shards", "rows": per, "tokens": ntok,
                                   "bytes": size, "sha256": sha256(p)})
        total_bytes += size
        docs += per
        tokens += ntok
        idx += 1
        print(f"shard {idx}: {total_bytes / 1e9:.2f} GB", file=sys.stderr)
    done, idx = 0, 0
    counts = {}
    while done < a.rejects:
        n = min(200_000, a.rejects - done)
        t = reject_table(rng, base, done, n)
        rel = f"rejects/filters-r0000-{idx:05}.parquet"
        p = os.path.join(a.dir, rel)
        pq.write_table(t, p, compression="zstd", row_group_size=65536)
        for s, r in zip(t["stage"].to_pylist(), t["reason"].to_pylist()):
            counts.setdefault(s, {}).setdefault(r, 0)
            counts[s][r] += 1
        manifest["rejects"].append({"path": rel, "node": "filters", "rows": n, "tokens": 0,
                                    "bytes": os.path.getsize(p), "sha256": sha256(p)})
        done += n
        idx += 1
    manifest["totals"] = {"rows": docs, "tokens": tokens, "bytes": total_bytes, "reject_rows": done}
    nodes = {"web": {"kind": "ingest_parquet", "role": "source", "docs_in": 0, "bytes_in": 0,
                     "ports": {"out": {"docs": docs + done, "bytes": 0}}, "rejects": {},
                     "busy_secs": 0.0, "bad_records": {"count": 0, "by_reason": {}, "examples": []},
                     "extra": None}}
    left = docs + done
    for stage, _ in STAGES:
        rej = sum(counts.get(stage, {}).values())
        nodes[stage] = {"kind": stage, "role": "transform", "docs_in": left, "bytes_in": 0,
                        "ports": {"out": {"docs": left - rej, "bytes": 0}, "rejected": {"docs": rej, "bytes": 0}},
                        "rejects": counts.get(stage, {}), "busy_secs": 0.0,
                        "bad_records": {"count": 0, "by_reason": {}, "examples": []}, "extra": None}
        left -= rej
    nodes["shards"] = {"kind": "parquet_shards", "role": "sink", "docs_in": left, "bytes_in": 0,
                       "ports": {}, "rejects": {}, "busy_secs": 0.0,
                       "bad_records": {"count": 0, "by_reason": {}, "examples": []}, "extra": None}
    stats = {"sluice_version": "bench", "config_hash": "bench", "world_size": 1, "wall_secs": 0.0,
             "nodes": nodes}
    with open(os.path.join(a.dir, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1, sort_keys=True)
    with open(os.path.join(a.dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    open(os.path.join(a.dir, ".complete"), "w").close()
    print(f"{a.dir}: {docs} docs in {total_bytes / 1e9:.2f} GB of shards, {done} rejects")


if __name__ == "__main__":
    main()
