#!/usr/bin/env bash
# Tokenize stage alone vs bare Hugging Face `encode_batch`: same documents, same threads,
# CPU seconds of the process (all threads) spent encoding. Each measurement is a fresh
# process of `benches/tokenize_speed.rs`, sides alternating; prints every run, then per
# tokenizer and thread count the best MB per CPU-second of each side, the speed-up, and
# the 1 -> 2 thread wall scaling of the stage. Checksums of the ids must agree.
#
#   bash benches/tokenize_speed.sh TOKENIZER.json[,TOKENIZER2.json...] FILE.jsonl... \
#        [env REPEATS=3 THREADS="1 2"]
#
# Example (the shipped tokenizers on the shipped Chinese and English samples):
#   bash benches/tokenize_speed.sh samples/tokenizers/qwen2/tokenizer.json,samples/tokenizers/deepseek-v3/tokenizer.json \
#        samples/text/cmrc2018_zh.jsonl samples/text/articles_en.jsonl samples/benchmarks/gaokao_mcq_zh.jsonl
set -euo pipefail
case "${1:-}" in -h | --help | "") awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
toks="$1"
shift
files=()
for f in "$@"; do files+=("$(realpath "$f")"); done
toks_abs=()
IFS=, read -ra tl <<<"$toks"
for t in "${tl[@]}"; do toks_abs+=("$(realpath "$t")"); done
cd "$(dirname "$0")/.."
repeats="${REPEATS:-3}"
threads="${THREADS:-1 2}"
cargo bench --no-default-features --bench tokenize_speed --no-run >/dev/null 2>&1
bin=$(cargo bench --no-default-features --bench tokenize_speed --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))/\1/p' | tail -1)
out=$(mktemp)
for t in "${toks_abs[@]}"; do
  for n in $threads; do
    for i in $(seq "$repeats"); do
      for side in hf stage; do
        line=$("$bin" --side "$side" --threads "$n" --tokenizer "$t" "${files[@]}" 2>/dev/null)
        echo "tokenizer=$(basename "$(dirname "$t")") $line" | tee -a "$out"
      done
    done
  done
done
python3 - "$out" <<'PY'
import collections, sys
rows = [dict(kv.split("=", 1) for kv in l.split()) for l in open(sys.argv[1])]
best = collections.defaultdict(lambda: None)
sums = collections.defaultdict(set)
for r in rows:
    k = (r["tokenizer"], int(r["threads"]), r["side"])
    sums[(r["tokenizer"], r["side"])].add(r["checksum"])
    if best[k] is None or float(r["mb_per_cpu_s"]) > float(best[k]["mb_per_cpu_s"]):
        best[k] = r
for tok in sorted({r["tokenizer"] for r in rows}):
    same = sums[(tok, "hf")] == sums[(tok, "stage")] and len(sums[(tok, "hf")]) == 1
    print(f"{tok}: ids {'identical' if same else 'DIFFER'} (checksums)")
    for n in sorted({int(r["threads"]) for r in rows}):
        h, s = best[(tok, n, "hf")], best[(tok, n, "stage")]
        print(f"  {n} thread(s): hf encode_batch {float(h['mb_per_cpu_s']):.2f} MB/CPU-s "
              f"({h['wall_s']} s wall), stage {float(s['mb_per_cpu_s']):.2f} MB/CPU-s "
              f"({s['wall_s']} s wall): {float(s['mb_per_cpu_s']) / float(h['mb_per_cpu_s']):.2f}x")
    wall = lambda n, side: min(float(r["wall_s"]) for r in rows
                               if r["tokenizer"] == tok and int(r["threads"]) == n and r["side"] == side)
    if best[(tok, 1, "stage")] and best[(tok, 2, "stage")]:
        print(f"  wall scaling 1 -> 2 threads (best walls): stage {wall(1, 'stage') / wall(2, 'stage'):.2f}x, "
              f"hf {wall(1, 'hf') / wall(2, 'hf'):.2f}x")
PY
rm -f "$out"
