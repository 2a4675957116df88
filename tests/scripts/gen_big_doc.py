# Generate a JSONL of NDOCS documents totalling MB megabytes from a JSONL sample
# (docs/memory.md). usage: gen_big_doc.py SRC.jsonl OUT.jsonl MB NDOCS WSFREE(0|1)
import json, sys
src, out, mb, ndocs, wsfree = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
texts = [json.loads(l)["text"] for l in open(src, encoding="utf-8")]
if wsfree:
    texts = ["".join(t.split()) for t in texts]
per = int(mb * 1e6 / ndocs)
with open(out, "w", encoding="utf-8") as f:
    i = 0
    for d in range(ndocs):
        parts, n = [], 0
        while n < per:
            t = texts[i % len(texts)]; i += 1
            parts.append(t); n += len(t.encode())
        f.write(json.dumps({"id": f"big{d}", "text": ("" if wsfree else "\n").join(parts)}, ensure_ascii=False) + "\n")
