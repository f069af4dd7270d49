"""Ulysses sequence parallelism: all-to-all from sequence shards to head shards, local attention, and back.

Each of W ranks holds a contiguous block of N/W tokens for all H heads. One all-to-all (q, k and v
together) gives every rank the whole sequence for H/W heads; it runs ordinary softmax attention
(:func:`attnlab.ops.attention.attention`, SDPA's flash kernel: O(N) memory) on them, and a second
all-to-all returns each rank its own tokens for all heads. Communication per rank and step: about
(3 + 1) * B * H * N * D / W elements sent in the forward pass and as many in the backward (each
all-to-all moves the (W-1)/W of a rank's tensor that belongs elsewhere). H must divide by W.

After Jacobs et al. 2023 (DeepSpeed-Ulysses); the unified hybrid with ring attention is
:mod:`attnlab.distributed.hybrid`. Motivation: P06.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from attnlab.distributed.comm import all_gather_cat, all_to_all
from attnlab.distributed.ring_attention import check_sequence_parallel_call
from attnlab.ops.attention import attention
from attnlab.utils.checks import fail

__all__ = ["ulysses_attention", "check_heads_divisible", "sequence_to_heads", "heads_to_sequence"]


def check_heads_divisible(num_heads: int, world: int, what: str = "q") -> None:
    """ValueError unless ``num_heads`` divides by ``world`` (Ulysses gives every rank H / W whole heads)."""
    if num_heads % world:
        fail(what, f"a head count divisible by the {world} ranks of the Ulysses group (each rank takes whole heads)",
             f"{num_heads} heads")


def sequence_to_heads(q, k, v, group) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, H, N/W, D) sequence shards of q, k, v -> (B, H/W, N, D) head shards, in one all-to-all (two when v's
    head dim differs from q's)."""
    if v.shape == q.shape:
        return all_to_all(torch.stack([q, k, v]), scatter_dim=2, gather_dim=3, group=group).unbind(0)
    qh, kh = all_to_all(torch.stack([q, k]), scatter_dim=2, gather_dim=3, group=group).unbind(0)
    return qh, kh, all_to_all(v, scatter_dim=1, gather_dim=2, group=group)


def heads_to_sequence(out: torch.Tensor, group) -> torch.Tensor:
    """(B, H/W, N, D) head shard -> (B, H, N/W, D) sequence shard (the inverse all-to-all)."""
    return all_to_all(out, scatter_dim=2, gather_dim=1, group=group)


def ulysses_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    group: dist.ProcessGroup | None = None,
) -> torch.Tensor:
    """Softmax attention over a sequence sharded contiguously across the ranks of ``group`` (Ulysses).

    Args:
        q, k, v: this rank's block of the sequence, (B, H, n, D) with n = N / W on every rank; H % W == 0.
        causal: token i sees tokens <= i of the whole sequence.
        key_padding_mask: this rank's block of the (B, N) mask, (B, n) bool, True = real token.
        scale: logit scale, default D^-1/2.
        dropout_p: must be 0.
        group: process group (default: the world).
    Returns:
        This rank's block of the output, (B, H, n, Dv); equal to single-process attention on the gathered
        sequence. Differentiable.
    """
    scale = check_sequence_parallel_call(q, k, v, key_padding_mask, scale, dropout_p)
    check_heads_divisible(q.shape[1], dist.get_world_size(group))
    qh, kh, vh = sequence_to_heads(q, k, v, group)
    kpm = all_gather_cat(key_padding_mask, 1, group) if key_padding_mask is not None else None
    return heads_to_sequence(attention(qh, kh, vh, causal=causal, key_padding_mask=kpm, scale=scale), group)
