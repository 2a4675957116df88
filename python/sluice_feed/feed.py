"""``SluiceFeed``: the Rust ``feed`` loader's stream, batch for batch (``pipeline/feed/mod.rs``)."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .shards import PathLike, Shard, ShardInfo, discover, fingerprint
from .shuffle import epoch_seed, permutation, row_seed

IGNORE = -100
STATE_MAGIC = "sluice-feed-state"
STATE_VERSION = 1

Batch = Dict[str, Any]
"""A batch: see :class:`SluiceFeed` for the keys."""


def fill_window(ids: np.ndarray, real: int, offs: np.ndarray, start: int, t: int,
                inp: np.ndarray, lab: np.ndarray, dst: np.ndarray) -> None:
    """Write the window at ``start`` of one packed row into one batch row (vectorized).

    ``inp``, ``lab`` and ``dst`` are that batch row's ``input_ids``, ``labels`` and
    ``doc_start``, freshly initialised to 0, ``IGNORE`` and 0. Mirrors ``fill_window`` in
    Rust: tokens past the row's end are 0; the label of position ``a`` is token ``a+1``
    unless ``a+1`` starts a document or is not a real token; a segment starts at the
    window start, at every document offset and where padding begins. Positions are
    derived from ``doc_start`` for the whole batch at once (:func:`positions`).
    """
    end = min(start + t, len(ids))
    inp[: end - start] = ids[start:end]
    n_lab = min(t, real - 1 - start)
    if n_lab > 0:
        lab[:n_lab] = ids[start + 1 : start + 1 + n_lab]
    # Document starts in (start, start + t]: the one at start + t only ends a label.
    lo = int(np.searchsorted(offs, start, side="right"))
    hi = int(np.searchsorted(offs, start + t, side="right"))
    b = offs[lo:hi] - start
    lab[b - 1] = IGNORE
    dst[0] = 1
    dst[b[b < t]] = 1
    if real < start + t:
        dst[real - start] = 1


def positions(doc_start: np.ndarray) -> np.ndarray:
    """Position inside the segment for every token of a ``[B, T]`` ``doc_start`` mask."""
    ar = np.arange(doc_start.shape[1], dtype=np.int64)
    return ar - np.maximum.accumulate(ar * doc_start, axis=1)


def varlen(doc_start: np.ndarray) -> Tuple[np.ndarray, int, np.ndarray]:
    """``(cu_seqlens, max_seqlen, seqs_per_row)`` of a ``[B, T]`` ``doc_start`` mask.

    ``cu_seqlens`` (int32, ``[S + 1]``) are the segment boundaries over the flattened
    ``[B * T]`` batch, as FlashAttention's ``flash_attn_varlen_func`` takes them; every row
    starts a segment, so no segment crosses rows. ``seqs_per_row`` (int32, ``[B]``) counts
    the segments of each row.
    """
    flat = doc_start.reshape(-1)
    cu = np.empty(int(flat.sum()) + 1, dtype=np.int32)
    cu[:-1] = np.flatnonzero(flat)
    cu[-1] = flat.size
    max_len = int(np.diff(cu).max()) if len(cu) > 1 else 0
    return cu, max_len, doc_start.sum(axis=1, dtype=np.int32)


class SluiceFeed:
    """Rank-aware, resumable reader of packed shards: an infinite iterable of numpy batches.

    Batch keys, arrays shaped ``[batch_size, seq_len]``:

    * ``input_ids`` int64; ``labels`` int64 (``-100`` = ignore); ``position_ids`` int64
      (restart at each document); ``doc_start`` uint8 (document-boundary mask);
    * ``cu_seqlens`` int32 ``[S + 1]``, ``max_seqlen`` int, ``seqs_per_row`` int32 ``[B]``:
      the variable-length attention boundaries (see :func:`varlen`);
    * ``step`` (int), ``samples`` (list of ``(shard, row, window)``) and ``state`` (the
      loader state after this batch: save it with a checkpoint taken after this step).
    """

    def __init__(self, data: Sequence[PathLike], batch_size: int = 8, seq_len: int = 128,
                 seed: int = 1234, rank: int = 0, world_size: int = 1,
                 _shards: Optional[List[ShardInfo]] = None):
        if batch_size < 1 or seq_len < 1 or world_size < 1 or not (0 <= rank < world_size):
            raise ValueError("need batch_size >= 1, seq_len >= 1, 0 <= rank < world_size")
        self.data = list(data)
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        self.rank, self.world_size = rank, world_size
        self.shards: List[ShardInfo] = _shards if _shards is not None else discover(self.data)
        self.fingerprint = fingerprint(self.shards)
        self.bad_rows = 0
        self._loaded: Optional[Tuple[int, int, Shard, np.ndarray, List[int]]] = None
        self._set_cursor(0, 0, 0, 0, 0, 0)

    # -- cursor ---------------------------------------------------------------------------
    def _set_cursor(self, epoch: int, shard: int, row: int, offset: int, samples: int,
                    steps: int, epoch_samples: int = 0) -> None:
        self.epoch, self.shard, self.row, self.offset = epoch, shard, row, offset
        self.samples, self.steps, self._epoch_samples = samples, steps, epoch_samples
        self._order = permutation(len(self.shards), epoch_seed(self.seed, epoch))
        self._normalize()

    def _ensure_loaded(self) -> None:
        canon = self._order[self.shard]
        if self._loaded and self._loaded[0] == self.epoch and self._loaded[1] == canon:
            return
        if self._loaded and self._loaded[1] == canon:
            sh = self._loaded[2]
        else:
            self._loaded = None  # free the previous shard before decoding the next
            sh = Shard(self.shards[canon]["path"])
            self.bad_rows += sh.bad
        perm = np.asarray(permutation(sh.rows, row_seed(self.seed, self.epoch, canon)), dtype=np.int64)
        win = sh.windows(self.seq_len)[perm].tolist()
        self._loaded = (self.epoch, canon, sh, perm, win)

    def _normalize(self) -> None:
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
            win = self._loaded[4]  # type: ignore[index]
            while self.row < len(win):
                if self.offset < win[self.row]:
                    return
                self.row += 1
                self.offset = 0
            self.shard += 1
            self.row = self.offset = 0
            seen += 1

    def _skip(self, k: int) -> None:
        """Move the cursor ``k`` samples ahead without building them (a row at a time)."""
        if self._loaded is None:  # unpickled in a DataLoader worker
            self._ensure_loaded()
        while k > 0:
            take = min(self._loaded[4][self.row] - self.offset, k)  # type: ignore[index]
            self.offset += take
            self.samples += take
            self._epoch_samples += take
            k -= take
            self._normalize()

    def skip_batches(self, n: int) -> None:
        """Skip ``n`` of this rank's batches (``n`` global steps) without building them."""
        self._skip(n * self.batch_size * self.world_size)
        self.steps += n

    # -- batches --------------------------------------------------------------------------
    def next_batch(self) -> Batch:
        """This rank's next batch; the cursor then sits at the next global step."""
        bs, t = self.batch_size, self.seq_len
        glob = bs * self.world_size
        mine = self.rank * bs
        inp = np.zeros((bs, t), dtype=np.int64)
        lab = np.full((bs, t), IGNORE, dtype=np.int64)
        dst = np.zeros((bs, t), dtype=np.uint8)
        samples: List[Tuple[int, int, int]] = []
        if self._loaded is None:  # unpickled in a DataLoader worker
            self._ensure_loaded()
        done = 0
        while done < glob:
            slot = self.samples % glob
            if mine <= slot < mine + bs:
                _, canon, sh, perm, _ = self._loaded  # type: ignore[misc]
                r = int(perm[self.row])
                ids, real, offs = sh.row(r)
                b = slot - mine
                fill_window(ids, real, offs, self.offset * t, t, inp[b], lab[b], dst[b])
                samples.append((canon, r, self.offset))
                self._skip(1)
                done += 1
            else:
                # Other ranks' samples: up to the next slot of ours (or the step's end).
                gap = (mine - slot) if slot < mine else glob - slot
                gap = min(gap, glob - done)
                self._skip(gap)
                done += gap
        cu, max_len, per_row = varlen(dst)
        out: Batch = {
            "input_ids": inp, "labels": lab, "position_ids": positions(dst), "doc_start": dst,
            "cu_seqlens": cu, "max_seqlen": max_len, "seqs_per_row": per_row,
            "step": self.steps, "samples": samples,
        }
        self.steps += 1
        out["state"] = self.state_dict()
        return out

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self.next_batch()

    # -- state ----------------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """The Rust ``FeedState``: where the next batch starts, plus what must not change."""
        return {
            "magic": STATE_MAGIC, "version": STATE_VERSION,
            "epoch": self.epoch, "shard": self.shard, "row": self.row, "offset": self.offset,
            "samples": self.samples, "steps": self.steps,
            "shards_sha256": self.fingerprint, "n_shards": len(self.shards),
            "world_size": self.world_size, "batch_size": self.batch_size,
            "seq_len": self.seq_len, "seed": self.seed,
        }

    def load_state_dict(self, st: Dict[str, Any]) -> None:
        """Resume at the batch after the one ``st`` was taken from; refuses changed data,
        world size, batch size, sequence length or seed, naming each difference."""
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
        if not problems and not (0 <= int(st["shard"]) < len(self.shards)):
            problems.append(f"state names shard position {st['shard']} of {len(self.shards)}")
        if problems:
            raise ValueError("cannot resume the loader:\n  - " + "\n  - ".join(problems))
        self._set_cursor(int(st["epoch"]), int(st["shard"]), int(st["row"]), int(st["offset"]),
                         int(st["samples"]), int(st["steps"]), 1)

    # -- copies and torch -----------------------------------------------------------------
    def clone(self) -> "SluiceFeed":
        """An independent feed at the same cursor, sharing the discovered shard list."""
        c: SluiceFeed = object.__new__(SluiceFeed)
        c.__dict__.update(self.__dict__)  # decoded shards are never mutated: sharing is safe
        c._order = list(self._order)
        return c

    def __getstate__(self) -> Dict[str, Any]:
        # Pickled to DataLoader workers (spawn): the decoded shard is reloaded there.
        d = dict(self.__dict__)
        d["_loaded"] = None
        return d

    def __setstate__(self, d: Dict[str, Any]) -> None:
        self.__dict__.update(d)

    def torch(self) -> Any:
        """A ``torch.utils.data.IterableDataset`` over this feed (needs torch); see
        :class:`sluice_feed.torch_data.SluiceDataset`."""
        from .torch_data import SluiceDataset

        return SluiceDataset(self)

    def dataloader(self, num_workers: int = 0, **kwargs: Any) -> Any:
        """``torch.utils.data.DataLoader(self.torch(), batch_size=None, num_workers=...)``."""
        from .torch_data import dataloader

        return dataloader(self, num_workers=num_workers, **kwargs)
