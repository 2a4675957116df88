"""sluice_feed without torch: vectorized windows vs the per-token reference, cu_seqlens vs
the packed offsets read straight from Parquet, resume, and the Megatron export."""

import json
import os
import random

import numpy as np
import pyarrow.parquet as pq
import pytest

import sluice_feed as sf
from sluice_feed.feed import IGNORE


def reference_window(ids, real, offs, start, t):
    """The per-token loop of the Rust ``fill_window`` (and of the old Python script)."""
    inp, lab = [0] * t, [IGNORE] * t
    pos, dst = [0] * t, [0] * t
    starts = set(int(o) for o in offs)
    seg = start
    for i in range(t):
        a = start + i
        inp[i] = int(ids[a]) if a < len(ids) else 0
        if a < real:
            if a in starts and a > start:
                seg = a
            pos[i], dst[i] = a - seg, int(a == seg)
            if a + 1 < real and (a + 1) not in starts:
                lab[i] = int(ids[a + 1])
        else:
            if a == real or i == 0:
                seg = a
            pos[i], dst[i] = a - seg, int(a == seg)
    return inp, lab, pos, dst


def test_vectorized_window_equals_per_token_reference():
    rng = random.Random(7)
    for _ in range(3000):
        t = rng.choice([1, 2, 3, 5, 8, 16, 64])
        n = rng.randint(2, 200)
        pad = rng.randint(0, n - 2)
        real = n - pad
        k = rng.randint(0, min(real - 1, 12))
        offs = np.array([0] + sorted(rng.sample(range(1, real), k)), dtype=np.int64) if real > 1 else np.array([0])
        ids = np.array([rng.randint(1, 151_935) for _ in range(n)], dtype=np.uint32)
        w = (real - 1 + t - 1) // t
        for win in range(w):
            inp = np.zeros((1, t), np.int64)
            lab = np.full((1, t), IGNORE, np.int64)
            dst = np.zeros((1, t), np.uint8)
            sf.fill_window(ids, real, offs, win * t, t, inp[0], lab[0], dst[0])
            ri, rl, rp, rd = reference_window(ids, real, offs, win * t, t)
            ctx = (t, n, real, offs.tolist(), win)
            assert inp[0].tolist() == ri, ctx
            assert lab[0].tolist() == rl, ctx
            assert dst[0].tolist() == rd, ctx
            assert sf.positions(dst)[0].tolist() == rp, ctx


def packed_rows(run_dir):
    """Canonical shard list read independently: manifest sha256 order, then pyarrow rows."""
    with open(os.path.join(run_dir, "manifest.json")) as f:
        man = json.load(f)
    shards = sorted((s["sha256"], os.path.join(run_dir, s["path"])) for s in man["shards"])
    out = []
    for _, p in shards:
        if "input_ids" not in pq.ParquetFile(p).schema_arrow.names:
            continue
        out.append(pq.read_table(p, columns=["input_ids", "doc_offsets", "n_tokens", "n_pad"]).to_pylist())
    return out


def test_cu_seqlens_agree_with_packed_offsets(run_dir):
    rows = packed_rows(run_dir)
    bs, t = 4, 300
    feed = sf.SluiceFeed([run_dir], batch_size=bs, seq_len=t, seed=5)
    checked_docs = 0
    for _ in range(60):
        b = feed.next_batch()
        assert b["input_ids"].dtype == np.int64 and b["labels"].dtype == np.int64
        expect_cu = []
        for slot, (shard, row, window) in enumerate(b["samples"]):
            r = rows[shard][row]
            real = r["n_tokens"]
            assert real == len(r["input_ids"]) - r["n_pad"]
            start = window * t
            cuts = {0}
            cuts |= {o - start for o in r["doc_offsets"] if start < o < start + t}
            if real < start + t:
                cuts.add(real - start)  # padding is a segment of its own
            cuts = sorted(cuts)
            expect_cu += [slot * t + c for c in cuts]
            assert b["seqs_per_row"][slot] == len(cuts)
            # Positions count from each cut; tokens are the row's.
            bounds = cuts + [t]
            pos = np.concatenate([np.arange(e - s) for s, e in zip(bounds, bounds[1:])])
            assert b["position_ids"][slot].tolist() == pos.tolist()
            n_in = min(t, len(r["input_ids"]) - start)
            assert b["input_ids"][slot][:n_in].tolist() == r["input_ids"][start : start + n_in]
            checked_docs += len(cuts)
        expect_cu.append(bs * t)
        assert b["cu_seqlens"].dtype == np.int32
        assert b["cu_seqlens"].tolist() == expect_cu
        assert b["max_seqlen"] == max(np.diff(expect_cu))
    assert checked_docs > 240


