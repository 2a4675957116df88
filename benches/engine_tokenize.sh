#!/usr/bin/env bash
# Tokenize stage vs bare `Tokenizer::encode_batch`, each side in a fresh process.
#
# In one long-lived process the sides disturb each other: whichever runs later finds a heap
# already grown by the earlier runs (no page faults) and warm caches, and the one-process
# numbers in `cargo bench --bench engine` swing between 0.75 and 1.03 from run to run. Here
# every measurement is a cold start of the same bench binary, alternating sides; it prints
# the best of N of each side and the median of the N paired ratios.
#
#   bash benches/engine_tokenize.sh [REPEATS]      (env SLUICE_BENCH_THREADS, default 2;
#                                                   SLUICE_BENCH_TOK_DOCS, default 60000;
#                                                   SLUICE_BENCH_TOK_CODEC, default none)
set -euo pipefail
# --help prints the comment block above.
case "${1:-}" in -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
cd "$(dirname "$0")/.."
n="${1:-5}"
cargo bench --bench engine --no-run >/dev/null 2>&1
bin=$(cargo bench --bench engine --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))/\1/p' | tail -1)
export SLUICE_BENCH_MB="${SLUICE_BENCH_MB:-90}" SLUICE_BENCH_TOK_DOCS="${SLUICE_BENCH_TOK_DOCS:-60000}"
results=()
for i in $(seq "$n"); do
  for side in tok-bare tok-stage; do
    r=$(SLUICE_BENCH_ONLY=$side "$bin" --bench | sed -n "s/^$side: \([0-9.]*\) MB\/s/\1/p")
    echo "run $i $side $r MB/s"
    results+=("$r")
  done
done
# Best of each side, and the median of the per-run ratios (each run's stage against the
# bare run just before it: the pair shares the machine's load at that moment).
python3 - "${results[@]}" <<'PY'
import statistics, sys
v = [float(x) for x in sys.argv[1:]]
bare, stage = v[0::2], v[1::2]
pairs = [s / b for b, s in zip(bare, stage)]
print(f"tokenize: bare encode_batch {max(bare):.2f} MB/s, stage (ingest→tokenize→parquet) "
      f"{max(stage):.2f} MB/s; ratio of bests {max(stage) / max(bare):.2f}, "
      f"median of paired ratios {statistics.median(pairs):.2f} (pairs: "
      + ", ".join(f"{p:.2f}" for p in pairs) + ")")
PY
