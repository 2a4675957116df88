#!/usr/bin/env bash
# Side-by-side benchmark: sluice quality_classifier stage vs bare fastText (the Rust crate it
# wraps, and the official C++ fastText through pip fasttext-wheel), same lines, one thread.
#   benches/quality_classifier.sh [MODEL] [N_DOCS]
# Needs a venv with fasttext-wheel: python3 -m venv /tmp/venv-qc && /tmp/venv-qc/bin/pip install fasttext-wheel numpy
set -euo pipefail
MODEL=${1:-samples/models/zh_quality.ftz}
N=${2:-20000}
PY=${PY:-/tmp/venv-qc/bin/python}
export BENCH_LINES=/tmp/sluice_qc_bench_lines.txt
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-rel} cargo bench --bench quality_classifier -- "$MODEL" "$N"
"$PY" benches/quality_classifier_fasttext.py "$MODEL" "$BENCH_LINES"
