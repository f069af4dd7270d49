"""The Hyena operator (Poli et al. 2023) as the ``hyena`` mixer, and the parts ``hyena_nd`` (P15) shares.

Hyena of order K (K = 2 or 3): a linear projection to K+1 streams x_0..x_{K-1}, v,
a short depthwise convolution on each, then K-1 rounds of
``v <- h_o * (v . x_{K-1-o}) + bias_o . (v . x_{K-1-o})`` (elementwise gate, then a
long convolution by FFT with an *implicit* filter h_o), and ``y = out_proj(v . x_0)``.

Implicit filters (Hyena Sec. 3.3): positional features of the offset t
(t / L, cos and sin at ``(emb_dim - 1) / 2`` frequencies) -> a small FFN with sine
activations (learnable frequency) -> times an exponential-decay window
exp(-|t| / L * |alpha_c|) with per-channel rates spread between a slow and a fast
decay. L is ``max_len`` for 1-D Hyena (so a filter tap depends only on its offset,
not on the input length) and the grid side for Hyena N-D.

P15 carries this to grids: :mod:`attnlab.mixers.hyena_nd` builds on
:class:`HyenaBase` (projections, gates, the recurrence of long convolutions) and
:class:`ImplicitFilter` from here.
"""
from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from attnlab.utils.checks import check_positive_int, fail
from attnlab.utils.precision import upcast
from attnlab.mixers.base import Capabilities, TokenMixer
from attnlab.mixers.registry import register
from attnlab.ops.fft_conv import fft_long_conv
from attnlab.ops.depthwise_conv import depthwise_conv

__all__ = ["Hyena", "HyenaBase", "ImplicitFilter", "positional_features", "check_order"]


def positional_features(offsets: torch.Tensor, length: float, emb_dim: int) -> torch.Tensor:
    """Hyena's positional features of (signed) offsets: (n,) -> (n, emb_dim) = [t/L, cos(f w), sin(f w)].

    w = 2 pi t / L and ``(emb_dim - 1) // 2`` frequencies f linearly spaced in
    [1e-4, bands - 1], as in the Hyena reference code.
    """
    bands = (emb_dim - 1) // 2
    t = offsets.unsqueeze(-1)
    f = torch.linspace(1e-4, max(bands - 1, 1e-4), bands, dtype=offsets.dtype, device=offsets.device)
    w = 2 * math.pi * t / length
    return torch.cat([t / length, torch.cos(f * w), torch.sin(f * w)], dim=-1)


class _Sin(nn.Module):
    """sin(freq * x) with a learnable per-feature frequency (Hyena's filter activation)."""

    def __init__(self, dim: int, w: float):
        super().__init__()
        self.freq = nn.Parameter(torch.full((dim,), float(w)))

    def forward(self, x):
        return torch.sin(self.freq * x)


class ImplicitFilter(nn.Module):
    """Positional features -> FFN with sine activations -> decay window: offsets (n,) -> taps (n, channels).

    Args:
        channels: filter channels produced (C * number of long convs).
        emb_dim: positional feature size (odd: t plus cos/sin pairs).
        width: FFN width (Hyena's ``filter_order``, 64).
        inner: number of inner (width x width) layers (2).
        sin_freq: initial frequency of the sine activations.
        fast_decay, slow_decay, target: the window's rates: channel c decays to
            ``target`` at |t|/L between ``fast_decay`` and ``slow_decay`` (0.3, 1.5, 1e-2).
    """

    def __init__(self, channels: int, emb_dim: int = 17, width: int = 64, inner: int = 2, sin_freq: float = 1.0,
                 fast_decay: float = 0.3, slow_decay: float = 1.5, target: float = 1e-2):
        super().__init__()
        check_positive_int("emb_dim", emb_dim)
        if emb_dim < 3 or emb_dim % 2 == 0:
            fail("emb_dim", "an odd int >= 3 (t plus cos/sin pairs)", emb_dim)
        self.emb_dim = emb_dim
        layers: list[nn.Module] = [nn.Linear(emb_dim, width), _Sin(width, sin_freq)]
        for _ in range(inner):
            layers += [nn.Linear(width, width), _Sin(width, sin_freq)]
        layers.append(nn.Linear(width, channels, bias=False))
        self.mlp = nn.Sequential(*layers)
        max_decay, min_decay = math.log(target) / fast_decay, math.log(target) / slow_decay
        self.register_buffer("rates", torch.linspace(min_decay, max_decay, channels).abs(), persistent=False)

    def features(self, offsets: torch.Tensor, length: float) -> torch.Tensor:
        """Positional features of the offsets (n, emb_dim)."""
        return positional_features(offsets, length, self.emb_dim)

    def window(self, offsets: torch.Tensor, length: float) -> torch.Tensor:
        """Exponential-decay window (n, channels)."""
        return torch.exp(-(offsets.abs() / length).unsqueeze(-1) * self.rates.to(offsets.dtype))

    def forward(self, offsets: torch.Tensor, length: float) -> torch.Tensor:
        """Filter taps at the given offsets: (n,) -> (n, channels), in the offsets' dtype.

        Features and window are computed in the offsets' dtype (pass fp32 offsets for a bf16
        module: offsets past 256 are not even representable in bf16); the FFN runs in its
        weights' dtype (or autocast's).
        """
        h = self.mlp(self.features(offsets, length).to(self.mlp[0].weight.dtype))
        return h.to(offsets.dtype) * self.window(offsets, length)


