"""Axial attention mixer (P19): attention along each axis of an image grid in turn."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from attnlab.utils.checks import describe, fail
from attnlab.mixers.base import Capabilities, TokenMixer, check_num_heads
from attnlab.mixers.registry import register
from attnlab.ops.axial import axial_attention

__all__ = ["AxialAttention", "shift_down"]

ROWS, COLS = 1, 0  # grid axes of an (H, W) image: along a row = axis 1, along a column = axis 0


def shift_down(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, H, N, D) on an (H_img, W) grid -> row i holds row i - 1 (row 0 zeros): P19's ``shift_down``."""
    b, h, n, d = x.shape
    rows = x.reshape(b, h, grid[0], grid[1], d)
    return F.pad(rows[:, :, :-1], (0, 0, 0, 0, 1, 0)).reshape(b, h, n, d)


@register("axial", test_kwargs={"num_heads": 2}, test_grid=(3, 4))
class AxialAttention(TokenMixer):
    """Axial attention (P19, Axial Transformers), x (B, N, C) on an (H, W) grid -> (B, N, C).

    One multi-head attention layer (one qkv and one output projection, the parameters of
    softmax attention) whose attention runs along the grid axes in turn, O(N (H + W) d):

    * bidirectional (``axis=None``): along rows, then along columns over the row outputs,
      so every token reaches every other one in one layer;
    * causal (``axis=None``), P19's masked form for raster-order autoregressive models:
      the outer context ``u = shift_down(col_masked(row_unmasked(v)))`` carries all rows
      above, then a masked row attention over ``v + u`` adds the row so far, so token
      (i, j) depends on exactly the tokens at or before it in raster order;
    * ``axis=0`` / ``axis=1``: a single column / row attention (masked along the axis
      when causal), P19's individual layers, to stack as the paper does.

    Deviation from P19: the paper stacks separate row and column layers (each with its own
    projections and MLP); here the passes of one layer share q, k, v (values flow through
    the passes), which keeps softmax attention's parameter count for drop-in comparisons.
    Use ``axis=0/1`` layers alternating to get the paper's layer layout.

    Args:
        dim: channel width C (divisible by ``num_heads``).
        num_heads: heads H.
        axis: None (all axes in turn, see above), 0 (columns) or 1 (rows).
        qkv_bias: bias on the qkv projection.
        proj_drop: dropout after the output projection.
    """

    capabilities = Capabilities(causal=True, bidirectional=True, grid="required", grid_dims=(2,),
                                key_padding_mask=True, complexity="O(N (H+W))", paper="P19")

    def __init__(self, dim: int, num_heads: int = 4, axis: int | None = None, qkv_bias: bool = False,
                 proj_drop: float = 0.0):
        super().__init__(dim)
        check_num_heads(dim, num_heads)
        if axis is not None and (isinstance(axis, bool) or axis not in (0, 1)):
            fail("axis", "None (all axes in turn), 0 (columns) or 1 (rows)", describe(axis))
        self.num_heads = num_heads
        self.axis = axis
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def mix(self, x, *, grid, causal, key_padding_mask):
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)

        def attend(values, axis, masked):
            return axial_attention(q, k, values, grid, axis, causal=masked, key_padding_mask=key_padding_mask)

        if self.axis is not None:
            o = attend(v, self.axis, causal)
        elif not causal:
            o = attend(attend(v, ROWS, False), COLS, False)
        else:
            u = shift_down(attend(attend(v, ROWS, False), COLS, True), grid)
            o = attend(v + u, ROWS, True)
        return self.proj_drop(self.proj(rearrange(o, "b h n d -> b n (h d)")))
