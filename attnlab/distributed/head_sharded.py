"""P06's distributed multi-head attention: heads sharded across ranks, queries processed in blocks, exact.

P06 (He & Kabic 2023) proposes, as the core of a system for million-scale dependencies, exact
multi-head attention whose heads are split across devices and whose queries are processed in
blocks on each device, so that no device materialises more than ``block x N`` scores per head it
owns (vanilla attention materialises B x H x N x N). Every rank holds the whole sequence (q, k, v
replicated, as after a projection of replicated activations); rank r computes heads
[r*H/W, (r+1)*H/W) with :func:`attnlab.ops.blocked_attention.blocked_attention`, and an all-gather
assembles all heads on every rank. Communication: one all-gather of the output, B x H x N x Dv
elements in total (each rank sends its H/W heads).
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from attnlab.distributed.comm import all_gather_cat
from attnlab.distributed.ulysses import check_heads_divisible
from attnlab.ops.attention import check_qkv
from attnlab.ops.blocked_attention import blocked_attention
from attnlab.utils.checks import fail

__all__ = ["head_sharded_attention", "head_range"]


def head_range(num_heads: int, rank: int, world: int) -> tuple[int, int]:
    """The ``[start, stop)`` heads rank ``rank`` of ``world`` computes (H must divide by W)."""
    check_heads_divisible(num_heads, world)
    per = num_heads // world
    return rank * per, (rank + 1) * per


class _GatherHeads(torch.autograd.Function):
    @staticmethod
    def forward(ctx, local, start, group):
        ctx.start, ctx.size = start, local.shape[1]
        return all_gather_cat(local, 1, group)

    @staticmethod
    def backward(ctx, grad):
        # every rank holds the same upstream gradient; this rank's heads came from its own computation
        return grad.narrow(1, ctx.start, ctx.size), None, None


def head_sharded_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    block_size: int = 512,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    group: dist.ProcessGroup | None = None,
) -> torch.Tensor:
    """Exact attention with heads sharded across the ranks of ``group`` and queries in blocks (P06).

    Args:
        q: (B, H, N, D), k: (B, H, M, D), v: (B, H, M, Dv): the same full tensors on every rank; H % W == 0.
        block_size: queries per block (scores held at once per rank: B x H/W x block x M).
        causal, key_padding_mask ((B, M) bool), scale: as :func:`attnlab.ops.attention_reference`.
        group: process group (default: the world).
    Returns:
        (B, H, N, Dv), all heads, the same on every rank; equal to dense attention. Differentiable under the
        replicated-loss convention: the upstream gradient must be the same on every rank, and the gradients
        of q, k, v on a rank cover its own heads only (zero elsewhere); their sum over ranks is the full
        gradient.
    """
    if not dist.is_available() or not dist.is_initialized():
        fail("group", "an initialised torch.distributed process group (call init_process_group first)", "none")
    check_qkv(q, k, v)
    start, stop = head_range(q.shape[1], dist.get_rank(group), dist.get_world_size(group))
    local = blocked_attention(q[:, start:stop], k[:, start:stop], v[:, start:stop], block_size=block_size,
                              causal=causal, key_padding_mask=key_padding_mask, scale=scale)
    return _GatherHeads.apply(local, start, group)