def check_order(order: object) -> int:
    """Hyena's order: 2 or 3 (number of gates; order - 1 long convolutions); clear error otherwise."""
    check_positive_int("order", order)
    if order not in (2, 3):
        fail("order", "2 or 3 (number of gates; order - 1 long convolutions)", order)
    return order


class HyenaBase(TokenMixer):
    """Shared parts of ``hyena`` and ``hyena_nd``: projections, gates, the recurrence of long convolutions.

    Subclasses supply the short convolution and the filters.
    """

    def _init_common(self, dim, order, short_conv_bias=True):
        self.order = check_order(order)
        self.in_proj = nn.Linear(dim, (order + 1) * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.randn(order - 1, dim))

    def _gate_and_convolve(self, u, long_conv, mask):
        """u: (B, (K+1) C, *spatial) after the short conv -> (B, C, *spatial)."""
        *xs, v = u.split(self.dim, dim=1)
        for o, x_i in enumerate(reversed(xs[1:])):
            v = v * x_i
            if mask is not None:
                v = v * mask
            v = long_conv(v, o) + v * self.bias[o].view(-1, *([1] * (v.dim() - 2)))
        return v * xs[0]


@register("hyena", test_kwargs={"order": 2, "filter_width": 8, "emb_dim": 5, "max_len": 16})
class Hyena(HyenaBase):
    """Hyena operator (the 1-D operator P15 builds on), x (B, N, C) -> (B, N, C); O(N log N).

    Causal: short conv of width ``short_kernel`` over past tokens, long filters on
    offsets 0..N-1 (causal by zero padding the FFT). Bidirectional: centred short
    conv and long filters on offsets -(N-1)..N-1. Padded tokens are zeroed before
    every convolution, so they affect nothing.

    Args:
        dim: channel width C.
        order: 2 (one long conv, two gates) or 3 (two long convs).
        filter_width: width of the implicit filter's FFN (64).
        filter_inner: inner FFN layers (2).
        emb_dim: positional feature size (odd).
        max_len: L of the positional features / decay window (filter taps depend on t / L).
        short_kernel: width of the short depthwise conv (3).
        sin_freq: initial frequency of the filter's sine activations.
    """

    capabilities = Capabilities(causal=True, bidirectional=True, key_padding_mask=True, complexity="O(N log N)",
                                paper="P15")

    def __init__(self, dim: int, order: int = 2, filter_width: int = 64, filter_inner: int = 2, emb_dim: int = 17,
                 max_len: int = 1024, short_kernel: int = 3, sin_freq: float = 1.0):
        super().__init__(dim)
        self._init_common(dim, order)
        self.max_len = check_positive_int("max_len", max_len)
        self.short_kernel = check_positive_int("short_kernel", short_kernel)
        if short_kernel % 2 == 0:
            fail("short_kernel", "an odd width (centred when bidirectional)", short_kernel)
        c = (order + 1) * dim
        conv = nn.Conv1d(c, c, short_kernel, groups=c)  # for its default init
        self.short_weight = nn.Parameter(conv.weight.detach()[:, 0].clone())
        self.short_bias = nn.Parameter(conv.bias.detach().clone())
        self.filter = ImplicitFilter((order - 1) * dim, emb_dim, filter_width, filter_inner, sin_freq)

    def kernels(self, n: int, causal: bool, *, dtype=None, device=None) -> torch.Tensor:
        """Long-conv filters (order - 1, C, N) for causal, (order - 1, C, 2N - 1) centred otherwise.

        ``dtype``: of the offsets and the taps (default: the weights', fp32 for bf16 weights).
        """
        dtype = dtype or upcast(self.in_proj.weight).dtype
        lo = 0 if causal else -(n - 1)
        offsets = torch.arange(lo, n, dtype=dtype, device=device)
        h = self.filter(offsets, float(self.max_len))  # (m, (K-1) C)
        return rearrange(h, "m (o c) -> o c m", o=self.order - 1)

    def mix(self, x, *, grid, causal, key_padding_mask):
        b, n, _ = x.shape
        u = self.in_proj(x)
        mask = None
        if key_padding_mask is not None:
            mask = key_padding_mask.unsqueeze(1).to(x.dtype)  # (B, 1, N)
            u = u * key_padding_mask.unsqueeze(-1).to(x.dtype)
        u = depthwise_conv(u.transpose(1, 2), self.short_weight, self.short_bias, causal=causal)
        k = self.kernels(n, causal, dtype=upcast(x).dtype, device=x.device)  # the FFT conv runs in fp32 for bf16
        y = self._gate_and_convolve(u, lambda v, o: fft_long_conv(v, k[o], causal=causal), mask)
        return self.out_proj(y.transpose(1, 2))
