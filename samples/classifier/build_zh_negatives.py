#!/usr/bin/env python3
"""Build samples/classifier/zh_negatives.jsonl: negative (low-quality) Chinese examples for
the shipped quality model. Standard library only; deterministic (fixed seed, sorted inputs).

Two kinds of junk, both licence-clean:
  1. cc_spam: text blocks of the Chinese pages in the real Common Crawl WARC sample
     (CC-MAIN-2020-34, resiliparse test data, Apache-2.0): gambling / lottery / porn SEO pages,
     spam company pages, navigation. Blocks are joined into chunks of 40..400 characters,
     one JSON line per chunk.
  2. keyword_spam: synthetic keyword-stuffed SEO lines (titles, tag clouds, link farms) drawn
     with a fixed seed from the ads / porn word lists and the illegal-domain list of
     konsheng/Sensitive-lexicon (MIT) and BigScience's flagged words (Apache-2.0), all
     already in samples/lists/.

Usage (from the repo root):
  python3 samples/classifier/build_zh_negatives.py > samples/classifier/zh_negatives.jsonl
"""
import argparse, gzip, json, random, re, sys
from html.parser import HTMLParser

BLOCK_TAGS = {"p", "div", "br", "li", "tr", "td", "th", "h1", "h2", "h3", "h4", "a", "title", "span",
              "dd", "dt", "option", "ul", "table", "form", "label", "button", "b", "strong", "em", "font"}


class Blocks(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks, self.cur, self.skip = [], [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "noscript"):
            self.skip += 1
        if tag in BLOCK_TAGS:
            self.flush()

    def handle_endtag(self, tag):
        if tag in ("script", "style", "noscript"):
            self.skip = max(0, self.skip - 1)
        if tag in BLOCK_TAGS:
            self.flush()

    def handle_data(self, d):
        if not self.skip:
            self.cur.append(d)

    def flush(self):
        t = " ".join("".join(self.cur).split())
        self.cur = []
        if t:
            self.blocks.append(t)


def warc_records(raw):
    """Yield (headers, payload) of WARC records in an uncompressed WARC byte string."""
    pos = 0
    while True:
        start = raw.find(b"WARC/1.", pos)
        if start < 0:
            return
        head_end = raw.find(b"\r\n\r\n", start)
        if head_end < 0:
            return
        headers = {}
        for line in raw[start:head_end].split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
        n = int(headers.get("content-length", "0"))
        body = raw[head_end + 4: head_end + 4 + n]
        pos = head_end + 4 + n
        yield headers, body


def han(s):
    return sum(1 for c in s if "\u4e00" <= c <= "\u9fff")


def cc_spam(path):
    raw = gzip.open(path, "rb").read() if path.endswith(".gz") else open(path, "rb").read()
    out = []
    for h, body in warc_records(raw):
        if h.get("warc-type") != "response":
            continue
        payload = body.split(b"\r\n\r\n", 1)[-1]
        m = re.search(rb'charset=["\']?([\w-]+)', payload[:4000], re.I)
        cs = m.group(1).decode().lower() if m else "utf-8"
        if cs in ("gb2312", "gbk", "gb18030"):
            cs = "gb18030"
        try:
            text = payload.decode(cs, errors="replace")
        except LookupError:
            text = payload.decode("utf-8", errors="replace")
        p = Blocks()
        p.feed(text)
        p.flush()
        if sum(han(b) for b in p.blocks) < 300:  # not a Chinese page
            continue
        chunk = ""
        for b in p.blocks:
            chunk = (chunk + " " + b).strip() if chunk else b
            if len(chunk) >= 120:
                out.append((h.get("warc-target-uri", ""), chunk[:400]))
                chunk = ""
        if len(chunk) >= 40:
            out.append((h.get("warc-target-uri", ""), chunk[:400]))
    return [(u, c) for u, c in out if han(c) >= 10]


def read_words(path):
    with open(path, encoding="utf-8") as f:
        return [w.strip() for w in f if w.strip() and not w.startswith("#")]


def keyword_spam(lists, n, seed):
    rng = random.Random(seed)
    ads = read_words(f"{lists}/konsheng/ads.zh.txt")
    porn = read_words(f"{lists}/konsheng/porn.zh.txt")
    flagged = read_words(f"{lists}/bigscience/flagged_words.zh_only.txt")
    domains = sorted(rng.sample(read_words(f"{lists}/illegal_domains.zh.txt"), 500))
    seps = [",", "_", "|", " ", "，", "、", "-", " | "]
    out = []
    for i in range(n):
        pool = ads + porn + flagged if i % 2 else porn + flagged + ads
        items = []
        for _ in range(rng.randint(6, 24)):
            r = rng.random()
            if r < 0.7:
                items.append(rng.choice(pool))
            elif r < 0.85:
                items.append(rng.choice(domains))
            elif r < 0.95:
                items.append(str(rng.randint(10, 99999)))
            else:
                items.append("QQ" + str(rng.randint(10000000, 999999999)))
        sep = rng.choice(seps)
        out.append(sep.join(items))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--warc", default="samples/warc/warcfile.warc.gz")
    ap.add_argument("--lists", default="samples/lists")
    ap.add_argument("--keyword-lines", type=int, default=300)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    w = sys.stdout
    for i, (url, text) in enumerate(cc_spam(a.warc)):
        w.write(json.dumps({"text": text, "label": "lq", "source": "cc_spam", "url": url}, ensure_ascii=False) + "\n")
    for text in keyword_spam(a.lists, a.keyword_lines, a.seed):
        w.write(json.dumps({"text": text, "label": "lq", "source": "keyword_spam"}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
