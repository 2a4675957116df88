#!/bin/bash
# Peak RSS of `sluice run` for growing prefixes of the Chinese chain (docs/memory.md).
# usage: tests/scripts/memory_chain.sh SLUICE_BIN INPUT.jsonl [max_doc_bytes]
#   CHAIN="norm seg quality tok" STAGES="0 1 2 3 4" select the nodes after the source.
BIN=$1; IN=$2; MAXDOC=${3:-1000000000}
TOK=${TOK:-$(pwd)/samples/tokenizers/qwen2/tokenizer.json}
W=$(mktemp -d)
chain() { # $1 = number of stages after the source
  local n=$1
  cat <<Y
run: {batch_size: 16, max_doc_bytes: $MAXDOC}
nodes:
  src: {kind: ingest_jsonl, paths: ["$IN"], max_line_bytes: 2000000000}
Y
  local prev=src
  local stages=(${CHAIN:-norm seg quality tok})
  for ((i=0;i<n;i++)); do
    local s=${stages[$i]}
    case $s in
      norm) k="kind: normalize";; seg) k="kind: segment_zh";;
      quality) k="kind: heuristic_filter, default_lang: zh, languages: {zh: {max_chars: 1000000000}}";;
      tok) k="kind: tokenize, tokenizer: $TOK";;
    esac
    echo "  $s: {$k, inputs: [$prev]}"
    prev=$s
  done
  echo "  shards: {kind: parquet_shards, inputs: [$prev]}"
}
for n in ${STAGES:-0 1 2 3 4}; do
  chain $n > $W/c$n.yaml
  /usr/bin/time -f "%M %e" -o $W/t$n $BIN run $W/c$n.yaml --out $W/o$n --threads 2 >/dev/null 2>$W/e$n || { echo "chain $n failed"; tail -3 $W/e$n; }
  read kb secs < $W/t$n
  rej=$(python3 -c "import json;s=json.load(open('$W/o$n/stats.json'));print({k:v['rejects'] for k,v in s['nodes'].items() if v['rejects']})" 2>/dev/null)
  echo "stages=$n peak_rss_mib=$((kb/1024)) secs=$secs rejects=$rej"
done
rm -rf $W
