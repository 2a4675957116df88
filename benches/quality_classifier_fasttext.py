#!/usr/bin/env python3
"""Peer side of the quality_classifier benchmark: the official fastText (pip fasttext-wheel,
C++ under the hood) predicting the same preprocessed lines, one thread, best of 5.

    python3 benches/quality_classifier_fasttext.py MODEL LINES_FILE
"""
import json, sys, time

if len(sys.argv) != 3 or sys.argv[1] in ("-h", "--help"):
    print(__doc__)
    sys.exit(0 if sys.argv[1:2] in (["-h"], ["--help"]) else 2)

import fasttext

model_path, lines_path = sys.argv[1], sys.argv[2]
m = fasttext.load_model(model_path)
lines = open(lines_path, encoding="utf-8").read().split("\n")[:-1]
best_batch = best_loop = float("inf")
for _ in range(5):
    t = time.perf_counter()
    m.predict(lines, k=2)  # one call: the C++ loop, no per-line Python overhead
    best_batch = min(best_batch, time.perf_counter() - t)
    t = time.perf_counter()
    for l in lines:
        m.predict(l, k=2)
    best_loop = min(best_loop, time.perf_counter() - t)
print(json.dumps({"bench": "official_fasttext", "model": model_path, "lines": len(lines), "threads": 1,
                  "batch_predict_lines_per_s": len(lines) / best_batch,
                  "per_line_predict_lines_per_s": len(lines) / best_loop}))
