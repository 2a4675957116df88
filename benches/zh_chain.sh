#!/usr/bin/env bash
# Side-by-side benchmark for the Chinese stages (issue 4): sluice (release, one thread) and
# datatrove (throwaway venv, one process) on the same Chinese documents.
#   benches/zh_chain.sh [JSONL] [ROUNDS]
# Default JSONL: the 848 CMRC 2018 Wikipedia paragraphs (samples/text/cmrc2018_zh.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
JSONL=${1:-samples/text/cmrc2018_zh.jsonl}
ROUNDS=${2:-3}
VENV=${VENV:-/tmp/venv-zh}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q datatrove spacy jieba fasttext-numpy2-wheel
fi
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-rel} cargo bench --bench zh_chain -- "$JSONL" "$ROUNDS" | tee /tmp/zh_chain_sluice.json
"$VENV/bin/python" benches/zh_chain_datatrove.py "$JSONL" "$ROUNDS" | tee /tmp/zh_chain_datatrove.json
python3 - <<'PY'
import json
s = [json.loads(l) for l in open("/tmp/zh_chain_sluice.json") if l.startswith("{")]
d = json.loads(open("/tmp/zh_chain_datatrove.json").read().strip().splitlines()[-1])
seg = next(x for x in s if x["bench"] == "segment_zh_vs_jieba_cut")
ch = next(x for x in s if x["bench"] == "zh_chain_sluice")
print(f"segment_zh / bare jieba cut throughput: {seg['ratio']:.2f} (target >= 0.90)")
print(f"chain sluice    : {ch['docs_s_per_core']:.0f} docs/s, {ch['mb_s_per_core']:.2f} MB/s per core (kept {ch['kept']})")
print(f"chain datatrove : {d['docs_s_per_core']:.1f} docs/s, {d['mb_s_per_core']:.3f} MB/s per core (kept {d['kept']})")
print(f"speed-up        : {ch['docs_s_per_core'] / d['docs_s_per_core']:.1f}x (goal >= 20x)")
PY
