#!/usr/bin/env bash
# Side-by-side benchmark: the sluice quality_classifier stage vs the official C++ fastText
# (pip fasttext-wheel) predicting the same preprocessed lines, one thread each, same machine,
# same run. Also reports sluice's model alone and the `fasttext` crate's predict.
#   benches/quality_classifier.sh [MODEL] [N_DOCS]
# Needs a venv with the official bindings:
#   python3 -m venv /tmp/venv-qc && /tmp/venv-qc/bin/pip install fasttext-wheel==0.9.2 "numpy<2"
# Release build through the shared target (override with CARGO_TARGET_DIR).
set -euo pipefail
MODEL=${1:-samples/models/zh_quality.ftz}
N=${2:-20000}
PY=${PY:-/tmp/venv-qc/bin/python}
export BENCH_LINES=/tmp/sluice_qc_bench_lines.txt
OUT=$(mktemp -d)
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-release} \
  cargo bench --bench quality_classifier -- "$MODEL" "$N" | tee "$OUT/sluice.json"
"$PY" benches/quality_classifier_fasttext.py "$MODEL" "$BENCH_LINES" | tee "$OUT/official.json"
python3 - "$OUT/sluice.json" "$OUT/official.json" <<'PY'
import json, sys
s = json.loads([l for l in open(sys.argv[1]) if l.startswith("{")][-1])
o = json.loads([l for l in open(sys.argv[2]) if l.startswith("{")][-1])
ft = o["batch_predict_lines_per_s"]
print(json.dumps({
    "stage_docs_per_s": round(s["stage_docs_per_s"]),
    "sluice_model_lines_per_s": round(s["sluice_model_prob_lines_per_s"]),
    "official_fasttext_lines_per_s": round(ft),
    "stage_vs_official": round(s["stage_docs_per_s"] / ft, 3),
    "model_vs_official": round(s["sluice_model_prob_lines_per_s"] / ft, 3),
}))
PY
