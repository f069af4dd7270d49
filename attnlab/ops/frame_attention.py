"""Convolutional temporal self-attention of P21 (ConvTSA): each frame's whole feature map is one token.

Given query, key and value feature maps (already produced by 3x3 convolutions in P21) of shape
(B, T, C, H, W), the C channels are split into ``num_heads`` groups; in each head, frame i's map
and frame j's map are flattened to vectors of D = (C / heads) * H * W entries and scored
``A_ij = <Q_i, K_j> / sqrt(D)`` (P21: the square root of the per-head channels times the map's
height and width), normalised by a softmax over the key frames j; the output map of frame i is
``sum_j softmax(A)_ij V_j``. Attention runs across frames only; space is kept whole.

:func:`frame_attention` reshapes to (B, heads, T, D) and calls :func:`attnlab.ops.attention.attention`
(SDPA; recorded by ``record_attention``); :func:`frame_attention_reference` loops over heads and
frame pairs with the formula above.
"""
from __future__ import annotations

import math

import torch

from attnlab.utils.checks import check_positive_int, check_tensor, describe, fail
from attnlab.ops.attention import attention

__all__ = ["frame_attention", "frame_attention_reference"]


def _check(q, k, v, num_heads, causal):
    for arg, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(arg, t, ndim=5, floating=True)
    if k.shape != v.shape:
        fail("v", f"the shape of k {tuple(k.shape)}", describe(v))
    if k.shape[0] != q.shape[0] or k.shape[2:] != q.shape[2:]:
        fail("k", f"shape (B, Tk, C, H, W) with B, C, H, W of q {tuple(q.shape)}", describe(k))
    if not (q.dtype == k.dtype == v.dtype):
        fail("q, k, v", "one dtype", f"{q.dtype}, {k.dtype}, {v.dtype}", TypeError)
    check_positive_int("num_heads", num_heads)
    if q.shape[2] % num_heads:
        fail("num_heads", f"a divisor of the channels C={q.shape[2]}", num_heads)
    if not isinstance(causal, bool):
        fail("causal", "a bool", describe(causal), TypeError)
    if causal and q.shape[1] != k.shape[1]:
        fail("causal", "False when queries and keys have different frame counts", f"Tq={q.shape[1]}, Tk={k.shape[1]}")


def frame_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, num_heads: int,
                    causal: bool = False) -> torch.Tensor:
    """ConvTSA over frames: q (B, Tq, C, H, W), k and v (B, Tk, C, H, W) -> (B, Tq, C, H, W).

    ``causal=True`` lets frame i attend to frames j <= i only (the masked self-attention of P21's decoders).
    """
    _check(q, k, v, num_heads, causal)
    b, tq, c, h, w = q.shape

    def heads(t):
        return t.reshape(b, t.shape[1], num_heads, (c // num_heads) * h * w).transpose(1, 2)

    d = (c // num_heads) * h * w
    out = attention(heads(q), heads(k), heads(v), causal=causal, scale=1.0 / math.sqrt(d))
    return out.transpose(1, 2).reshape(b, tq, c, h, w)


def frame_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, num_heads: int,
                              causal: bool = False) -> torch.Tensor:
    """The same by loops: for each head and frame pair, the sum of Q_i * K_j over the head's channels and the
    map, over sqrt(channels per head * H * W); softmax over j (j <= i when causal); weighted sum of V_j."""
    _check(q, k, v, num_heads, causal)
    b, tq, c, h, w = q.shape
    tk, ch = k.shape[1], c // num_heads
    out = torch.zeros_like(q)
    for head in range(num_heads):
        cs = slice(head * ch, (head + 1) * ch)
        for i in range(tq):
            keys = range(i + 1) if causal else range(tk)
            scores = torch.stack([(q[:, i, cs] * k[:, j, cs]).sum(dim=(1, 2, 3)) for j in keys], dim=1)
            probs = torch.softmax(scores / math.sqrt(ch * h * w), dim=1)
            out[:, i, cs] = sum(probs[:, n, None, None, None] * v[:, j, cs] for n, j in enumerate(keys))
    return out
