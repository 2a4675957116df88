#!/usr/bin/env python3
"""Side-by-side MinHash signature speed: sluice vs rensa vs datatrove, one core, one run.

Usage (from the repo root):
    python3 -m venv /tmp/venv-minhash && /tmp/venv-minhash/bin/pip install rensa datatrove
    CARGO_TARGET_DIR=target-rel taskset -c 0 /tmp/venv-minhash/bin/python benches/minhash_peers.py

What is compared (num_perm = 128 everywhere, same documents):
  * signature only, same shingles: sluice `MinHasher::signature` vs rensa
    `RMinHash.digest_matrix_from_flat_token_hashes` on the identical u64 shingle hashes that
    the sluice bench exports (en: whitespace-word 5-grams of articles_2500; zh: char 5-grams of
    CMRC 2018 paragraphs);
  * text -> signature: sluice (tokenize + shingle + signature) vs rensa `RMinHash.update` on
    the same shingles given as strings (string building excluded from rensa's time) vs
    datatrove `MinhashDedupSignature.get_shingles` + `get_signature` (its per-document work,
    file writing excluded; English only, datatrove's zh tokenizer needs extra models).
Everything runs pinned to one core (taskset) with RAYON_NUM_THREADS=1, so figures are per core.

Algorithms compared: since 0.5 rensa's `RMinHash` is itself a bucketed sketch (rounds that
send each token to one coordinate, per-coordinate fallback), and sluice's signature
(SIGNATURE_VERSION 2) is one too (see `MinHasher` in stages/minhash_dedup/signature.rs); both
are coordinatewise minima whose coordinates each estimate Jaccard, at the same num_perm.
datatrove evaluates num_perm permutations per shingle (classic MinHash).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")

import numpy as np  # noqa: E402

NUM_PERM = 128
SEED = 1
REPEATS = 3


def shared_data() -> Path:
    if os.environ.get("SLUICE_SHARED_DATA"):
        return Path(os.environ["SLUICE_SHARED_DATA"])
    rel = Path("../shared/data")
    return rel if rel.is_dir() else Path("/work/shared/data")


def english():
    p = shared_data() / "dedup-minhash-articles-groundtruth/articles_2500.train"
    return [line.split(" ", 1)[1] for line in p.read_text().splitlines() if " " in line]


def chinese():
    p = shared_data() / "text-zh-wikipedia-cmrc2018/cmrc2018_dev.contexts.jsonl"
    return [json.loads(l)["text"] for l in p.read_text().splitlines() if l.strip()]


def best(f):
    t_best = float("inf")
    for _ in range(REPEATS):
        t = time.perf_counter()
        f()
        t_best = min(t_best, time.perf_counter() - t)
    return t_best


def en_shingles(text):
    words = [w.strip("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~").lower() for w in text.split()]
    words = [w for w in words if w]
    if len(words) < 5:
        return [" ".join(words)] if words else []
    return list({" ".join(words[i : i + 5]) for i in range(len(words) - 4)})


def zh_shingles(text):
    chars = [c.lower() for c in text if c.isalnum()]
    if len(chars) < 5:
        return ["".join(chars)] if chars else []
    return list({"".join(chars[i : i + 5]) for i in range(len(chars) - 4)})


def main():
    bench_dir = Path(os.environ.get("MINHASH_BENCH_DIR", tempfile.mkdtemp(prefix="sluice-minhash-")))
    env = dict(os.environ, MINHASH_BENCH_DIR=str(bench_dir))
    print(f"running sluice bench (shingles exported to {bench_dir}) ...", file=sys.stderr)
    # SLUICE_MINHASH_BENCH_BIN: an already built bench binary (else `cargo bench` builds it).
    cmd = [os.environ["SLUICE_MINHASH_BENCH_BIN"]] if os.environ.get("SLUICE_MINHASH_BENCH_BIN") else ["cargo", "bench", "--bench", "minhash_speed"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    ours = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT ") :])
            ours[r["corpus"]] = r

    import rensa
    from rensa import RMinHash

    rows = []
    corpora = {"en": (english(), en_shingles), "zh": (chinese(), zh_shingles)}
    for name, (docs, shingler) in corpora.items():
        flat = np.fromfile(bench_dir / f"{name}.shingles.u64", dtype="<u8")
        offs = np.fromfile(bench_dir / f"{name}.offsets.u64", dtype="<u8")
        assert len(offs) == len(docs) + 1, "bench files must match the documents"
        t_rensa_flat = best(lambda: RMinHash.digest_matrix_from_flat_token_hashes(flat, offs, NUM_PERM, SEED))
        sh = [shingler(d) for d in docs]

        def rensa_update():
            for s in sh:
                m = RMinHash(num_perm=NUM_PERM, seed=SEED)
                m.update(s)
                m.digest()

        t_rensa_text = best(rensa_update)
        o = ours[name]
        n = len(docs)
        rows.append((name, "signature only (same u64 shingles)", "sluice", n / o["signature_only_secs"]))
        rows.append((name, "signature only (same u64 shingles)", "rensa digest_matrix_from_flat_token_hashes", n / t_rensa_flat))
        rows.append((name, "text -> signature", "sluice", n / o["text_to_signature_secs"]))
        rows.append((name, "text -> signature", "rensa RMinHash.update (shingle strings prebuilt)", n / t_rensa_text))

    # datatrove, English only.
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    docs = english()
    with tempfile.TemporaryDirectory() as tmp:
        step = MinhashDedupSignature(output_folder=tmp, config=MinhashConfig(n_grams=5, num_buckets=16, hashes_per_bucket=8, seed=SEED))

        def dt():
            for d in docs:
                step.get_signature(step.get_shingles(d))

        t_dt = best(dt)
    rows.append(("en", "text -> signature", "datatrove MinhashDedupSignature", len(docs) / t_dt))

    from importlib.metadata import version

    versions = f"rensa {version('rensa')}, datatrove {version('datatrove')}"
    print(f"\n# MinHash signature throughput, one core, num_perm {NUM_PERM} ({versions})\n")
    print("| corpus | what | implementation | docs/s | sluice / this |")
    print("|---|---|---|---|---|")
    for corpus, what, impl, dps in rows:
        ref = next(r[3] for r in rows if r[0] == corpus and r[1] == what and r[2] == "sluice")
        print(f"| {corpus} | {what} | {impl} | {dps:,.0f} | {ref / dps:.2f}x |")
    for name, o in ours.items():
        print(
            f"\nsluice {name}: {o['docs']} docs, {o['bytes']/1e6:.2f} MB, {o['shingles']} shingles; "
            f"{o['signature_only_mshingles_per_sec']:.1f} M shingles/s signature-only, "
            f"{o['text_to_signature_mb_per_sec']:.1f} MB/s text->signature"
        )


if __name__ == "__main__":
    main()
