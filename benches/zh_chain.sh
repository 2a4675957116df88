#!/usr/bin/env bash
# Side-by-side benchmark for the Chinese stages: sluice (one thread) and datatrove (one
# process, throwaway venv) on the same Chinese documents.
#
#   bash benches/zh_chain.sh [JSONL] [ROUNDS]
#
# JSONL   one {"text": ...} per line; default samples/text/cmrc2018_zh.jsonl (848 CMRC 2018
#         Wikipedia paragraphs), relative to the repo root.
# ROUNDS  timed passes per side, best reported; default 3.
# Env:    VENV          datatrove venv, created with pip when missing
#                       (default ${TMPDIR:-/tmp}/sluice-venv-zh);
#         BENCH_PROFILE cargo profile of the sluice side (default release; `dev` reuses the
#                       debug build: jieba-rs, fasttext-pure-rs and ferrous-opencc are
#                       opt-level 3 there, sluice itself is not: quicker to build, slower).
set -euo pipefail
# --help prints the comment block above.
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
# A JSONL given on the command line is relative to where the script was called from.
JSONL=${1:+$(realpath "$1")}
cd "$(dirname "$0")/.."
JSONL=${JSONL:-samples/text/cmrc2018_zh.jsonl}
ROUNDS=${2:-3}
VENV=${VENV:-${TMPDIR:-/tmp}/sluice-venv-zh}
PROFILE=${BENCH_PROFILE:-release}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q datatrove spacy jieba fasttext-numpy2-wheel
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
cargo bench --profile "$PROFILE" --bench zh_chain -- "$JSONL" "$ROUNDS" | tee "$OUT/sluice.json"
"$VENV/bin/python" benches/zh_chain_datatrove.py "$JSONL" "$ROUNDS" | tee "$OUT/datatrove.json"
python3 - "$OUT/sluice.json" "$OUT/datatrove.json" <<'PY'
import json, sys
s = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
d = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
seg = next(x for x in s if x["bench"] == "segment_zh_vs_jieba_cut")
ch = next(x for x in s if x["bench"] == "zh_chain_sluice")
print(f"segment_zh / bare jieba cut throughput: {seg['ratio']:.2f} (target >= 0.90)")
print(f"chain sluice    : {ch['docs_s_per_core']:.0f} docs/s, {ch['mb_s_per_core']:.2f} MB/s per core (kept {ch['kept']})")
print(f"chain datatrove : {d['docs_s_per_core']:.1f} docs/s, {d['mb_s_per_core']:.3f} MB/s per core (kept {d['kept']})")
print(f"speed-up        : {ch['docs_s_per_core'] / d['docs_s_per_core']:.1f}x (goal >= 20x)")
PY
