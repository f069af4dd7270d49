"""The ``hyena_nd`` mixer: N-dimensional Hyena for spatial inductive bias (Zimerman & Wolf 2023, P15).

P15 carries Hyena (:mod:`attnlab.mixers.hyena`) to grids: a 3x3 (N-D) depthwise short
conv, and N-D implicit filters, either the product of per-axis filters
(``filter_mode="product"``: h = h_1 (x) h_2 ...) or one FFN on the concatenated
per-axis features (``"joint"``), N-D FFT convolution.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from attnlab.utils.checks import check_choice, check_positive_int, fail
from attnlab.utils.precision import upcast
from attnlab.mixers.base import Capabilities
from attnlab.mixers.hyena import HyenaBase, ImplicitFilter
from attnlab.mixers.registry import register
from attnlab.ops.depthwise_conv import depthwise_conv
from attnlab.ops.fft_conv import fft_long_conv_nd

__all__ = ["HyenaND"]


@register("hyena_nd", test_kwargs={"order": 2, "filter_width": 8, "emb_dim": 5}, test_grid=(3, 4))
class HyenaND(HyenaBase):
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
        """Filters (order - 1, C, *ksize): ksize = 2 n_a - 1 (centred) or n_a (quadrant) per axis.

        ``dtype``: of the offsets and the taps (default: the weights', fp32 for bf16 weights).
        """
        dtype = dtype or upcast(self.in_proj.weight).dtype
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
            h = f.mlp(torch.cat(feats, dim=-1).to(f.mlp[0].weight.dtype)).to(dtype)
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
        k = self.kernels(tuple(grid), dtype=upcast(x).dtype, device=x.device)  # the FFT conv runs in fp32 for bf16
        quadrant = self.kernel == "quadrant"
        y = self._gate_and_convolve(u, lambda v, o: fft_long_conv_nd(v, k[o], nd, causal=quadrant), mask)
        return self.out_proj(y.reshape(b, self.dim, n).transpose(1, 2))
