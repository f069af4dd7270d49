"""k-means cross-attention (P25, kMaX-DeepLab): cluster centres updated by a hard assignment of the pixels.

Softmax cross-attention lets L object queries (cluster centres) read N pixels through a softmax over the
N pixels (the spatial axis). kMaX-DeepLab replaces it by the two steps of k-means:

1. assignment: every pixel goes to its closest centre, ``A = one_hot(argmax_L(Q K^T))``, an argmax over
   the *cluster* axis (per pixel), with no gradient (a stop-gradient, as in the paper);
2. update: each centre collects the values of its pixels, ``update = A V`` (a sum over pixels, the paper's
   normalisation), or their mean (``normalize="mean"``: ``A V / |cluster|``, the centre of k-means).

With L2-normalised centres and pixel features, and ``normalize="mean"``, the update is exactly one Lloyd
step of k-means (the test computes that step by hand). The layer around it adds the update to the queries
(a residual), so its output is ``C + update``.

:func:`kmeans_cross_attention` never builds the (L, N) one-hot matrix: the argmax gives each pixel's
cluster and ``scatter_add`` sums the values per cluster in O(N Dv) (the backward is a gather);
:func:`kmeans_cross_attention_reference` builds the explicit one-hot matrix (first maximum on ties) and
multiplies. Both take the affinities as ``q @ k^T`` or, through :func:`kmeans_update`, as given logits
(kMaX assigns by its mask logits, which are also supervised). Layout (B, H, L, D) / (B, H, N, D).
"""
from __future__ import annotations

import torch

from attnlab.ops.attention import check_qkv
from attnlab.utils.checks import check_choice, check_tensor, describe, fail

__all__ = ["kmeans_cross_attention", "kmeans_cross_attention_reference", "kmeans_update", "kmeans_update_reference",
           "kmeans_assignment", "NORMALIZE"]

#: how the per-cluster sum of values is normalised: "sum" (kMaX) or "mean" (k-means' centre)
NORMALIZE = ("sum", "mean")


def _check_logits_values(logits: torch.Tensor, v: torch.Tensor, normalize: str) -> None:
    check_tensor("logits", logits, ndim=4, floating=True)
    check_tensor("v", v, ndim=4, floating=True)
    if v.shape[:2] != logits.shape[:2] or v.shape[2] != logits.shape[3]:
        fail("v", f"shape (B, H, N, Dv) with (B, H, N) = {tuple(logits.shape[:2]) + (logits.shape[3],)} "
             "(logits are (B, H, L, N))", describe(v))
    if logits.shape[2] < 1:
        fail("logits", "at least one cluster (L >= 1)", describe(logits))
    if v.dtype != logits.dtype:
        fail("logits, v", "one dtype", f"{logits.dtype}, {v.dtype}", TypeError)
    check_choice("normalize", normalize, NORMALIZE)


def kmeans_assignment(logits: torch.Tensor) -> torch.Tensor:
    """The cluster of every pixel: ``argmax`` over the cluster axis of (B, H, L, N) logits -> (B, H, N) long.

    Ties go to the first (lowest-index) cluster. No gradient flows through an assignment.
    """
    check_tensor("logits", logits, ndim=4, floating=True)
    return logits.detach().argmax(dim=2)


def kmeans_update(logits: torch.Tensor, v: torch.Tensor, *, normalize: str = "sum") -> torch.Tensor:
    """Per-cluster sum (or mean) of the values of the pixels whose argmax over clusters is that cluster.

    Args:
        logits: (B, H, L, N) cluster-to-pixel affinities (kMaX: its mask logits).
        v: (B, H, N, Dv) pixel values.
        normalize: ``"sum"`` (kMaX-DeepLab) or ``"mean"`` (divide by the cluster size; an empty cluster gets 0).
    Returns:
        (B, H, L, Dv) updates; differentiable in ``v`` only (the assignment is a stop-gradient).
    """
    _check_logits_values(logits, v, normalize)
    b, h, l, _ = logits.shape
    idx = kmeans_assignment(logits)  # (B, H, N)
    out = v.new_zeros(b, h, l, v.shape[-1])
    out = out.scatter_add(2, idx.unsqueeze(-1).expand(-1, -1, -1, v.shape[-1]), v)
    if normalize == "mean":
        ones = torch.ones_like(idx, dtype=v.dtype)
        counts = torch.zeros(b, h, l, dtype=v.dtype, device=v.device).scatter_add_(2, idx, ones)
        out = out / counts.clamp_min(1.0).unsqueeze(-1)
    return out


def kmeans_update_reference(logits: torch.Tensor, v: torch.Tensor, *, normalize: str = "sum") -> torch.Tensor:
    """:func:`kmeans_update` through the explicit (B, H, L, N) one-hot assignment matrix and a matmul."""
    _check_logits_values(logits, v, normalize)
    lg = logits.detach()
    is_max = lg == lg.max(dim=2, keepdim=True).values
    # keep only the first maximum of every pixel's column (argmax's tie rule)
    one_hot = (is_max & (is_max.to(torch.int64).cumsum(dim=2) == 1)).to(v.dtype)
    out = torch.matmul(one_hot, v)
    if normalize == "mean":
        out = out / one_hot.sum(-1, keepdim=True).clamp_min(1.0)
    return out


def kmeans_cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                           normalize: str = "sum") -> torch.Tensor:
    """k-means cross-attention: centres q (B, H, L, D) read pixels k (B, H, N, D), v (B, H, N, Dv) -> (B, H, L, Dv).

    ``kmeans_update(q @ k^T, v)``: a hard argmax over the L clusters per pixel, then the sum (or mean) of
    each cluster's values. No softmax over the N pixels and no (L, N) probability matrix in the update;
    gradients reach ``v`` only.
    """
    check_qkv(q, k, v)
    return kmeans_update(torch.matmul(q, k.transpose(-2, -1)), v, normalize=normalize)


def kmeans_cross_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                                     normalize: str = "sum") -> torch.Tensor:
    """:func:`kmeans_cross_attention` through the explicit one-hot matrix (:func:`kmeans_update_reference`)."""
    check_qkv(q, k, v)
    return kmeans_update_reference(torch.matmul(q, k.transpose(-2, -1)), v, normalize=normalize)
