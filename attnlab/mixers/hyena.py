"""Hyena operators (Poli et al. 2023) as token mixers: 1-D ``hyena`` and the N-D ``hyena_nd`` of P15.

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

P15 (Zimerman & Wolf, "Multi-Dimensional Hyena for Spatial Inductive Bias") carries
this to grids: a 3x3 (N-D) depthwise short conv, and N-D implicit filters, either
the product of per-axis filters (``filter_mode="product"``: h = h_1 (x) h_2 ...) or
one FFN on the concatenated per-axis features (``"joint"``), N-D FFT convolution.
"""
from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from attnlab.utils.checks import check_choice, check_positive_int, fail
from attnlab.mixers.base import Capabilities, TokenMixer
from attnlab.mixers.registry import register
from attnlab.ops.fft_conv import fft_long_conv, fft_long_conv_nd
from attnlab.ops.short_conv import depthwise_conv

__all__ = ["Hyena", "HyenaND", "ImplicitFilter", "positional_features"]


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
        """Filter taps at the given offsets: (n,) -> (n, channels)."""
        return self.mlp(self.features(offsets, length)) * self.window(offsets, length)


def _check_order(order):
    check_positive_int("order", order)
    if order not in (2, 3):
        fail("order", "2 or 3 (number of gates; order - 1 long convolutions)", order)
    return order


class _HyenaBase(TokenMixer):
    """Shared parts: projections, gates, recurrence of long convs (subclasses supply conv + filters)."""

    def _init_common(self, dim, order, short_conv_bias=True):
        self.order = _check_order(order)
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
class Hyena(_HyenaBase):
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
        """Long-conv filters (order - 1, C, N) for causal, (order - 1, C, 2N - 1) centred otherwise."""
        dtype = dtype or self.in_proj.weight.dtype
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
        k = self.kernels(n, causal, dtype=x.dtype, device=x.device)
        y = self._gate_and_convolve(u, lambda v, o: fft_long_conv(v, k[o], causal=causal), mask)
        return self.out_proj(y.transpose(1, 2))


