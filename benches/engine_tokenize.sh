#!/usr/bin/env bash
# Tokenize stage vs bare `Tokenizer::encode_batch`, each side in a fresh process.
#
# In one long-lived process the sides disturb each other: whichever runs later finds a heap
# already grown by the earlier runs (no page faults) and warm caches, and the one-process
# numbers in `cargo bench --bench engine` swing between 0.75 and 1.03 from run to run. Here
# every measurement is a cold start of the same bench binary, alternating sides, best of N.
#
#   bash benches/engine_tokenize.sh [REPEATS]      (env SLUICE_BENCH_THREADS, default 2;
#                                                   SLUICE_BENCH_TOK_DOCS, default 30000)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-3}"
cargo bench --bench engine --no-run >/dev/null 2>&1
bin=$(cargo bench --bench engine --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))/\1/p' | tail -1)
export SLUICE_BENCH_MB="${SLUICE_BENCH_MB:-45}" SLUICE_BENCH_TOK_DOCS="${SLUICE_BENCH_TOK_DOCS:-30000}"
best_bare=0 best_stage=0
for i in $(seq "$n"); do
  for side in tok-bare tok-stage; do
    r=$(SLUICE_BENCH_ONLY=$side "$bin" --bench | sed -n "s/^$side: \([0-9.]*\) MB\/s/\1/p")
    echo "run $i $side $r MB/s"
    if [ "$side" = tok-bare ]; then
      best_bare=$(python3 -c "print(max($best_bare, $r))")
    else
      best_stage=$(python3 -c "print(max($best_stage, $r))")
    fi
  done
done
python3 -c "print(f'tokenize: bare encode_batch {$best_bare:.2f} MB/s, stage (ingest→tokenize→parquet) {$best_stage:.2f} MB/s, ratio {$best_stage/$best_bare:.2f}')"
