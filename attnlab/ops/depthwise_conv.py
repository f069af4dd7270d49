"""Depthwise convolutions as shifted multiply-adds: the causal 1-D form over (B, N, C) and the N-D form.

``causal_depthwise_conv``: x (B, N, C) -> (B, N, C), y_t = sum_{j<K} w[c, j] x_{t-K+1+j}
(+ bias), zeros before the start: the short convolution of DeltaNet (P12), H3 and Mamba
(the module with a decoding step is :class:`attnlab.layers.ShortConv`).
``depthwise_conv``: same-size depthwise convolution over the trailing axes of (B, C, *grid)
(Hyena's and Hyena N-D's short convolutions, P15; VMamba's 2-D conv, P23).
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from attnlab.utils.checks import check_tensor, describe, fail

__all__ = ["causal_depthwise_conv", "depthwise_conv"]


def causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Causal depthwise conv: x (B, N, C), weight (C, K), bias (C,) or None -> (B, N, C).

    Computed as K shifted multiply-adds in the (B, N, C) layout: no transposes, and
    fast in float64 too (torch's depthwise conv1d falls back to a per-channel loop there).
    """
    x = check_tensor("x", x, ndim=3, floating=True)
    weight = check_tensor("weight", weight, ndim=2, floating=True)
    if weight.shape[0] != x.shape[-1]:
        fail("weight", f"shape (C, K) with C={x.shape[-1]}", describe(weight))
    kk, n = weight.shape[1], x.shape[1]
    xp = F.pad(x, (0, 0, kk - 1, 0))
    y = xp[:, kk - 1 :] * weight[:, kk - 1]
    for j in range(kk - 1):
        y = torch.addcmul(y, xp[:, j : j + n], weight[:, j])
    return y if bias is None else y + bias


def depthwise_conv(u: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
    """Depthwise conv over the trailing axes of u (B, C, *grid) with weight (C, *k): same-size output.

    ``causal=False``: centred odd kernels (zero padding k // 2 each side); ``causal=True``: taps on the
    current and previous positions of every axis (left padding k - 1). Shifted multiply-adds (small k).
    """
    nd = weight.dim() - 1
    ks = weight.shape[1:]
    if not causal and any(k % 2 == 0 for k in ks):
        fail("weight", "odd kernel sizes for a centred conv", describe(weight))
    pads = []
    for k in reversed(ks):
        pads += [k - 1, 0] if causal else [k // 2, k // 2]
    up = F.pad(u, pads)
    sizes = u.shape[-nd:]
    shape = (-1,) + (1,) * nd
    y = None
    for idx in itertools.product(*[range(k) for k in ks]):
        tap = up[(Ellipsis, *[slice(i, i + n) for i, n in zip(idx, sizes)])]
        w = weight[(slice(None), *idx)].reshape(shape)
        y = tap * w if y is None else torch.addcmul(y, tap, w)
    return y if bias is None else y + bias.reshape(shape)
