#!/usr/bin/env bash
# Side-by-side benchmark: the sluice quality_classifier stage vs the official C++ fastText
# (pip fasttext-wheel) predicting the same preprocessed lines, one thread each, same machine,
# same run. Also reports sluice's model alone and the `fasttext` crate's predict.
#
#   bash benches/quality_classifier.sh [MODEL] [N_DOCS]
#
# MODEL   fastText model (.ftz/.bin); default samples/models/zh_quality.ftz.
# N_DOCS  documents (cmrc2018 paragraphs + classifier negatives, repeated); default 20000.
# Env:    PY  python with the official bindings (default ${TMPDIR:-/tmp}/sluice-venv-qc/bin/python,
#             created with pip when missing: fasttext-wheel==0.9.2 "numpy<2");
#         CARGO_TARGET_DIR as usual (the bench builds in the release-based `bench` profile).
set -euo pipefail
# --help prints the comment block above.
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
MODEL=${1:+$(realpath "$1")}
cd "$(dirname "$0")/.."
MODEL=${MODEL:-samples/models/zh_quality.ftz}
N=${2:-20000}
if [ -z "${PY:-}" ]; then
  VENV=${TMPDIR:-/tmp}/sluice-venv-qc
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q fasttext-wheel==0.9.2 "numpy<2"
  fi
  PY=$VENV/bin/python
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export BENCH_LINES=$OUT/lines.txt
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
