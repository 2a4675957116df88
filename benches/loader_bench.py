#!/usr/bin/env python3
"""Old vs new Python loader on the same packed run, side by side, one process, one core.

    python3 benches/loader_bench.py RUN_DIR [--batch-size 16] [--seq-len 2048]
        [--seconds 10] [--old-seconds 10] [--old-ref REF]

"old" is ``python/sluice_feed.py`` as committed on ``--old-ref`` (default 98d8441, the last
commit with the single-file script; read with ``git show``;
``--old-file`` gives a file instead); "new" is the ``sluice_feed`` package in this tree
(``python/``, or the installed one with ``--installed``). Each loader runs from a fresh
start (shard discovery and decoding included) for at least the given seconds; tokens/s
counts every position of every batch (``batch_size * seq_len`` per batch). Both must
produce identical batches: the first batches of the two are compared before timing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_old(ref: str, path: str | None):
    if path is None:
        src = subprocess.run(["git", "-C", ROOT, "show", f"{ref}:python/sluice_feed.py"],
                             check=True, capture_output=True).stdout
        fd, path = tempfile.mkstemp(suffix="_old_sluice_feed.py")
        with os.fdopen(fd, "wb") as f:
            f.write(src)
    spec = importlib.util.spec_from_file_location("old_sluice_feed", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_new(installed: bool):
    if not installed:
        sys.path.insert(0, os.path.join(ROOT, "python"))
    import sluice_feed
    return sluice_feed


def run(mod, data, bs, t, seconds):
    t0 = time.perf_counter()
    feed = mod.SluiceFeed([data], batch_size=bs, seq_len=t, seed=1234)
    n = 0
    while True:
        feed.next_batch()
        n += 1
        el = time.perf_counter() - t0
        if el >= seconds:
            return n, el


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--old-seconds", type=float, default=10.0)
    ap.add_argument("--old-ref", default="98d8441")
    ap.add_argument("--old-file")
    ap.add_argument("--installed", action="store_true")
    ap.add_argument("--dataloader-workers", default="",
                    help="also time the new loader through torch's DataLoader with these worker counts, e.g. 0,2")
    a = ap.parse_args()
    old, new = load_old(a.old_ref, a.old_file), load_new(a.installed)
    # Same batches first (a benchmark of a wrong loader means nothing).
    fo = old.SluiceFeed([a.run_dir], batch_size=a.batch_size, seq_len=a.seq_len, seed=1234)
    fn = new.SluiceFeed([a.run_dir], batch_size=a.batch_size, seq_len=a.seq_len, seed=1234)
    for _ in range(3):
        x, y = fo.next_batch(), fn.next_batch()
        for k in ("input_ids", "labels", "position_ids", "doc_start"):
            assert np.array_equal(x[k], y[k]), f"old and new differ in {k}"
    rows = sum(s["rows"] for s in fn.shards)
    print(f"run {a.run_dir}: {len(fn.shards)} shards, {rows} rows; batch {a.batch_size} x {a.seq_len}; "
          f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    tok = a.batch_size * a.seq_len
    res = {}
    for name, mod, secs in (("old", old, a.old_seconds), ("new", new, a.seconds)):
        n, el = run(mod, a.run_dir, a.batch_size, a.seq_len, secs)
        res[name] = n * tok / el
        print(f"{name:>4}: {n:6d} batches in {el:6.2f} s = {res[name] / 1e6:8.2f} M tokens/s "
              f"({el / n * 1e3:7.2f} ms/batch)")
    print(f"speed-up: {res['new'] / res['old']:.1f}x")
    # Where the new loader's time goes: decoding the shards (pyarrow's C++ Parquet reader
    # plus the vectorized row checks) vs building windows (numpy). One epoch emits every
    # window once; decoding is paid once per shard per epoch.
    t0 = time.perf_counter()
    windows = 0
    for s in fn.shards:
        windows += int(new.Shard(s["path"]).windows(a.seq_len).sum())
    dec = time.perf_counter() - t0
    epoch_s = windows * a.seq_len / res["new"]
    print(f"new, decode every shard once: {dec:.2f} s; one epoch ({windows} windows) at the new rate: "
          f"{epoch_s:.2f} s, so decoding is ~{100 * dec / epoch_s:.0f}% of the loader's time")
    for w in [int(x) for x in a.dataloader_workers.split(",") if x.strip()]:
        f = new.SluiceFeed([a.run_dir], batch_size=a.batch_size, seq_len=a.seq_len, seed=1234)
        it = iter(f.dataloader(num_workers=w))
        next(it)  # workers started and warm
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < a.seconds:
            next(it)
            n += 1
        el = time.perf_counter() - t0
        print(f"new through DataLoader(batch_size=None, num_workers={w}): {n * tok / el / 1e6:8.2f} M tokens/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
