"""Ring attention: exact softmax attention over a sequence sharded across processes.

Each of W ranks holds a contiguous block of the sequence (queries, keys and
values of its tokens). Key/value blocks travel around the ring (send to rank+1,
receive from rank-1) while each rank folds them into an online softmax, so no
rank ever holds the full sequence or an N x N matrix: memory per rank is
O((N/W) * D + (N/W)^2). The backward pass sends (k, v, dk, dv) around the ring
once more, so each key block's gradient returns to its owner. Causal masking
skips blocks from later ranks entirely.

The result equals :func:`attnlab.ops.attention_reference` on the gathered
sequence (tested with 2 gloo processes). Layout (B, H, N/W, D) per rank.
Motivation: P06 (distributed multi-head attention towards million-scale
dependencies); algorithm after Liu et al. 2023 (Ring Attention).
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist

from attnlab.utils.checks import fail
from attnlab.ops.attention import check_qkv

__all__ = ["ring_attention", "shard_sequence", "gather_sequence"]


def _ring_pass(tensors: list[torch.Tensor], group) -> list[torch.Tensor]:
    """Send ``tensors`` to rank+1 and return what rank-1 sent (same shapes)."""
    world = dist.get_world_size(group)
    rank = dist.get_rank(group)
    send_to = dist.get_global_rank(group, (rank + 1) % world) if group is not None else (rank + 1) % world
    recv_from = dist.get_global_rank(group, (rank - 1) % world) if group is not None else (rank - 1) % world
    received = [torch.empty_like(t) for t in tensors]
    ops = [dist.P2POp(dist.isend, t.contiguous(), send_to, group) for t in tensors]
    ops += [dist.P2POp(dist.irecv, r, recv_from, group) for r in received]
    for req in dist.batch_isend_irecv(ops):
        req.wait()
    return received


def _block_mask(causal: bool, src: int, rank: int, n: int, device) -> torch.Tensor | None | str:
    """Mask of the (rank's queries, src's keys) block: None = all visible, "skip" = none visible."""
    if not causal or src < rank:
        return None
    if src > rank:
        return "skip"
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    """Accumulate low-precision inputs in float32; keep float32/float64 as they are."""
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


class _RingAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, scale, group):
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        n = q.shape[2]
        cd = _compute_dtype(q)
        qf = q.to(cd) * scale
        m = torch.full(q.shape[:3] + (1,), float("-inf"), dtype=cd, device=q.device)
        denom = torch.zeros_like(m)
        acc = torch.zeros(q.shape[:3] + (v.shape[-1],), dtype=cd, device=q.device)
        kb, vb = k, v
        for step in range(world):
            src = (rank - step) % world
            mask = _block_mask(causal, src, rank, n, q.device)
            if not (isinstance(mask, str) and mask == "skip"):
                s = qf @ kb.to(cd).transpose(-1, -2)
                if mask is not None:
                    s = s.masked_fill(~mask, float("-inf"))
                m_new = torch.maximum(m, s.amax(-1, keepdim=True))
                alpha = torch.exp(m - m_new)
                p = torch.exp(s - m_new)
                denom = denom * alpha + p.sum(-1, keepdim=True)
                acc = acc * alpha + p @ vb.to(cd)
                m = m_new
            if step < world - 1:
                kb, vb = _ring_pass([kb, vb], group)
        out = acc / denom
        lse = m + torch.log(denom)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal, ctx.scale, ctx.group = causal, scale, group
        return out.to(q.dtype)

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        causal, scale, group = ctx.causal, ctx.scale, ctx.group
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        n = q.shape[2]
        cd = _compute_dtype(q)
        dout = dout.to(cd)
        qf = q.to(cd)
        delta = (dout * out).sum(-1, keepdim=True)
        dq = torch.zeros_like(qf)
        kb, vb = k, v
        dkb = torch.zeros(k.shape, dtype=cd, device=k.device)
        dvb = torch.zeros(v.shape, dtype=cd, device=v.device)
        for step in range(world):
            src = (rank - step) % world
            mask = _block_mask(causal, src, rank, n, q.device)
            if not (isinstance(mask, str) and mask == "skip"):
                kf, vf = kb.to(cd), vb.to(cd)
                s = (qf @ kf.transpose(-1, -2)) * scale
                if mask is not None:
                    s = s.masked_fill(~mask, float("-inf"))
                p = torch.exp(s - lse)
                dvb = dvb + p.transpose(-1, -2) @ dout
                dp = dout @ vf.transpose(-1, -2)
                ds = p * (dp - delta) * scale
                dq = dq + ds @ kf
                dkb = dkb + ds.transpose(-1, -2) @ qf
            # Rotate W times in total so each block's (dk, dv) ends at its owner.
            kb, vb, dkb, dvb = _ring_pass([kb, vb, dkb, dvb], group)
        return dq.to(q.dtype), dkb.to(k.dtype), dvb.to(v.dtype), None, None, None


def ring_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    scale: float | None = None,
    group: dist.ProcessGroup | None = None,
) -> torch.Tensor:
    """Softmax attention over a sequence sharded contiguously across the ranks of ``group``.

    Args:
        q, k, v: this rank's block, (B, H, n, D) with n = N / world_size, the
            same n on every rank (rank r holds tokens [r*n, (r+1)*n)).
        causal: token i sees tokens <= i of the whole sequence.
        scale: logit scale, default D^-1/2.
        group: process group (default: the world).
    Returns:
        This rank's block of the output, (B, H, n, Dv). Differentiable.
    """
    if not dist.is_available() or not dist.is_initialized():
        fail("group", "an initialised torch.distributed process group (call init_process_group first)", "none")
    check_qkv(q, k, v)
    if k.shape[2] != q.shape[2]:
        fail("k", f"as many tokens per rank as q ({q.shape[2]}): ring attention shards one sequence", tuple(k.shape))
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if not math.isfinite(scale):
        fail("scale", "a finite float", scale)
    return _RingAttention.apply(q, k, v, causal, scale, group)


def shard_sequence(x: torch.Tensor, dim: int = 2, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """This rank's contiguous block of ``x`` along ``dim`` (N must divide by the world size)."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    if x.shape[dim] % world:
        fail("x", f"a length along dim {dim} divisible by the world size {world}", tuple(x.shape))
    return x.chunk(world, dim=dim)[rank].contiguous()


def gather_sequence(x: torch.Tensor, dim: int = 2, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """Concatenate every rank's block along ``dim`` (not differentiable; for checks and outputs)."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts, dim=dim)
