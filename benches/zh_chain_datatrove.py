"""datatrove's nearest equivalent of sluice's normalize -> langid -> segment_zh -> heuristic_filter
chain, timed on the same documents, one core. Run by benches/zh_chain.sh in a throwaway venv:

    python3 -m venv "$VENV" && "$VENV/bin/pip" install datatrove spacy jieba fasttext-numpy2-wheel
    "$VENV/bin/python" benches/zh_chain_datatrove.py JSONL [ROUNDS]

Chain: LanguageFilter(zh, 0.5) -> GopherRepetitionFilter -> GopherQualityFilter ->
FineWebQualityFilter, all with datatrove's Chinese word tokenizer (spaCy + jieba), thresholds
set to the same FineWeb-2 cmn_Hani values sluice uses. datatrove has no Unicode normalizer
in this chain, so its side does less work than sluice's. The fastText model is the same
file sluice ships (samples/models/lid.176.ftz), loaded locally instead of downloaded.
Prints one JSON line.
"""

import json
import os
import sys
import time

if __name__ == "__main__" and (len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help")):
    print(__doc__)
    sys.exit(0 if len(sys.argv) > 1 else 2)

from datatrove.data import Document
from datatrove.pipeline.filters import (
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    LanguageFilter,
)

# Repo files, found relative to this script so it runs from any directory.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "samples/models/lid.176.ftz")
STOPWORDS = os.path.join(ROOT, "samples/lists/bigscience/stopwords.zh.txt")


def zh_language():
    # datatrove's key for Mandarin in Han script: its tokenizer assignment maps it to
    # SpaCyTokenizer("zh") with the jieba segmenter.
    return "cmn_Hani"


def build():
    lang = zh_language()
    lf = LanguageFilter(languages=["zh"], language_threshold=0.5)
    # Point datatrove's fastText wrapper at the local model (no download).
    from fasttext.FastText import _FastText

    model = _FastText(MODEL)
    lid = getattr(lf, "model", None)
    if lid is not None and hasattr(lid, "_model"):
        lid._model = model
    else:
        raise SystemExit("unknown datatrove LanguageFilter layout; cannot inject local model")
    rep = GopherRepetitionFilter(
        dup_line_frac=0.287,
        top_n_grams=((2, 0.256), (3, 0.201), (4, 0.171)),
        dup_n_grams=((5, 0.198), (6, 0.182), (7, 0.167), (8, 0.154), (9, 0.14), (10, 0.127)),
        language=lang,
    )
    stop = [w.strip() for w in open(STOPWORDS, encoding="utf-8") if w.strip()]
    qual = GopherQualityFilter(
        min_avg_word_length=1, max_avg_word_length=6, max_non_alpha_words_ratio=0.6, stop_words=stop, language=lang
    )
    fw = FineWebQualityFilter(
        line_punct_thr=0.106,
        new_line_ratio=0.178,
        char_duplicates_ratio=0.1,
        short_line_length=15,
        stop_chars=tuple("。！？…．.!?\"'”’」』）)"),
        language=lang,
    )
    return [lf, rep, qual, fw]


def main():
    path = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    texts = [json.loads(l)["text"] for l in open(path, encoding="utf-8") if l.strip()]
    mb = sum(len(t.encode()) for t in texts) / 1e6
    filters = build()
    # Warm up: load models and the jieba dictionary outside the timing, as sluice does.
    for f in filters:
        f.filter(Document(text=texts[0], id="warm"))
    best, kept = float("inf"), 0
    for _ in range(rounds):
        docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
        t0 = time.perf_counter()
        kept = 0
        reasons = {}
        for d in docs:
            ok = True
            for f in filters:
                r = f.filter(d)
                why = type(f).__name__
                if isinstance(r, tuple):
                    r, why = r[0], r[1]
                if not r:
                    ok = False
                    reasons[why] = reasons.get(why, 0) + 1
                    break
            kept += ok
        best = min(best, time.perf_counter() - t0)
    n = len(texts)
    print(json.dumps({
        "bench": "zh_chain_datatrove", "docs": n, "mb": mb, "kept": kept, "secs": best,
        "docs_s_per_core": n / best, "mb_s_per_core": mb / best, "rejects": reasons,
    }))


if __name__ == "__main__":
    main()
