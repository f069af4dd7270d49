"""split_qkv: the fused q/k/v projection's output as (B, H, N, D) heads, normed and rotated.

Shared by the attention mixers whose ``qkv`` projection packs the queries, keys and values as
``(three, heads, head_dim)`` (softmax, sliding window, SSA, Combiner, SEA, CMHA): one place for the
head split, the optional per-head q/k norms (P02's qk-layernorm) and RoPE.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

__all__ = ["split_qkv"]


def split_qkv(t: torch.Tensor, num_heads: int, *, rope: nn.Module | None = None, offset: int = 0,
              q_norm: nn.Module | None = None, k_norm: nn.Module | None = None):
    """(B, N, 3C) -> q, k, v each (B, H, N, D); a single token (B, 3C) gives N = 1.

    ``q_norm`` / ``k_norm`` act on each head's D channels; ``rope`` (a :class:`~attnlab.layers.RotaryEmbedding`)
    rotates q and k by the positions ``offset .. offset + N - 1`` (after the norms).
    """
    pattern = "b n (three h d) -> three b h n d" if t.dim() == 3 else "b (three h d) -> three b h () d"
    q, k, v = rearrange(t, pattern, three=3, h=num_heads)
    if q_norm is not None:
        q, k = q_norm(q), k_norm(k)
    if rope is not None:
        q, k = rope(q, offset=offset), rope(k, offset=offset)
    return q, k, v