@register("hyena_nd", test_kwargs={"order": 2, "filter_width": 8, "emb_dim": 5}, test_grid=(3, 4))
class HyenaND(_HyenaBase):
    """Hyena N-D operator (P15), x (B, N, C) on a grid (H, W) (or (T, H, W)) -> (B, N, C); bidirectional.

    Per P15: in_proj to K+1 streams, depthwise short conv (3 per axis) over the
    grid, N-D implicit filters, N-D FFT long convolution, elementwise gates.
    ``kernel="centred"`` (default): filters on offsets -(n_a - 1)..n_a - 1 per axis,
    every token sees the whole grid; ``kernel="quadrant"``: the official code's
    causal-in-every-axis (top-left quadrant) filters on offsets 0..n_a - 1.
    ``filter_mode="product"``: h = prod over axes of per-axis implicit filters
    (each with its own FFN and window); ``"joint"``: one FFN on the concatenated
    per-axis features, times the product of the windows. Offsets are normalised by
    the grid side, so a model with a fixed grid has fixed-size filters.

    Args:
        dim: channel width C.
        order: 2 or 3.
        filter_mode: ``"product"`` or ``"joint"``.
        kernel: ``"centred"`` or ``"quadrant"``.
        filter_width, filter_inner, emb_dim, sin_freq: implicit filter FFN (see :class:`ImplicitFilter`).
        short_kernel: short conv width per axis (3, odd).
        max_dims: most grid axes the layer accepts (2 for images; 3 for (T, H, W)).
    """

    capabilities = Capabilities(causal=False, bidirectional=True, grid="required", grid_dims=(1, 2, 3),
                                key_padding_mask=True, complexity="O(N log N)", paper="P15")

    def __init__(self, dim: int, order: int = 2, filter_mode: str = "product", kernel: str = "centred",
                 filter_width: int = 64, filter_inner: int = 2, emb_dim: int = 17, short_kernel: int = 3,
                 sin_freq: float = 1.0, max_dims: int = 2):
        super().__init__(dim)
        self._init_common(dim, order)
        self.filter_mode = check_choice("filter_mode", filter_mode, ("product", "joint"))
        self.kernel = check_choice("kernel", kernel, ("centred", "quadrant"))
        self.short_kernel = check_positive_int("short_kernel", short_kernel)
        if short_kernel % 2 == 0:
            fail("short_kernel", "an odd width", short_kernel)
        c = (order + 1) * dim
        # one (C, k, ..., k) weight of max_dims axes (a fixed state dict); fewer-axis grids use its centre slice
        self.max_dims = check_positive_int("max_dims", max_dims)
        self.short_weight = nn.Parameter(torch.empty(c, *([short_kernel] * max_dims)))
        nn.init.kaiming_uniform_(self.short_weight.view(c, 1, -1), a=math.sqrt(5))
        self.short_bias = nn.Parameter(torch.zeros(c))
        ch = (order - 1) * dim
        if filter_mode == "product":
            self.filters = nn.ModuleList(ImplicitFilter(ch, emb_dim, filter_width, filter_inner, sin_freq)
                                         for _ in range(max_dims))
        else:
            self.joint = ImplicitFilter(ch, emb_dim, filter_width, filter_inner, sin_freq)
            self.joint.mlp[0] = nn.Linear(emb_dim * max_dims, filter_width)

    def _offsets(self, n, dtype, device):
        lo = 0 if self.kernel == "quadrant" else -(n - 1)
        return torch.arange(lo, n, dtype=dtype, device=device)

    def kernels(self, grid: tuple[int, ...], *, dtype=None, device=None) -> torch.Tensor:
        """Filters (order - 1, C, *ksize): ksize = 2 n_a - 1 (centred) or n_a (quadrant) per axis."""
        dtype = dtype or self.in_proj.weight.dtype
        nd = len(grid)
        offs = [self._offsets(n, dtype, device) for n in grid]
        if self.filter_mode == "product":
            h = None
            for ax, (n, o) in enumerate(zip(grid, offs)):
                h_ax = self.filters[ax](o, float(n))  # (m_a, ch)
                shape = [1] * nd + [h_ax.shape[-1]]
                shape[ax] = h_ax.shape[0]
                h = h_ax.view(shape) if h is None else h * h_ax.view(shape)
        else:
            f = self.joint
            mesh = torch.meshgrid(*offs, indexing="ij")
            feats = [f.features(m.reshape(-1), float(n)) for m, n in zip(mesh, grid)]
            feats += [torch.zeros_like(feats[0])] * (self.max_dims - nd)
            h = f.mlp(torch.cat(feats, dim=-1))
            for m, n in zip(mesh, grid):
                h = h * f.window(m.reshape(-1), float(n))
            h = h.view(*mesh[0].shape, -1)
        h = h.movedim(-1, 0)  # (ch, *ksize)
        return h.reshape(self.order - 1, self.dim, *h.shape[1:])

    def _short_conv(self, u, nd):
        k = self.short_kernel
        # a grid with fewer axes than max_dims uses the centre slice of the unused leading axes
        w = self.short_weight[(slice(None),) + (k // 2,) * (self.max_dims - nd) + (slice(None),) * nd]
        return depthwise_conv(u, w, self.short_bias)

    def mix(self, x, *, grid, causal, key_padding_mask):
        b, n, _ = x.shape
        nd = len(grid)
        if nd > self.max_dims:
            fail("grid", f"at most max_dims={self.max_dims} axes", grid)
        u = self.in_proj(x)
        mask = None
        if key_padding_mask is not None:
            u = u * key_padding_mask.unsqueeze(-1).to(x.dtype)
            mask = key_padding_mask.view(b, 1, *grid).to(x.dtype)
        u = u.transpose(1, 2).reshape(b, -1, *grid)
        u = self._short_conv(u, nd)
        k = self.kernels(tuple(grid), dtype=x.dtype, device=x.device)
        quadrant = self.kernel == "quadrant"
        y = self._gate_and_convolve(u, lambda v, o: fft_long_conv_nd(v, k[o], nd, causal=quadrant), mask)
        return self.out_proj(y.reshape(b, self.dim, n).transpose(1, 2))
