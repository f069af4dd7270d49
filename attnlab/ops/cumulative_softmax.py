"""Attention whose weights depend on the key only: softmax over the keys of one score per key (P08's
"Non-approximate" attention), in linear time, with its explicit reference and a decoding step.

Given one score per token, s_j (e.g. P08's s_j = <SiLU(q_j), k_j> / sqrt(d_h)), the output is

    causal:         o_i = sum_{j <= i} exp(s_j) v_j / sum_{j <= i} exp(s_j)
    bidirectional:  o_i = sum_j exp(s_j) v_j / sum_j exp(s_j)      (the same for every i)

i.e. ``softmax((Q o K) 1^T)`` of P08's Eq. 7, read row by row (Xue et al. 2025, Eq. 7 and the recurrent
form Eq. 18). There is no query-key pair: a token's weight depends only on itself, so the denominator of
later rows only grows.

:func:`cumulative_softmax_attention` computes the causal form stably in chunks: with L_i the running
log-sum-exp of the scores (``torch.logcumsumexp``), o_i = sum_{j<=i} exp(s_j - L_i) v_j; inside a chunk of
C tokens the (C, C) weights exp(s_j - L_i) (all <= 1) are formed explicitly, and the chunks are joined
by o_i += exp(L_{c-1} - L_i) o_{c-1}, where c - 1 is the last token of the previous chunk (a short loop
over the N / C chunks). Time O(N C Dv), memory O(N C). Padded keys (``key_padding_mask``) get no
weight; a row that sees no real key gives zeros (as :func:`attnlab.ops.attention.attention`).
:func:`cumulative_softmax_attention_reference` forms the (N, N) weight matrix explicitly.
"""
from __future__ import annotations

import torch

from attnlab.utils.checks import check_key_padding_mask, check_positive_int, check_tensor, describe, fail

__all__ = ["cumulative_softmax_attention", "cumulative_softmax_attention_reference", "cumulative_softmax_step",
           "cumulative_softmax_init"]

#: score given to padded keys: far below any real score, finite so that no inf - inf appears
_MASKED = -1e9


def _check(s, v, key_padding_mask):
    check_tensor("s", s, ndim=3, floating=True)
    check_tensor("v", v, ndim=4, floating=True)
    if tuple(v.shape[:3]) != tuple(s.shape):
        fail("v", f"shape (B, H, N, Dv) with (B, H, N) = {tuple(s.shape)} (as s)", describe(v))
    if s.dtype != v.dtype:
        fail("s, v", "one dtype", f"{s.dtype}, {v.dtype}", TypeError)
    if key_padding_mask is None:
        return torch.ones(s.shape[0], 1, s.shape[2], dtype=torch.bool, device=s.device)
    return check_key_padding_mask("key_padding_mask", key_padding_mask, s.shape[0], s.shape[2])[:, None]


