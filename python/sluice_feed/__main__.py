"""``python3 -m sluice_feed DATA... --batches N [--state-in F] [--state-out F]``: print each
batch as one JSON line (the Rust parity tests read it); ``--export-megatron PREFIX``
writes a Megatron-LM indexed dataset instead."""

from __future__ import annotations

import argparse
import json
from typing import List, Optional

from .feed import SluiceFeed
from .megatron import export_megatron


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="sluice-feed", description=__doc__)
    ap.add_argument("data", nargs="+")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--rank", type=int, default=0)
    ap.add_argument("--world-size", type=int, default=1)
    ap.add_argument("--state-in")
    ap.add_argument("--state-out")
    ap.add_argument("--export-megatron", metavar="PREFIX")
    a = ap.parse_args(argv)
    if a.export_megatron:
        print(json.dumps(export_megatron(a.data, a.export_megatron)))
        return 0
    feed = SluiceFeed(a.data, a.batch_size, a.seq_len, a.seed, a.rank, a.world_size)
    if a.state_in:
        with open(a.state_in) as f:
            feed.load_state_dict(json.load(f))
    for _ in range(a.batches):
        b = feed.next_batch()
        print(json.dumps({
            "step": b["step"],
            "input_ids": b["input_ids"].reshape(-1).tolist(),
            "labels": b["labels"].reshape(-1).tolist(),
            "position_ids": b["position_ids"].reshape(-1).tolist(),
            "doc_start": b["doc_start"].reshape(-1).tolist(),
            "cu_seqlens": b["cu_seqlens"].tolist(),
            "max_seqlen": b["max_seqlen"],
            "seqs_per_row": b["seqs_per_row"].tolist(),
            "samples": [list(s) for s in b["samples"]],
            "state": b["state"],
        }))
    if a.state_out:
        with open(a.state_out, "w") as f:
            json.dump(feed.state_dict(), f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
