"""Short causal depthwise convolution (the ShortConv of DeltaNet, P12; also H3/Mamba).

x (B, N, C) -> (B, N, C): y_t = sum_{j<K} w[c, j] x_{t-K+1+j} (+ bias), zeros before
the start. :class:`ShortConv` also has a decoding path (``init_state``/``step``)
that keeps the last K-1 inputs.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.utils.checks import check_positive_int, check_tensor, describe, fail

__all__ = ["ShortConv", "causal_depthwise_conv", "depthwise_conv"]


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


class ShortConv(nn.Module):
    """Depthwise causal conv of width ``kernel_size`` over (B, N, C), optional SiLU after (P12 layer).

    Args:
        channels: C.
        kernel_size: K (paper and fla: 4).
        activation: ``"silu"`` or ``None``.
        bias: learnable bias.
    """

    def __init__(self, channels: int, kernel_size: int = 4, activation: str | None = "silu", bias: bool = False):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("kernel_size", kernel_size)
        if activation not in ("silu", None):
            fail("activation", "'silu' or None", activation)
        self.kernel_size = kernel_size
        self.activation = activation
        conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=bias)
        self.weight = nn.Parameter(conv.weight.detach()[:, 0].clone())
        self.bias = nn.Parameter(conv.bias.detach().clone()) if bias else None

    def _act(self, y):
        return F.silu(y) if self.activation == "silu" else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, N, C) -> (B, N, C), causal."""
        return self._act(causal_depthwise_conv(x, self.weight, self.bias))

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> torch.Tensor:
        """Zero buffer of the last K-1 inputs: (B, K-1, C)."""
        return torch.zeros(batch_size, self.kernel_size - 1, self.weight.shape[0], device=device, dtype=dtype)

    def step(self, x_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t (B, C) -> (y_t (B, C), new state (B, K-1, C))."""
        window = torch.cat([state, x_t.unsqueeze(1)], dim=1)  # (B, K, C)
        y = torch.einsum("bkc,ck->bc", window, self.weight)
        if self.bias is not None:
            y = y + self.bias
        return self._act(y), window[:, 1:]
