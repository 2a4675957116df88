"""sluice_feed: read sluice's packed shards for training, batch for batch like the Rust loader.

Needs pyarrow and numpy. Batches are dicts of numpy arrays; with torch installed,
``SluiceFeed.torch()`` gives a ``torch.utils.data.IterableDataset`` that splits the stream
across ``DataLoader`` workers (use ``batch_size=None``).

    from sluice_feed import SluiceFeed
    feed = SluiceFeed(["out"], batch_size=8, seq_len=128, seed=1234, rank=0, world_size=1)
    for batch in feed:            # infinite: epochs follow each other
        ids, labels = batch["input_ids"], batch["labels"]   # int64 [8, 128]; labels -100 = ignore
        cu = batch["cu_seqlens"]                            # int32 segment boundaries (varlen attention)
        ckpt = batch["state"]      # == feed.state_dict() after this batch: save it with the model
    feed.load_state_dict(ckpt)     # resume exactly at the next batch

The stream, shuffle and state are those of ``pipeline/feed/`` in Rust (same splitmix64 +
Fisher-Yates, same canonical shard order by sha256, same row checks, same batch layout,
same ``FeedState`` keys), so a Python trainer and ``sluice train`` see the same batches
for the same seed and can resume each other's checkpoints.
"""

from .feed import IGNORE, STATE_MAGIC, STATE_VERSION, Batch, SluiceFeed, fill_window, positions, varlen
from .megatron import export_megatron
from .shards import Shard, ShardInfo, discover, fingerprint
from .shuffle import epoch_seed, mix, permutation, row_seed

__version__ = "0.2.0"

__all__ = [
    "IGNORE", "STATE_MAGIC", "STATE_VERSION", "Batch", "SluiceFeed", "Shard", "ShardInfo",
    "discover", "epoch_seed", "export_megatron", "fill_window", "fingerprint", "mix",
    "permutation", "positions", "row_seed", "varlen",
]
