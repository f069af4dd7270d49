"""The ``neighborhood`` mixer: neighborhood / dilated neighborhood attention (NAT, DiNAT; P26), 1-D to 3-D."""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from attnlab.utils.checks import describe, fail
from attnlab.mixers.base import Capabilities, TokenMixer, check_num_heads
from attnlab.mixers.registry import register
from attnlab.ops.neighborhood import neighborhood_attention

__all__ = ["NeighborhoodAttention", "fit_window"]


def _pos_ints(arg: str, value) -> tuple[int, ...]:
    vals = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if not vals or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in vals):
        fail(arg, "a positive int or a tuple of positive ints", describe(value), TypeError)
    return vals


def fit_window(length: int, kernel: int, dilation: int) -> tuple[int, int]:
    """(kernel, dilation) fitted to an axis of ``length``: k * d <= length, k odd.

    The dilation is reduced first (down to 1), then the kernel to the largest odd size
    that fits, so a layer configured for big maps also runs on small ones (on an axis
    no longer than the kernel, NA is full attention along it).
    """
    dilation = max(1, min(dilation, length // kernel))
    if kernel > length:
        kernel = length if length % 2 else length - 1
    return kernel, dilation


@register("neighborhood", test_kwargs={"num_heads": 2, "kernel_size": 3, "dilation": (1, 2)}, test_grid=(3, 6))
class NeighborhoodAttention(TokenMixer):
    """Neighborhood attention / dilated NA (P26, NAT and DiNAT), x (B, N, C) -> (B, N, C).

    Each token attends to its k nearest tokens per axis (a k x k window on a 2D grid),
    the window clamped inside the map at the borders; with dilation d, within the
    tokens of the same residue i mod d (DiNA), which widens the receptive field at the
    same cost. Multi-head, qkv and output projections as in NAT, with the relative
    positional bias table (2k-1 per axis, per head) when ``rel_pos_bias``. 1D over the
    sequence when no grid is given (causal supported: the last k tokens): the sequence is
    then the 1 x N grid (1 x 1 x N for 3 axes) of the layer's axes, so the layer runs at its
    defaults and its bias table applies (the centre row: offset 0 along the unit axes). 2D / 3D
    on a grid (causal: up-and-left windows, NATTEN's semantics).

    Args:
        dim: channel width C (divisible by ``num_heads``).
        num_heads: heads H.
        kernel_size: odd k, or one per axis (a tuple also fixes the number of axes).
        dilation: d, or one per axis. Axes shorter than k * d get a smaller dilation,
            then a smaller kernel (see :func:`fit_window`).
        rel_pos_bias: learn the relative positional bias table of NAT/DiNAT; its shape
            needs the number of axes: ``len(kernel_size)`` for a tuple, else 2 (images).
            A grid of another dimensionality is then refused with a clear error.
        qkv_bias: bias on the qkv projection (NAT: True).
        proj_drop: dropout after the output projection. (NAT's dropout on the attention
            probabilities is not offered: the fused tiles never form them.)
    """

    capabilities = Capabilities(causal=True, bidirectional=True, grid="optional", grid_dims=(1, 2, 3),
                                key_padding_mask=True, complexity="O(N k^d)", paper="P26")

    def __init__(self, dim: int, num_heads: int = 4, kernel_size=7, dilation=1, rel_pos_bias: bool = True,
                 qkv_bias: bool = True, proj_drop: float = 0.0):
        super().__init__(dim)
        self.num_heads = check_num_heads(dim, num_heads)
        self.head_dim = dim // num_heads
        self.kernel_size = _pos_ints("kernel_size", kernel_size)
        if any(k % 2 == 0 for k in self.kernel_size):
            fail("kernel_size", "odd sizes (a window centred on the query)", kernel_size)
        self.dilation = _pos_ints("dilation", dilation)
        if not isinstance(rel_pos_bias, bool):
            fail("rel_pos_bias", "a bool", describe(rel_pos_bias), TypeError)
        self.bias_dims = len(self.kernel_size) if isinstance(kernel_size, (tuple, list)) else 2
        if isinstance(dilation, (tuple, list)) and isinstance(kernel_size, (tuple, list)) and len(dilation) != len(kernel_size):
            fail("dilation", f"one value per axis of kernel_size ({len(self.kernel_size)})", dilation)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        if rel_pos_bias:
            size = [2 * self._axis(self.kernel_size, i, self.bias_dims) - 1 for i in range(self.bias_dims)]
            self.rpb = nn.Parameter(torch.zeros(num_heads, *size))
            nn.init.trunc_normal_(self.rpb, std=0.02)
        else:
            self.rpb = None
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    @staticmethod
    def _axis(values: tuple[int, ...], i: int, nd: int) -> int:
        if len(values) == 1:
            return values[0]
        if len(values) != nd:
            fail("kernel_size/dilation", f"one value or {nd} values for a {nd}-D grid", values)
        return values[i]

    def _windows(self, grid: tuple[int, ...]):
        """Per-axis (kernel, dilation) fitted to ``grid``, and the rpb table sliced to match."""
        nd = len(grid)
        ks, ds = [], []
        for i, L in enumerate(grid):
            k, d = fit_window(L, self._axis(self.kernel_size, i, nd), self._axis(self.dilation, i, nd))
            ks.append(k)
            ds.append(d)
        rpb = None
        if self.rpb is not None:
            if nd != self.bias_dims:
                fail("grid", f"a {self.bias_dims}-D grid (this layer's rel_pos_bias table is {self.bias_dims}-D; "
                     f"use rel_pos_bias=False or kernel_size as a {nd}-tuple)", grid if nd > 1 else None)
            rpb = self.rpb
            for i, k in enumerate(ks):  # the centre of the table when the kernel was fitted down
                full = (self.rpb.shape[1 + i] + 1) // 2
                rpb = rpb.narrow(1 + i, full - k, 2 * k - 1)
        return tuple(ks), tuple(ds), rpb

    def mix(self, x, *, grid, causal, key_padding_mask):
        b, n, _ = x.shape
        # no grid: the 1 x N grid of the layer's axes (exactly 1-D NA along N, see the class doc)
        grid = tuple(grid) if grid is not None else (1,) * (self.bias_dims - 1) + (n,)
        ks, ds, rpb = self._windows(grid)
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        o = neighborhood_attention(q, k, v, ks, grid=grid, dilation=ds, causal=causal,
                                   rpb=rpb.to(q.dtype) if rpb is not None else None,
                                   key_padding_mask=key_padding_mask)
        return self.proj_drop(self.proj(rearrange(o, "b h n d -> b n (h d)")))