def test_resume_and_skip_are_exact(run_dir):
    a = sf.SluiceFeed([run_dir], batch_size=3, seq_len=512, seed=9, rank=1, world_size=2)
    ref = [a.next_batch() for _ in range(30)]
    b = sf.SluiceFeed([run_dir], batch_size=3, seq_len=512, seed=9, rank=1, world_size=2)
    b.load_state_dict(json.loads(json.dumps(ref[11]["state"])))
    for want in ref[12:20]:
        got = b.next_batch()
        assert got["step"] == want["step"] and got["samples"] == want["samples"]
        assert np.array_equal(got["labels"], want["labels"])
    c = sf.SluiceFeed([run_dir], batch_size=3, seq_len=512, seed=9, rank=1, world_size=2)
    c.skip_batches(25)
    assert c.next_batch()["samples"] == ref[25]["samples"]
    assert c.state_dict() == ref[25]["state"]


def test_resume_refuses_changes(run_dir):
    st = sf.SluiceFeed([run_dir], batch_size=3, seq_len=512, seed=9).next_batch()["state"]
    other = sf.SluiceFeed([run_dir], batch_size=4, seq_len=512, seed=9, rank=0, world_size=2)
    with pytest.raises(ValueError) as e:
        other.load_state_dict(st)
    assert "world size changed" in str(e.value) and "batch_size changed" in str(e.value)


def read_mmidx(prefix):
    """Reader written from the MMIDIDX layout (megatron-core indexed_dataset.py)."""
    dtypes = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64,
              7: np.float32, 8: np.uint16}
    with open(prefix + ".idx", "rb") as f:
        buf = f.read()
    assert buf[:9] == b"MMIDIDX\x00\x00"
    version = int(np.frombuffer(buf, "<u8", 1, 9)[0])
    code = buf[17]
    n_seq = int(np.frombuffer(buf, "<u8", 1, 18)[0])
    n_doc = int(np.frombuffer(buf, "<u8", 1, 26)[0])
    off = 34
    lens = np.frombuffer(buf, "<i4", n_seq, off)
    off += 4 * n_seq
    ptrs = np.frombuffer(buf, "<i8", n_seq, off)
    off += 8 * n_seq
    docs = np.frombuffer(buf, "<i8", n_doc, off)
    off += 8 * n_doc
    assert off == len(buf) and version == 1
    data = np.fromfile(prefix + ".bin", dtype=dtypes[code])
    isz = np.dtype(dtypes[code]).itemsize
    seqs = [data[p // isz : p // isz + n].tolist() for p, n in zip(ptrs, lens)]
    return dtypes[code], seqs, docs


@pytest.mark.parametrize("unit", ["document", "row"])
def test_megatron_export_reads_back(run_dir, tmp_path, unit):
    prefix = str(tmp_path / "sluice_text_document")
    info = sf.export_megatron(run_dir, prefix, unit=unit)
    dtype, seqs, docs = read_mmidx(prefix)
    want = []
    for shard in packed_rows(run_dir):
        for r in shard:
            real = r["n_tokens"]
            ids = r["input_ids"]
            if unit == "row":
                want.append(ids[:real])
            else:
                cuts = r["doc_offsets"] + [real]
                want += [ids[a:b] for a, b in zip(cuts, cuts[1:])]
    assert dtype == np.int32  # Qwen2's vocabulary does not fit uint16
    assert seqs == want
    assert docs.tolist() == list(range(len(want) + 1))
    assert info["sequences"] == len(want) and info["tokens"] == sum(map(len, want))
    if unit == "document":
        # Every segment but possibly a row's last ends with EOS (the packed schema).
        n_rows = sum(len(s) for s in packed_rows(run_dir))
        assert sum(s[-1] != 151_643 for s in seqs) <= n_rows < len(seqs)


def test_megatron_core_reads_the_export(run_dir, tmp_path):
    """megatron-core's own IndexedDataset (CPU import; installed with --no-deps in CI)."""
    import warnings

    from conftest import need

    need("torch", "megatron")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idx = need("megatron.core.datasets.indexed_dataset", "megatron")
    prefix = str(tmp_path / "mc")
    info = sf.export_megatron([run_dir], prefix)
    _, seqs, docs = read_mmidx(prefix)
    ds = idx.IndexedDataset(prefix)
    assert len(ds) == info["sequences"] == len(seqs)
    assert ds.document_indices.tolist() == docs.tolist()
    for i in range(0, len(ds), 7):
        assert ds[i].tolist() == seqs[i]