def cumulative_softmax_attention(s: torch.Tensor, v: torch.Tensor, *, causal: bool = True,
                                 key_padding_mask: torch.Tensor | None = None, chunk_size: int = 64) -> torch.Tensor:
    """Softmax over keys of per-key scores, applied to values: s (B, H, N), v (B, H, N, Dv) -> (B, H, N, Dv).

    See the module docstring for the formula and the chunked computation; ``key_padding_mask`` (B, N) bool.
    """
    real = _check(s, v, key_padding_mask)
    check_positive_int("chunk_size", chunk_size)
    s_m = torch.where(real, s, torch.full_like(s, _MASKED))
    if not causal:
        w = torch.softmax(s_m, dim=-1) * real
        has = real.any(-1, keepdim=True)
        return torch.einsum("bhn,bhnd->bhd", w, v)[:, :, None].expand_as(v) * has[..., None]
    b, h, n = s.shape
    lse = torch.logcumsumexp(s_m, dim=-1)
    c = min(chunk_size, n)
    pad = (-n) % c
    if pad:  # padded tail: masked keys that change nothing; their rows are cut off
        s_m = torch.cat([s_m, s_m.new_full((b, h, pad), _MASKED)], -1)
        lse = torch.cat([lse, lse[..., -1:].expand(b, h, pad)], -1)
        v = torch.cat([v, v.new_zeros(b, h, pad, v.shape[-1])], 2)
        real = torch.cat([real, real.new_zeros(real.shape[0], 1, pad)], -1)
    nc = (n + pad) // c
    s_c, lse_c = s_m.view(b, h, nc, 1, c), lse.view(b, h, nc, c, 1)
    tri = torch.ones(c, c, dtype=torch.bool, device=s.device).tril()
    valid = tri & real.view(real.shape[0], 1, nc, 1, c)
    # exp(s_j - L_i) <= 1 wherever it is used; clamping keeps the unused (future) entries finite for the backward
    w = torch.where(valid, torch.exp((s_c - lse_c).clamp_max(0.0)), 0.0)
    intra = w @ v.view(b, h, nc, c, -1)
    last = lse.view(b, h, nc, c)[..., -1]  # L at the end of each chunk
    carried, prev_o, prev_l = [], None, None
    for k in range(nc):  # join the chunks: the output entering chunk k is the last output of chunk k - 1
        if prev_o is None:
            carried.append(torch.zeros_like(intra[:, :, 0, 0]))
            prev_o = intra[:, :, 0, -1]
        else:
            carried.append(prev_o)
            prev_o = intra[:, :, k, -1] + torch.exp((prev_l - last[:, :, k]).clamp_max(0.0))[..., None] * prev_o
        prev_l = last[:, :, k]
    carry = torch.stack(carried, 2)  # (B, H, nc, Dv)
    enter = torch.cat([last.new_full((b, h, 1), _MASKED), last[:, :, :-1]], -1)  # L before each chunk
    decay = torch.exp((enter[..., None] - lse.view(b, h, nc, c)).clamp_max(0.0))
    o = intra + decay[..., None] * carry[:, :, :, None]
    has = real.cumsum(-1) > 0
    return (o.reshape(b, h, nc * c, -1) * has[..., None])[:, :, :n]


def cumulative_softmax_attention_reference(s: torch.Tensor, v: torch.Tensor, *, causal: bool = True,
                                           key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The definition: the (N, N) matrix A_ij = exp(s_j) / sum_{j' visible to i} exp(s_j') over the keys j
    visible to query i (j <= i when causal, real keys only), then A v. Rows that see no key give zeros."""
    real = _check(s, v, key_padding_mask)
    n = s.shape[-1]
    visible = real[:, :, None, :].expand(-1, -1, n, -1)
    if causal:
        visible = visible & torch.ones(n, n, dtype=torch.bool, device=s.device).tril()
    logits = s[:, :, None, :].expand(-1, -1, n, -1)
    logits = torch.where(visible, logits, torch.full_like(logits, float("-inf")))
    has = visible.any(-1, keepdim=True)
    a = torch.softmax(torch.where(has, logits, torch.zeros_like(logits)), dim=-1) * has
    return a @ v


def cumulative_softmax_init(batch_size: int, heads: int, v_dim: int, *, device=None, dtype=None) -> dict:
    """The decoding state before the first token: ``{"lse": (B, H) -inf, "o": (B, H, Dv) zeros}``."""
    return {"lse": torch.full((batch_size, heads), float("-inf"), device=device, dtype=dtype),
            "o": torch.zeros(batch_size, heads, v_dim, device=device, dtype=dtype)}


def cumulative_softmax_step(s_t: torch.Tensor, v_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
    """One causal step (P08's Eq. 18): s_t (B, H), v_t (B, H, Dv) -> (o_t (B, H, Dv), new state); O(Dv) per token."""
    lse = torch.logaddexp(state["lse"], s_t)
    o = torch.exp(state["lse"] - lse)[..., None] * state["o"] + torch.exp(s_t - lse)[..., None] * v_t
    return o, {"lse": lse, "o": o}
