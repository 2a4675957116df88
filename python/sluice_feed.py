"""sluice_feed: read sluice's packed shards for training, batch for batch like the Rust loader.

Needs pyarrow and numpy. Works without torch (batches are dicts of numpy arrays); with
torch installed, ``SluiceFeed.torch()`` wraps it in a ``torch.utils.data.IterableDataset``
that yields torch tensors.

    from sluice_feed import SluiceFeed
    feed = SluiceFeed(["out"], batch_size=8, seq_len=128, seed=1234, rank=0, world_size=1)
    for batch in feed:            # infinite: epochs follow each other
        ids, labels = batch["input_ids"], batch["labels"]   # int64 [8, 128]; labels -100 = ignore
        ...
        ckpt = feed.state_dict()   # after the batch: save it with the model
    feed.load_state_dict(ckpt)     # resume exactly at the next batch

The stream, the shuffle and the state are defined in ``pipeline/feed/mod.rs`` and
``pipeline/feed/shuffle.rs``; this file reproduces them exactly (same splitmix64 +
Fisher-Yates, same canonical shard order by sha256, same row checks, same batch layout),
so a Python trainer and ``sluice train`` see the same batches for the same seed. The
state dict is the Rust loader's ``FeedState`` (same keys), so either side can resume the
other's checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import pyarrow.parquet as pq

IGNORE = -100
STATE_MAGIC = "sluice-feed-state"
STATE_VERSION = 1
_M = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _fmix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M
    return z ^ (z >> 31)


def mix(x: int) -> int:
    """splitmix64 finaliser of ``x + GOLDEN``."""
    return _fmix((x + _GOLDEN) & _M)


def epoch_seed(seed: int, epoch: int) -> int:
    return mix(seed ^ mix(epoch))


def row_seed(seed: int, epoch: int, shard: int) -> int:
    return mix(epoch_seed(seed, epoch) ^ mix((shard + 0x5EED) & _M))


def permutation(n: int, seed: int) -> List[int]:
    """Fisher-Yates over 0..n with splitmix64 draws mapped by multiply-shift."""
    p = list(range(n))
    state = seed & _M
    for i in range(n - 1, 0, -1):
        state = (state + _GOLDEN) & _M
        j = (_fmix(state) * (i + 1)) >> 64
        p[i], p[j] = p[j], p[i]
    return p


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def discover(inputs: Sequence[str]) -> List[dict]:
    """Canonical list of packed shards: [{path, sha256, rows}] sorted by (sha256, path)."""
    cands = []
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
                d = os.path.join(inp, "shards") if os.path.isdir(os.path.join(inp, "shards")) else inp
                for name in os.listdir(d):
                    p = os.path.join(d, name)
                    if name.endswith(".parquet") and os.path.isfile(p):
                        cands.append((p, None))
        elif os.path.isfile(inp):
            cands.append((inp, None))
        else:
            raise FileNotFoundError(f"{inp}: no such run directory or Parquet file")
    shards = []
    for p, sha in cands:
        pf = pq.ParquetFile(p)
        if "input_ids" not in pf.schema_arrow.names:
            continue
        shards.append({"path": p, "sha256": sha or _sha256_file(p), "rows": pf.metadata.num_rows})
    shards.sort(key=lambda s: (s["sha256"], s["path"]))
    if not shards:
        raise ValueError(f"no packed shards (Parquet with an `input_ids` column) under {list(inputs)}")
    return shards


def fingerprint(shards: List[dict]) -> str:
    h = hashlib.sha256()
    for s in shards:
        h.update(f"{s['sha256']} {s['rows']}\n".encode())
    return h.hexdigest()


def _row_ok(length: int, n_pad: int, offs: np.ndarray) -> bool:
    if n_pad >= length:
        return False
    real = length - n_pad
    if len(offs) == 0 or offs[0] != 0:
        return False
    if len(offs) > 1 and not bool(np.all(offs[1:] > offs[:-1])):
        return False
    return bool(np.all(offs < real))


class _Shard:
    """One decoded shard: rows as numpy arrays; invalid rows are None."""

    def __init__(self, path: str):
        t = pq.read_table(path, columns=["input_ids", "doc_offsets", "n_pad"])
        ids_col = t.column("input_ids").combine_chunks()
        offs_col = t.column("doc_offsets").combine_chunks()
        pads = t.column("n_pad").to_pylist()
        ids_valid = ids_col.is_valid().to_pylist()
        offs_valid = offs_col.is_valid().to_pylist()
        ids_vals = ids_col.values.to_numpy(zero_copy_only=False).astype(np.uint32, copy=False)
        offs_vals = offs_col.values.to_numpy(zero_copy_only=False).astype(np.uint32, copy=False)
        io = ids_col.offsets.to_numpy()
        oo = offs_col.offsets.to_numpy()
        self.rows: List[Optional[tuple]] = []
        self.bad = 0
        for r in range(len(pads)):
            pad = pads[r]
            ok = ids_valid[r] and offs_valid[r] and pad is not None
            if ok:
                ids = ids_vals[io[r] : io[r + 1]]
                offs = offs_vals[oo[r] : oo[r + 1]]
                ok = _row_ok(len(ids), pad, offs)
            if ok:
                self.rows.append((ids, len(ids) - pad, offs))
            else:
                self.rows.append(None)
                self.bad += 1


def _fill_window(ids, real, offs, start, t, out, b):
    """Slot ``b`` of the batch from the window at ``start``; mirrors ``fill_window`` in Rust."""
    inp, lab, pos, dst = out["input_ids"][b], out["labels"][b], out["position_ids"][b], out["doc_start"][b]
    n = len(ids)
    starts = set(int(o) for o in offs)
    d_start = int(offs[np.searchsorted(offs, start, side="right") - 1])
    seg = max(d_start, start)
    for i in range(t):
        a = start + i
        inp[i] = ids[a] if a < n else 0
        if a < real:
            if a in starts and a > start:
                seg = a
            pos[i] = a - seg
            dst[i] = 1 if a == seg else 0
            if a + 1 < real and (a + 1) not in starts:
                lab[i] = ids[a + 1]
        else:
            if a == real or i == 0:
                seg = a
            pos[i] = a - seg
            dst[i] = 1 if a == seg else 0


class SluiceFeed:
    """Rank-aware, resumable reader of packed shards (an iterable of numpy batches).

    Batch keys: ``input_ids`` (int64), ``labels`` (int64, -100 = ignore), ``position_ids``
    (int64, restart at each document), ``doc_start`` (uint8 document-boundary mask), all
    shaped ``[batch_size, seq_len]``, plus ``step`` and ``samples`` (list of
    ``(shard, row, window)``).
    """

    def __init__(self, data: Sequence[str], batch_size: int = 8, seq_len: int = 128, seed: int = 1234,
                 rank: int = 0, world_size: int = 1):
        if batch_size < 1 or seq_len < 1 or world_size < 1 or not (0 <= rank < world_size):
            raise ValueError("need batch_size >= 1, seq_len >= 1, 0 <= rank < world_size")
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        self.rank, self.world_size = rank, world_size
        self.shards = discover(data)
        self.fingerprint = fingerprint(self.shards)
        self.bad_rows = 0
        self._loaded = None  # (epoch, canon, _Shard, perm)
        self._set_cursor(0, 0, 0, 0, 0, 0)

    # -- cursor ---------------------------------------------------------------------------
    def _set_cursor(self, epoch, shard, row, offset, samples, steps, epoch_samples=0):
        self.epoch, self.shard, self.row, self.offset = epoch, shard, row, offset
        self.samples, self.steps, self._epoch_samples = samples, steps, epoch_samples
        self._order = permutation(len(self.shards), epoch_seed(self.seed, epoch))
        self._normalize()

    def _ensure_loaded(self):
        canon = self._order[self.shard]
        if self._loaded and self._loaded[0] == self.epoch and self._loaded[1] == canon:
            return
        if self._loaded and self._loaded[1] == canon:
            sh = self._loaded[2]
        else:
            sh = _Shard(self.shards[canon]["path"])
            self.bad_rows += sh.bad
        perm = permutation(len(sh.rows), row_seed(self.seed, self.epoch, canon))
        self._loaded = (self.epoch, canon, sh, perm)

    def _windows(self, row) -> int:
        # Windows holding at least one next-token target: ceil((real - 1) / seq_len).
        return 0 if row is None else -(-max(row[1] - 1, 0) // self.seq_len)

    def _normalize(self):
        seen = 0
        while True:
            if self.shard >= len(self.shards):
                if self._epoch_samples == 0 and seen >= len(self.shards):
                    raise ValueError("feed: the shards hold no usable packed rows")
                self.epoch += 1
                self.shard = self.row = self.offset = 0
                self._epoch_samples = 0
                self._order = permutation(len(self.shards), epoch_seed(self.seed, self.epoch))
            self._ensure_loaded()
            _, _, sh, perm = self._loaded
            while self.row < len(sh.rows):
                if self.offset < self._windows(sh.rows[perm[self.row]]):
                    return
                self.row += 1
                self.offset = 0
            self.shard += 1
            self.row = self.offset = 0
            seen += 1

    def _advance(self):
        self.offset += 1
        self.samples += 1
        self._epoch_samples += 1
        self._normalize()

    # -- batches --------------------------------------------------------------------------
    def next_batch(self) -> Dict[str, object]:
        bs, t, w = self.batch_size, self.seq_len, self.world_size
        out = {
            "input_ids": np.zeros((bs, t), dtype=np.int64),
            "labels": np.full((bs, t), IGNORE, dtype=np.int64),
            "position_ids": np.zeros((bs, t), dtype=np.int64),
            "doc_start": np.zeros((bs, t), dtype=np.uint8),
        }
        samples = []
        glob = bs * w
        mine = self.rank * bs
        for _ in range(glob):
            slot = self.samples % glob
            if mine <= slot < mine + bs:
                _, canon, sh, perm = self._loaded
                r = perm[self.row]
                ids, real, offs = sh.rows[r]
                _fill_window(ids, real, offs, self.offset * t, t, out, slot - mine)
                samples.append((canon, r, self.offset))
            self._advance()
        out["step"] = self.steps
        out["samples"] = samples
        self.steps += 1
        return out

    def __iter__(self) -> Iterator[Dict[str, object]]:
        while True:
            yield self.next_batch()

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The Rust ``FeedState``: where the next batch starts, plus what must not change."""
        return {
            "magic": STATE_MAGIC, "version": STATE_VERSION,
            "epoch": self.epoch, "shard": self.shard, "row": self.row, "offset": self.offset,
            "samples": self.samples, "steps": self.steps,
            "shards_sha256": self.fingerprint, "n_shards": len(self.shards),
            "world_size": self.world_size, "batch_size": self.batch_size,
            "seq_len": self.seq_len, "seed": self.seed,
        }

    def load_state_dict(self, st: dict) -> None:
        problems = []
        if st.get("magic") != STATE_MAGIC or st.get("version") != STATE_VERSION:
            problems.append(f"state is {st.get('magic')} v{st.get('version')}, want {STATE_MAGIC} v{STATE_VERSION}")
        if st.get("shards_sha256") != self.fingerprint:
            problems.append(
                f"the shards changed since the checkpoint ({st.get('n_shards')} shards, fingerprint "
                f"{str(st.get('shards_sha256'))[:16]}; now {len(self.shards)} shards, {self.fingerprint[:16]})")
        if st.get("world_size") != self.world_size:
            problems.append(f"the world size changed: checkpoint {st.get('world_size')}, now {self.world_size}")
        for k in ("batch_size", "seq_len", "seed"):
            if st.get(k) != getattr(self, k):
                problems.append(f"{k} changed: checkpoint {st.get(k)}, now {getattr(self, k)}")
        if problems:
            raise ValueError("cannot resume the loader:\n  - " + "\n  - ".join(problems))
        self._set_cursor(st["epoch"], st["shard"], st["row"], st["offset"], st["samples"], st["steps"], 1)

    # -- torch ----------------------------------------------------------------------------
    def torch(self):
        """Wrap in a ``torch.utils.data.IterableDataset`` yielding torch tensors (needs torch)."""
        import torch
        from torch.utils.data import IterableDataset

        feed = self

        class _Dataset(IterableDataset):
            def __iter__(self):
                for b in feed:
                    yield {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in b.items()}

            def state_dict(self):
                return feed.state_dict()

            def load_state_dict(self, st):
                feed.load_state_dict(st)

        return _Dataset()


def _main(argv=None) -> int:
    """``python3 sluice_feed.py DATA... --batches N [--state-in F] [--state-out F]``: print
    each batch as one JSON line (used by the Rust parity test)."""
    import argparse

    ap = argparse.ArgumentParser(description=_main.__doc__)
    ap.add_argument("data", nargs="+")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--rank", type=int, default=0)
    ap.add_argument("--world-size", type=int, default=1)
    ap.add_argument("--state-in")
    ap.add_argument("--state-out")
    a = ap.parse_args(argv)
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
            "samples": [list(s) for s in b["samples"]],
            "state": feed.state_dict(),
        }))
    if a.state_out:
        with open(a.state_out, "w") as f:
            json.dump(feed.state_dict(), f)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
