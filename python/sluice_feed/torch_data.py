"""PyTorch side: an ``IterableDataset`` that is safe under ``DataLoader(num_workers=n)``.

Worker ``i`` of ``n`` builds the rank's batches ``i, i+n, i+2n, ...`` (counted from the
dataset's start state) and skips the others without building them, so the DataLoader's
round-robin over workers yields exactly the single-process stream, in order. Each batch
carries ``state`` (the loader state after it); ``load_state_dict(batch["state"])`` on a
new dataset resumes at the next batch with any number of workers.

The dataset yields whole batches: use ``DataLoader(ds, batch_size=None, ...)``. Any other
``batch_size`` (including the default 1) would stack batches into a new leading dimension;
it is refused with an error saying so.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any, Dict, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .feed import Batch, SluiceFeed


def _auto_batch_size() -> Optional[int]:
    """The DataLoader batch size when our generator is driven by an auto-batching fetcher."""
    f: Optional[FrameType] = sys._getframe(2)
    for _ in range(6):
        if f is None:
            return None
        s = f.f_locals.get("self")
        if type(s).__name__ == "_IterableDatasetFetcher":
            if not getattr(s, "auto_collation", False):
                return None
            idx = f.f_locals.get("possibly_batched_index")
            return len(idx) if idx is not None else -1
        f = f.f_back
    return None


def to_torch(b: Batch) -> Dict[str, Any]:
    """The batch with numpy arrays turned into tensors (zero-copy)."""
    return {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in b.items()}


class SluiceDataset(IterableDataset):  # type: ignore[type-arg]
    """``IterableDataset`` of whole batches (dicts of tensors) from a :class:`SluiceFeed`."""

    def __init__(self, feed: SluiceFeed):
        super().__init__()
        self._start = feed.clone()

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        bs = _auto_batch_size()
        if bs is not None:
            raise TypeError(
                "sluice_feed yields whole batches ([batch_size, seq_len] per item, batch size set "
                "on SluiceFeed), but this DataLoader batches them again"
                + (f" (batch_size={bs})" if bs > 0 else "")
                + ", which would add a leading dimension. Build it with "
                "DataLoader(dataset, batch_size=None, num_workers=...) or feed.dataloader(...).")
        info = get_worker_info()
        n, i = (1, 0) if info is None else (info.num_workers, info.id)
        feed = self._start.clone()
        feed.skip_batches(i)
        while True:
            yield to_torch(feed.next_batch())
            feed.skip_batches(n - 1)

    def state_dict(self) -> Dict[str, Any]:
        """Where this dataset starts (the state after the last batch trained on is
        ``batch["state"]``: save that one)."""
        return self._start.state_dict()

    def load_state_dict(self, st: Dict[str, Any]) -> None:
        """Start at the batch after the one ``st`` came from (any worker count)."""
        self._start.load_state_dict(st)


def dataloader(feed: SluiceFeed, num_workers: int = 0, **kwargs: Any) -> DataLoader:  # type: ignore[type-arg]
    """``DataLoader(feed.torch(), batch_size=None, num_workers=num_workers, **kwargs)``."""
    if kwargs.get("batch_size", None) is not None:
        raise TypeError("sluice_feed batches itself: leave the DataLoader's batch_size at None")
    kwargs["batch_size"] = None
    return DataLoader(SluiceDataset(feed), num_workers=num_workers, **kwargs)
