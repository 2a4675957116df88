#!/usr/bin/env python3
"""Train a small PyTorch Mixture-of-Experts decoder on sluice shards through sluice_feed.

    python3 benches/gpu_moe_check.py RUN_DIR [--steps 100] [--batch-size 16] [--seq-len 2048]
        [--workers 2] [--device cuda|cpu] [--layers 2] [--d-model 256] [--experts 8] [--top-k 2]

What it checks: that the loader keeps a GPU step fed. It prints, every ``--log-every``
steps, the loss, the loader's own throughput (tokens/s while the trainer waited for a
batch), the step throughput (tokens/s of the whole step, loader included), the share of
wall time spent waiting on the loader, and every MoE layer's expert load (share of routed
token slots per expert, %). Attention is causal and never crosses a document: segments
come from the batch's ``doc_start`` (the same boundaries as ``cu_seqlens``), positions from
``position_ids``. The vocabulary is compacted to the token ids present in the run (one
numpy pass over the shards), so the output layer stays small on CPU. On CPU it runs a few
steps at a small shape: ``--device cpu --steps 20 --batch-size 2 --seq-len 256``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
import sluice_feed as sf  # noqa: E402


class MoE(nn.Module):
    """Top-k routed SwiGLU experts plus a shared expert, Switch load-balancing loss."""

    def __init__(self, d: int, hidden: int, experts: int, top_k: int):
        super().__init__()
        self.router = nn.Linear(d, experts, bias=False)
        self.w_in = nn.Parameter(torch.randn(experts, d, 2 * hidden) * d ** -0.5)
        self.w_out = nn.Parameter(torch.randn(experts, hidden, d) * hidden ** -0.5)
        self.shared = nn.Sequential(nn.Linear(d, hidden), nn.SiLU(), nn.Linear(hidden, d))
        self.e, self.k = experts, top_k

    def forward(self, x: torch.Tensor):
        flat = x.reshape(-1, x.shape[-1])
        probs = self.router(flat).float().softmax(-1)
        gate, idx = probs.topk(self.k, dim=-1)
        gate = (gate / gate.sum(-1, keepdim=True)).to(x.dtype)
        out = torch.zeros_like(flat)
        load = torch.bincount(idx.reshape(-1), minlength=self.e).float()
        for e in range(self.e):
            tok, slot = (idx == e).nonzero(as_tuple=True)
            if tok.numel() == 0:
                continue
            a, b = (flat[tok] @ self.w_in[e]).chunk(2, dim=-1)
            out.index_add_(0, tok, (F.silu(a) * b) @ self.w_out[e] * gate[tok, slot, None])
        frac = load / load.sum()
        aux = self.e * (frac * probs.mean(0)).sum()
        return (out + self.shared(flat)).reshape(x.shape), aux, frac


class Block(nn.Module):
    def __init__(self, d: int, heads: int, moe: MoE):
        super().__init__()
        self.n1, self.n2 = nn.RMSNorm(d), nn.RMSNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.h, self.moe = heads, moe

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        b, t, d = x.shape
        q, k, v = self.qkv(self.n1(x)).view(b, t, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        y, aux, frac = self.moe(self.n2(x))
        return x + y, aux, frac


class Model(nn.Module):
    def __init__(self, vocab: int, d: int, layers: int, heads: int, experts: int, top_k: int, max_pos: int):
        super().__init__()
        self.emb, self.pos = nn.Embedding(vocab, d), nn.Embedding(max_pos, d)
        self.blocks = nn.ModuleList(Block(d, heads, MoE(d, 2 * d, experts, top_k)) for _ in range(layers))
        self.norm = nn.RMSNorm(d)
        nn.init.normal_(self.emb.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def forward(self, ids, pos, doc_start):
        seg = doc_start.long().cumsum(-1)
        t = ids.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=ids.device).tril()
        mask = ((seg[:, :, None] == seg[:, None, :]) & causal)[:, None]  # [B, 1, T, T]
        x = self.emb(ids) + self.pos(pos)
        aux, fracs = 0.0, []
        for blk in self.blocks:
            x, a, f = blk(x, mask)
            aux, fracs = aux + a, fracs + [f]
        return self.norm(x) @ self.emb.weight.T, aux, fracs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--aux", type=float, default=0.1, help="load-balancing loss weight")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    feed = sf.SluiceFeed([a.run_dir], batch_size=a.batch_size, seq_len=a.seq_len, seed=a.seed)
    vocab_ids = np.unique(np.concatenate([np.unique(sf.Shard(s["path"]).ids) for s in feed.shards]))
    lut = torch.from_numpy(vocab_ids.astype(np.int64)).to(dev)
    print(f"{len(feed.shards)} shards, {len(vocab_ids)} distinct token ids; device {dev}; "
          f"batch {a.batch_size} x {a.seq_len}; {a.workers} loader workers")
    model = Model(len(vocab_ids), a.d_model, a.layers, a.heads, a.experts, a.top_k, a.seq_len).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.1)
    print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    loader = iter(feed.dataloader(num_workers=a.workers, pin_memory=dev.type == "cuda"))
    tok = a.batch_size * a.seq_len
    wait = total = 0.0
    win_wait = win_total = 0.0
    win_steps = 0
    for step in range(a.steps):
        t0 = time.perf_counter()
        b = next(loader)
        t1 = time.perf_counter()
        ids = torch.searchsorted(lut, b["input_ids"].to(dev, non_blocking=True))
        lab = b["labels"].to(dev, non_blocking=True)
        lab = torch.where(lab >= 0, torch.searchsorted(lut, lab.clamp(min=0)), lab)
        logits, aux, fracs = model(ids, b["position_ids"].to(dev), b["doc_start"].to(dev))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), lab.reshape(-1), ignore_index=sf.IGNORE)
        opt.zero_grad(set_to_none=True)
        (loss + a.aux * aux).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        wait, total = wait + (t1 - t0), total + (t2 - t0)
        win_wait, win_total, win_steps = win_wait + (t1 - t0), win_total + (t2 - t0), win_steps + 1
        if (step + 1) % a.log_every == 0 or step + 1 == a.steps:
            load = " | ".join(" ".join(f"{100 * x:4.1f}" for x in f.tolist()) for f in fracs)
            print(f"step {step + 1:5d} loss {loss.item():7.4f} loader {win_steps * tok / max(win_wait, 1e-9) / 1e6:8.2f} M tok/s "
                  f"step {win_steps * tok / win_total / 1e3:9.1f} k tok/s wait {100 * win_wait / win_total:5.1f}% "
                  f"experts % [{load}]", flush=True)
            win_wait = win_total = 0.0
            win_steps = 0
    print(f"total: {a.steps} steps, {a.steps * tok / total / 1e3:.1f} k tok/s, loader wait {100 * wait / total:.1f}% "
          f"of {total:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
