"""The unified sequence parallelism: Ulysses within groups of U ranks, ring attention across the W / U groups.

The W ranks hold contiguous sequence blocks in rank order and form a U x G grid (W = U * G): Ulysses
group g is ranks [g*U, (g+1)*U) (consecutive, so together they hold the contiguous chunk g of N/G
tokens), ring group u is ranks {u, U + u, 2U + u, ...}. An all-to-all inside the Ulysses group gives
rank g*U + u heads [u*H/U, (u+1)*H/U) of chunk g; ring attention over the ring group (whose members
hold the same heads, chunks 0..G-1 in ring order) computes exact attention over the whole sequence;
the inverse all-to-all returns the rank's own tokens. U = W is Ulysses, U = 1 is ring attention.
H must divide by U (not by W): the hybrid serves head counts that Ulysses alone cannot.

After Fang & Zhao 2024 (USP, "a unified sequence parallelism approach"). Motivation: P06.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from attnlab.distributed.comm import all_gather_cat
from attnlab.distributed.ring_attention import check_sequence_parallel_call, ring_attention
from attnlab.distributed.ulysses import check_heads_divisible, heads_to_sequence, sequence_to_heads
from attnlab.utils.checks import check_positive_int, fail

__all__ = ["HybridGroups", "make_hybrid_groups", "default_ulysses_size", "hybrid_attention"]


@dataclass(frozen=True)
class HybridGroups:
    """This rank's two process groups of a U x G hybrid layout (see the module docstring)."""

    ulysses: dist.ProcessGroup
    ring: dist.ProcessGroup
    ulysses_size: int
    ring_size: int


def default_ulysses_size(world: int, num_heads: int) -> int:
    """The largest U that divides both the world size and the head count (Ulysses as far as heads allow)."""
    return max(u for u in range(1, world + 1) if world % u == 0 and num_heads % u == 0)


def make_hybrid_groups(ulysses_size: int) -> HybridGroups:
    """Create the Ulysses and ring groups of every rank (a collective: every rank calls it, in the same order)."""
    world, rank = dist.get_world_size(), dist.get_rank()
    check_positive_int("ulysses_size", ulysses_size)
    if world % ulysses_size:
        fail("ulysses_size", f"a divisor of the world size {world}", ulysses_size)
    u_size, g_size = ulysses_size, world // ulysses_size
    mine = {}
    for g in range(g_size):
        ranks = list(range(g * u_size, (g + 1) * u_size))
        grp = dist.new_group(ranks)
        if rank in ranks:
            mine["ulysses"] = grp
    for u in range(u_size):
        ranks = [g * u_size + u for g in range(g_size)]
        grp = dist.new_group(ranks)
        if rank in ranks:
            mine["ring"] = grp
    return HybridGroups(mine["ulysses"], mine["ring"], u_size, g_size)


def hybrid_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    groups: HybridGroups,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Softmax attention over a sequence sharded contiguously across all ranks, Ulysses x ring (see module).

    Args:
        q, k, v: this rank's block, (B, H, n, D) with n = N / W; H % U == 0.
        groups: from :func:`make_hybrid_groups` (the same U on every rank).
        causal, key_padding_mask ((B, n) bool, this rank's block), scale, dropout_p (0): as ring_attention.
    Returns:
        This rank's block of the output, (B, H, n, Dv); differentiable.
    """
    scale = check_sequence_parallel_call(q, k, v, key_padding_mask, scale, dropout_p)
    check_heads_divisible(q.shape[1], groups.ulysses_size)
    qh, kh, vh = sequence_to_heads(q, k, v, groups.ulysses)
    kpm = all_gather_cat(key_padding_mask, 1, groups.ulysses) if key_padding_mask is not None else None
    out = ring_attention(qh, kh, vh, causal=causal, key_padding_mask=kpm, scale=scale, group=groups.ring)
    return heads_to_sequence(out, groups.ulysses)
