"""Second-order Taylor linear attention (Based, Arora et al. 2024; P08's "Approximate" attention).

The softmax kernel exp(x), x = q.k / sqrt(D), is replaced by its second-order Taylor polynomial
1 + x + x^2 / 2, which is positive for every x (its minimum is 1/2), so the normalised weights

    o_i = sum_{j in S_i} (1 + x_ij + x_ij^2 / 2) v_j / sum_{j in S_i} (1 + x_ij + x_ij^2 / 2)

(S_i = {j <= i} causal, all j bidirectional) are a proper weighted average. The polynomial is a dot
product of features, phi(q) . phi(k) = 1 + q.k / sqrt(D) + (q.k)^2 / (2 D) with
phi(x) = [1, x / D^(1/4), vec(x x^T) / (sqrt(2) sqrt(D))] of size 1 + D + D^2, so the causal form is
linear attention on phi (``attnlab.ops.linear_attention``: chunkwise, O(N (1 + D + D^2) Dv)), with an
O(1)-per-token decoding step.

* :func:`taylor_features` — phi;
* :func:`taylor_attention` — the chunkwise linear-time form, or (``method="auto"`` when it is cheaper: short
  sequences, since phi has 1 + D + D^2 entries) the quadratic form with the (N, N) polynomial weights;
* :func:`taylor_attention_reference` — the explicit (N, N) polynomial weights, normalised;
* :func:`taylor_attention_step` / :func:`taylor_attention_init` — decoding.

P08 (Xue et al. 2025, Eq. 6 and appendix I) follows Based; its appendix, as extracted from the PDF,
writes the output as a sum of three separately normalised orders, which can divide by q . sum(k)
near zero. This module uses Based's single normaliser (see docs/notes/language.md).
"""
from __future__ import annotations

import math

import torch

from attnlab.ops.attention import check_self_qkv
from attnlab.ops.linear_attention import linear_attention, linear_attention_step
from attnlab.utils.checks import check_choice, check_key_padding_mask

__all__ = ["METHODS", "taylor_features", "taylor_attention", "taylor_attention_reference", "taylor_attention_step",
           "taylor_attention_init"]


def taylor_features(x: torch.Tensor) -> torch.Tensor:
    """phi(x) for x (..., D): (..., 1 + D + D^2), so that phi(q) . phi(k) = 1 + q.k/sqrt(D) + (q.k)^2 / (2 D)."""
    d = x.shape[-1]
    second = (x[..., :, None] * x[..., None, :]).flatten(-2) / math.sqrt(2.0 * d)
    return torch.cat([torch.ones_like(x[..., :1]), x / d ** 0.25, second], dim=-1)


METHODS = ("auto", "linear", "quadratic")


def taylor_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = True,
                     key_padding_mask: torch.Tensor | None = None, chunk_size: int = 64,
                     eps: float = 1e-12, method: str = "auto") -> torch.Tensor:
    """Taylor attention: q, k (B, H, N, D), v (B, H, N, Dv) -> (B, H, N, Dv).

    ``key_padding_mask`` (B, N) bool: padded keys get no weight; a row without a real key gives zeros.
    ``method``: ``"linear"`` (chunkwise on the features, O(N (1 + D + D^2) Dv)), ``"quadratic"`` (the (N, N)
    weights, O(N^2 (D + Dv))) or ``"auto"`` (the one with fewer multiply-adds for this N; the same result).
    """
    check_self_qkv(q, k, v)
    check_choice("method", method, METHODS)
    n, d, dv = q.shape[2], q.shape[3], v.shape[3]
    if method == "quadratic" or (method == "auto" and n * (d + dv) < (1 + d + d * d) * (dv + 1)):
        return taylor_attention_reference(q, k, v, causal=causal, key_padding_mask=key_padding_mask)
    return linear_attention(taylor_features(q), taylor_features(k), v, causal=causal, feature_map="identity",
                            normalize=True, eps=eps, chunk_size=chunk_size, key_mask=key_padding_mask)


def taylor_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = True,
                               key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The definition: weights 1 + x + x^2/2 of x = q k^T / sqrt(D), masked (causal, padding), row-normalised, times v."""
    check_self_qkv(q, k, v)
    x = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    w = 1.0 + x + 0.5 * x * x
    n = q.shape[2]
    if causal:
        w = w * torch.ones(n, n, dtype=w.dtype, device=w.device).tril()
    if key_padding_mask is not None:
        check_key_padding_mask("key_padding_mask", key_padding_mask, q.shape[0], n)
        w = w * key_padding_mask[:, None, None, :].to(w.dtype)
    den = w.sum(-1, keepdim=True)
    return (w @ v) / torch.where(den > 0, den, torch.ones_like(den))


def taylor_attention_init(batch_size: int, heads: int, head_dim: int, v_dim: int, *, device=None,
                          dtype=None) -> torch.Tensor:
    """Zero decoding state (B, H, 1 + D + D^2, Dv + 1): the running sums of phi(k) v^T and of phi(k)."""
    return torch.zeros(batch_size, heads, 1 + head_dim + head_dim ** 2, v_dim + 1, device=device, dtype=dtype)


def taylor_attention_step(q_t: torch.Tensor, k_t: torch.Tensor, v_t: torch.Tensor, state: torch.Tensor,
                          eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """One causal step: q_t, k_t (B, H, D), v_t (B, H, Dv) -> (o_t (B, H, Dv), new state)."""
    return linear_attention_step(taylor_features(q_t), taylor_features(k_t), v_t, state, feature_map="identity",
                                 normalize=True, eps=eps)
