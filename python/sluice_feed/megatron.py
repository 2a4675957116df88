"""Export packed shards as a Megatron-LM indexed dataset (``.bin`` + ``.idx``, MMIDIDX).

Megatron-LM's ``GPTDataset`` reads token sequences from an ``IndexedDataset`` and packs
them itself. ``export_megatron`` writes sluice's shards in that format so a Megatron (or
NeMo) job can train on them without this package: ``unit="document"`` (default) writes
every document segment (``doc_offsets``, real tokens only, EOS included) as one sequence
and one document; ``unit="row"`` writes every packed row's real tokens as one sequence.
Shards go in canonical order (sha256), rows in file order; bad rows are skipped as the
loader skips them.

``.idx`` layout (little-endian, megatron-core ``indexed_dataset.py``): magic
``b"MMIDIDX\\x00\\x00"``, u64 version 1, u8 dtype code (4 = int32, 8 = uint16), u64
sequence count, u64 document count (documents + 1), int32 sequence lengths, int64 byte
pointers into ``.bin``, int64 document indices (sequence index where each document
starts, then the total).
"""

from __future__ import annotations

import os
import struct
from typing import Dict, Sequence, Union

import numpy as np

from .shards import PathLike, Shard, discover

MAGIC = b"MMIDIDX\x00\x00"
DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}


def _segments(sh: Shard, unit: str) -> "tuple[np.ndarray, np.ndarray]":
    """(real tokens of the valid rows, concatenated; sequence lengths) of one shard."""
    rows = np.flatnonzero(sh.valid)
    real = sh.real[rows]
    starts = sh.row_start[:-1][rows]
    # Token positions of every real token of every valid row, in order.
    row_of = np.repeat(np.arange(len(rows)), real)
    within = np.arange(int(real.sum())) - np.repeat(np.cumsum(real) - real, real)
    tokens = sh.ids[starts[row_of] + within]
    if unit == "row":
        return tokens, real
    olens = (sh.off_start[1:] - sh.off_start[:-1])[rows]
    o0 = sh.off_start[:-1][rows]
    idx = np.repeat(o0, olens) + (np.arange(int(olens.sum())) - np.repeat(np.cumsum(olens) - olens, olens))
    offs = sh.offs[idx]
    # End of each segment: the next offset in the row, or the row's real length.
    last = np.cumsum(olens) - 1
    nxt = np.empty_like(offs)
    nxt[:-1] = offs[1:]
    nxt[last] = real
    return tokens, nxt - offs


def export_megatron(data: Union[PathLike, Sequence[PathLike]], prefix: PathLike,
                    unit: str = "document", vocab_size: int = 0) -> Dict[str, object]:
    """Write ``<prefix>.bin`` and ``<prefix>.idx`` from the packed shards under ``data``.

    Tokens are uint16 when ``vocab_size`` (or, when 0, the largest id + 1) is below 65,500,
    as Megatron's ``optimal_dtype`` chooses, else int32. Returns counts and paths.
    """
    if unit not in ("document", "row"):
        raise ValueError(f"unit must be 'document' or 'row', not {unit!r}")
    inputs = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    shards = discover(inputs)
    prefix = os.fspath(prefix)
    bin_path, idx_path = prefix + ".bin", prefix + ".idx"
    tmp = bin_path + ".tmp"
    lengths = []
    max_id = 0
    with open(tmp, "wb") as f:
        parts = []
        for s in shards:
            toks, lens = _segments(Shard(s["path"]), unit)
            lengths.append(lens.astype(np.int64))
            if len(toks):
                max_id = max(max_id, int(toks.max()))
            parts.append(toks)
        card = vocab_size or (max_id + 1)
        dtype = np.dtype(np.uint16) if card < 65500 else np.dtype(np.int32)
        for toks in parts:
            f.write(toks.astype(dtype).tobytes())
    lens = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    n = len(lens)
    pointers = np.zeros(n, dtype=np.int64)
    if n:
        pointers[1:] = np.cumsum(lens[:-1] * dtype.itemsize)
    doc_idx = np.arange(n + 1, dtype=np.int64)
    with open(idx_path + ".tmp", "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<B", DTYPE_CODES[dtype]))
        f.write(struct.pack("<Q", n))
        f.write(struct.pack("<Q", len(doc_idx)))
        f.write(lens.astype("<i4").tobytes())
        f.write(pointers.astype("<i8").tobytes())
        f.write(doc_idx.astype("<i8").tobytes())
    os.replace(tmp, bin_path)
    os.replace(idx_path + ".tmp", idx_path)
    return {"bin": bin_path, "idx": idx_path, "sequences": n, "documents": n,
            "tokens": int(lens.sum()), "dtype": dtype.name, "unit": unit}
