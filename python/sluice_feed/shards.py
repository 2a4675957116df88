"""Shard discovery, fingerprint and vectorized decoding (``pipeline/feed/shards.rs``)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import List, Optional, Sequence, Tuple, TypedDict, Union

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

PathLike = Union[str, "os.PathLike[str]"]


class ShardInfo(TypedDict):
    """One packed shard file: where it is, the sha256 of its bytes, its row count."""

    path: str
    sha256: str
    rows: int


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def discover(inputs: Sequence[PathLike]) -> List[ShardInfo]:
    """Canonical list of packed shards, sorted by ``(sha256, path)``.

    Each input is a run directory (its ``manifest.json`` gives paths and sha256), a
    directory (``shards/*.parquet`` or ``*.parquet``, hashed here) or a Parquet file.
    Files without an ``input_ids`` column are skipped.
    """
    cands: List[Tuple[str, Optional[str]]] = []
    for inp in inputs:
        inp = os.fspath(inp)
        if os.path.isdir(inp):
            man = os.path.join(inp, "manifest.json")
            if os.path.isfile(man):
                with open(man) as f:
                    m = json.load(f)
                for s in m["shards"]:
                    p = s["path"]
                    cands.append((p if os.path.isabs(p) else os.path.join(inp, p), s.get("sha256")))
            else:
                sub = os.path.join(inp, "shards")
                d = sub if os.path.isdir(sub) else inp
                for name in os.listdir(d):
                    p = os.path.join(d, name)
                    if name.endswith(".parquet") and os.path.isfile(p):
                        cands.append((p, None))
        elif os.path.isfile(inp):
            cands.append((inp, None))
        else:
            raise FileNotFoundError(f"{inp}: no such run directory or Parquet file")
    shards: List[ShardInfo] = []
    for p, sha in cands:
        pf = pq.ParquetFile(p)
        if "input_ids" not in pf.schema_arrow.names:
            continue
        shards.append({"path": p, "sha256": sha or _sha256_file(p), "rows": pf.metadata.num_rows})
    shards.sort(key=lambda s: (s["sha256"], s["path"]))
    if not shards:
        raise ValueError(
            f"no packed shards (Parquet with an `input_ids` column) under {[os.fspath(i) for i in inputs]}")
    return shards


def fingerprint(shards: Sequence[ShardInfo]) -> str:
    """sha256 over ``"<sha256> <rows>\\n"`` of every shard in canonical order."""
    h = hashlib.sha256()
    for s in shards:
        h.update(f"{s['sha256']} {s['rows']}\n".encode())
    return h.hexdigest()


def _list_parts(col: pa.ChunkedArray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(validity, absolute offsets as int64, values as uint32) of a list<uint32> column."""
    arr = col.combine_chunks()
    if isinstance(arr, pa.ChunkedArray):  # empty table
        arr = pa.array([], type=col.type)
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    offsets = arr.offsets.to_numpy().astype(np.int64)
    values = arr.values
    if values.null_count:
        values = values.fill_null(0)
    vals = values.to_numpy(zero_copy_only=False).astype(np.uint32, copy=False)
    return valid, offsets, vals


def _per_row_count(mask: np.ndarray, elem_row: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(elem_row[mask], minlength=n) if n else np.zeros(0, dtype=np.int64)


class Shard:
    """One decoded shard: the three packed columns, flattened, every row checked.

    Row ``r`` is ``ids[row_start[r]:row_start[r+1]]`` with ``real[r]`` real tokens and
    document offsets ``offs[off_start[r]:off_start[r+1]]``. A row with a null, no real
    token or broken offsets (not starting at 0, not strictly increasing, not below the
    real length) is kept as invalid (row numbers stay those of the file) and skipped,
    as ``ShardRows::load`` does. All checks are numpy over the whole shard.
    """

    def __init__(self, path: str):
        t = pq.read_table(path, columns=["input_ids", "doc_offsets", "n_pad"])
        ids_ok, io, self.ids = _list_parts(t.column("input_ids"))
        offs_ok, oo, offs = _list_parts(t.column("doc_offsets"))
        pad_col = t.column("n_pad").combine_chunks()
        n = len(pad_col)
        pad_ok = pad_col.is_valid().to_numpy(zero_copy_only=False)
        pads = pad_col.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        lengths = np.diff(io)
        olens = np.diff(oo)
        real = lengths - pads
        valid = ids_ok & offs_ok & pad_ok & (pads < lengths) & (olens > 0)
        # Offsets of the rows, re-based to start at 0.
        base = int(oo[0]) if n else 0
        offs = offs[base : int(oo[-1]) if n else 0].astype(np.int64)
        oo = oo - base
        elem_row = np.repeat(np.arange(n), olens)
        first = offs[np.minimum(oo[:-1], max(len(offs) - 1, 0))] if len(offs) else np.zeros(n, np.int64)
        valid &= first == 0
        if len(offs):
            valid &= _per_row_count(offs >= real[elem_row], elem_row, n) == 0
            # A pair (j, j+1) inside one row must strictly increase.
            same_row = elem_row[1:] == elem_row[:-1]
            valid &= _per_row_count(same_row & (offs[1:] <= offs[:-1]), elem_row[1:], n) == 0
        self.row_start = io
        self.offs = offs
        self.off_start = oo
        self.real = np.where(valid, real, 0)
        self.valid = valid
        self.rows = n
        self.bad = int(n - valid.sum())

    def windows(self, seq_len: int) -> np.ndarray:
        """Windows per row: those holding a next-token target, ``ceil((real - 1) / seq_len)``."""
        w = (np.maximum(self.real - 1, 0) + seq_len - 1) // seq_len
        return np.where(self.valid, w, 0)

    def row(self, r: int) -> Tuple[np.ndarray, int, np.ndarray]:
        """(tokens, real length, document offsets) of row ``r``."""
        return (self.ids[self.row_start[r] : self.row_start[r + 1]], int(self.real[r]),
                self.offs[self.off_start[r] : self.off_start[r + 1]])
