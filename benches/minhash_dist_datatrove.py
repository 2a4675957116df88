"""datatrove's MinHash clustering step (MinhashDedupCluster, stage 3) on the pairs that
`benches/minhash_dist.rs --pairs-out DIR` wrote, for a side-by-side time and peak memory.

    python3 -m venv /tmp/venv-scale && /tmp/venv-scale/bin/pip install datatrove regex tokenizers
    /tmp/venv-scale/bin/python benches/minhash_dist_datatrove.py DIR BUCKETS

Prints wall seconds, peak RSS and datatrove's `to_remove` count (documents it removes;
sluice's phase 3 reports its own `duplicates` count for the same pairs).
"""

import resource
import sys
import tempfile
import time

from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupCluster


def main():
    src, buckets = sys.argv[1], int(sys.argv[2])
    with tempfile.TemporaryDirectory() as out:
        step = MinhashDedupCluster(
            input_folder=src,
            output_folder=out,
            config=MinhashConfig(num_buckets=buckets),
        )
        t0 = time.time()
        step.run(None, 0, 1)
        wall = time.time() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        removed = step.stats.stats.get("to_remove")
        removed = getattr(removed, "total", removed)
        print(
            f"datatrove MinhashDedupCluster: {wall:.1f}s, peak RSS {rss / 2**30:.2f} GiB, "
            f"to_remove {removed}"
        )


if __name__ == "__main__":
    main()
