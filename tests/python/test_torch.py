"""sluice_feed under torch's DataLoader: workers split the stream, resume across a change of
worker count, auto-batching refused."""

import numpy as np
import pytest

from conftest import need  # noqa: E402

torch = need("torch", "torch")
from torch.utils.data import DataLoader  # noqa: E402

import sluice_feed as sf  # noqa: E402

BS, T, SEED = 4, 256, 3
KEYS = ("input_ids", "labels", "position_ids", "doc_start", "cu_seqlens", "seqs_per_row")


def feed(run_dir, rank=0, world=1):
    return sf.SluiceFeed([run_dir], batch_size=BS, seq_len=T, seed=SEED, rank=rank, world_size=world)


def single_process(run_dir, n, rank=0, world=1):
    f = feed(run_dir, rank, world)
    return [f.next_batch() for _ in range(n)]


def same(a, b):
    for k in KEYS:
        assert torch.is_tensor(b[k]), k
        assert np.array_equal(a[k], b[k].numpy()), k
    assert b["input_ids"].dtype == torch.int64 and b["labels"].dtype == torch.int64
    assert b["cu_seqlens"].dtype == torch.int32
    assert a["step"] == b["step"] and a["max_seqlen"] == b["max_seqlen"]
    assert [tuple(s) for s in a["samples"]] == [tuple(s) for s in b["samples"]]
    assert a["state"] == b["state"]


def take(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("workers", [2, 4])
def test_workers_are_disjoint_and_complete(run_dir, workers):
    n = 6 * workers + 3
    ref = single_process(run_dir, n)
    got = take(feed(run_dir).dataloader(num_workers=workers), n)
    assert [b["input_ids"].shape for b in got] == [torch.Size([BS, T])] * n
    for a, b in zip(ref, got):
        same(a, b)
    keys = [tuple(s) for b in got for s in b["samples"]]
    assert len(keys) == len(set(keys)) == n * BS  # no batch or sample twice
    assert set(keys) == {tuple(s) for a in ref for s in a["samples"]}


def test_plain_dataloader_with_batch_size_none(run_dir):
    ref = single_process(run_dir, 9, rank=1, world=2)
    got = take(DataLoader(feed(run_dir, 1, 2).torch(), batch_size=None, num_workers=2), 9)
    for a, b in zip(ref, got):
        same(a, b)


@pytest.mark.parametrize("before,after", [(4, 2), (2, 3), (0, 4), (3, 0)])
def test_resume_with_another_worker_count(run_dir, before, after):
    n, m = 7, 10
    ref = single_process(run_dir, n + m)
    first = take(feed(run_dir).dataloader(num_workers=before), n)
    ckpt = first[-1]["state"]  # saved with the model after step n - 1
    ds = feed(run_dir).torch()
    ds.load_state_dict(ckpt)
    rest = take(DataLoader(ds, batch_size=None, num_workers=after), m)
    for a, b in zip(ref, first + rest):
        same(a, b)


@pytest.mark.parametrize("batch_size", [8, 1])
def test_auto_batching_is_refused(run_dir, batch_size):
    dl = DataLoader(feed(run_dir).torch(), batch_size=batch_size, num_workers=0)
    with pytest.raises(TypeError, match="batch_size=None"):
        next(iter(dl))
    with pytest.raises(TypeError, match="batch_size=None"):
        next(iter(DataLoader(feed(run_dir).torch(), batch_size=batch_size, num_workers=2)))


def test_default_dataloader_is_refused(run_dir):
    with pytest.raises(TypeError, match="batch_size=1"):
        next(iter(DataLoader(feed(run_dir).torch())))
    with pytest.raises(TypeError):
        feed(run_dir).dataloader(batch_size=8)


def test_cu_seqlens_drive_varlen_attention(run_dir):
    """Attention restricted by cu_seqlens equals attention with the doc_start block mask."""
    b = next(iter(feed(run_dir).dataloader()))
    torch.manual_seed(0)
    q = torch.randn(BS * T, 8)
    cu = b["cu_seqlens"].long()
    out = torch.empty_like(q)
    for s, e in zip(cu[:-1].tolist(), cu[1:].tolist()):
        x = q[s:e]
        att = (x @ x.T).masked_fill(torch.ones(e - s, e - s).triu(1).bool(), float("-inf"))
        out[s:e] = att.softmax(-1) @ x
    seg = b["doc_start"].reshape(-1).long().cumsum(0)
    full = (q @ q.T)
    allowed = (seg[:, None] == seg[None, :]) & torch.ones(BS * T, BS * T).tril().bool()
    ref = full.masked_fill(~allowed, float("-inf")).softmax(-1) @ q
    assert torch.allclose(out, ref, atol=1e-5)
    assert int(b["max_seqlen"]) == int((cu[1:] - cu[:-1]).max())
