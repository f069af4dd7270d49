"""How much an attention map depends on its query: the Jensen-Shannon divergence between the rows of different queries.

P30 (Isomer) observed that a vanilla fusion transformer's attention is almost the same for every
query at the low-level stages (a global context) and query-specific at the high-level stages
(semantic). :func:`query_dependence` measures that on a recorded (..., N, M) map: the mean
Jensen-Shannon divergence, in bits (in [0, 1]), between the rows of two different queries of the
same map, over ``num_pairs`` query pairs drawn with a fixed seed (all pairs when there are fewer).
0: every query attends the same way (query-independent); 1: queries attend to disjoint keys.
"""
from __future__ import annotations

import math

import torch

from attnlab.analysis.attention_similarity import attention_js
from attnlab.utils.checks import check_positive_int, check_tensor, describe, fail

__all__ = ["query_dependence"]


def query_dependence(probs: torch.Tensor, *, num_pairs: int = 4096, seed: int = 0) -> float:
    """Mean JS divergence (bits) between the attention rows of two different queries of one map.

    Args:
        probs: (..., N, M) attention probabilities (rows sum to 1), N >= 2 queries; the leading dims
            (batch, heads) are separate maps, and pairs are taken within a map.
        num_pairs: query pairs per map (drawn uniformly among the N (N - 1) ordered pairs, fixed ``seed``);
            all pairs are used when there are fewer.
    Returns:
        A float in [0, 1].
    """
    check_tensor("probs", probs, floating=True)
    if probs.dim() < 2 or probs.shape[-2] < 2:
        fail("probs", "an attention map (..., N, M) with N >= 2 queries", describe(probs))
    check_positive_int("num_pairs", num_pairs)
    n = probs.shape[-2]
    if n * (n - 1) <= num_pairs:
        i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        keep = i != j
        i, j = i[keep], j[keep]
    else:
        g = torch.Generator().manual_seed(seed)
        i = torch.randint(0, n, (num_pairs,), generator=g)
        j = (i + torch.randint(1, n, (num_pairs,), generator=g)) % n  # j != i
    p = probs.detach().double()
    return float(attention_js(p[..., i, :], p[..., j, :])) / math.log(2)
