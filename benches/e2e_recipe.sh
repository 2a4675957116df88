#!/usr/bin/env bash
# End-to-end recipe cost: ingest_jsonl → segment_zh → heuristic_filter → minhash_dedup →
# tokenize (Qwen2) → parquet_shards, the recipe issue 21 measures against datatrove. Runs
# the release binary at 1 and 2 threads with the fast tokenizer engine and with `engine: hf`
# in one invocation, and prints CPU seconds (user+sys of the process), MB per CPU-second,
# peak RSS and the 1 → 2 thread wall-clock scaling.
#
#   bash benches/e2e_recipe.sh INPUT.jsonl [SLUICE_BIN]
#
# INPUT.jsonl  one {"id","text"} per line (for example the parity corpus:
#              SLUICE_TOK_PARITY_MB=20 SLUICE_TOK_PARITY_OUT=/tmp/c20.jsonl \
#              cargo test --test integration tokenize_parity)
# SLUICE_BIN   default target/release/sluice (build: cargo build --release --no-default-features)
# Env: ENGINES            engines to run (default "fast hf")
#      PEER_MB_PER_CPU_S  datatrove's figure to compare with (default 0.19, the quiet-run
#      figure of datatrove's MinHash + quality + tokenize pipelines quoted in issue 21).
set -euo pipefail
case "${1:-}" in -h | --help | "") awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
IN=$(realpath "$1")
cd "$(dirname "$0")/.."
BIN=$(realpath "${2:-target/release/sluice}")
PEER=${PEER_MB_PER_CPU_S:-0.19}
TOK=$(realpath samples/tokenizers/qwen2/tokenizer.json)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
MB=$(python3 -c "import os,sys; print(os.path.getsize(sys.argv[1])/1e6)" "$IN")
for engine in ${ENGINES:-fast hf}; do
  cat > "$W/$engine.yaml" <<YAML
nodes:
  src: {kind: ingest_jsonl, paths: ["$IN"]}
  seg: {kind: segment_zh, inputs: [src]}
  quality: {kind: heuristic_filter, inputs: [seg]}
  dedup: {kind: minhash_dedup, inputs: [quality]}
  tok: {kind: tokenize, inputs: [dedup], tokenizer: "$TOK", append_eos: true, engine: $engine}
  shards: {kind: parquet_shards, inputs: [tok]}
YAML
done
printf "%-6s %-7s %8s %8s %12s %10s %8s\n" engine threads wall_s cpu_s MB_per_cpu_s rss_MB vs_peer
for engine in ${ENGINES:-fast hf}; do
  for t in 1 2; do
    /usr/bin/time -f "%e %U %S %M" -o "$W/time" "$BIN" run "$W/$engine.yaml" --out "$W/out-$engine-$t" --threads "$t" --no-progress -q
    read -r wall user sys rss < "$W/time"
    python3 - "$engine" "$t" "$wall" "$user" "$sys" "$rss" "$MB" "$PEER" <<'PY'
import sys
e, t, wall, user, sys_, rss, mb, peer = sys.argv[1:]
cpu = float(user) + float(sys_)
rate = float(mb) / cpu
print(f"{e:<6} {t:<7} {float(wall):8.2f} {cpu:8.2f} {rate:12.2f} {int(rss)/1024:10.0f} {rate/float(peer):7.1f}x")
PY
    echo "$wall" > "$W/wall-$engine-$t"
  done
  python3 -c "import sys; print(f'{sys.argv[1]}: 1 -> 2 threads wall scaling {float(sys.argv[2])/float(sys.argv[3]):.2f}x')" "$engine" "$(cat "$W/wall-$engine-1")" "$(cat "$W/wall-$engine-2")"
done
cmp -s <(cat "$W"/out-fast-1/shards/*.parquet | sha256sum) <(cat "$W"/out-fast-2/shards/*.parquet | sha256sum) \
  && echo "shards identical at 1 and 2 threads" || echo "SHARDS DIFFER between 1 and 2 threads"
