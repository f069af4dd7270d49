"""Axial attention (P19, Ho et al. 2019): softmax attention along one axis of a grid.

Token ``(..., i_a, ...)`` attends to the tokens that share all its other coordinates,
i.e. along axis ``a`` only (optionally causal along it: ``j_a <= i_a``). The other axes
are folded into the batch, so the cost is O(N L_a d) instead of O(N^2 d). The axial
Transformer composes such layers (rows, then columns, with a shift for the masked
autoregressive form); that composition lives in the mixer (``attnlab.mixers.axial``).

:func:`axial_attention` runs one ``scaled_dot_product_attention`` call over all lines;
:func:`axial_attention_reference` is the dense ``softmax(Q K^T * scale, mask) V`` with the
explicit (N, N) "same line" mask.
"""
from __future__ import annotations

from typing import Sequence

import torch

from attnlab.utils.checks import check_grid, describe, fail
from attnlab.utils.precision import fp32_op
from attnlab.ops.attention import sdpa
from attnlab.ops.neighborhood import check_local_qkv, masked_dense_attention
from attnlab.ops.recording import is_recording, record

__all__ = ["axial_attention", "axial_attention_reference", "axial_mask"]


def _check(q, k, v, grid, axis, causal, key_padding_mask, scale) -> tuple[tuple[int, ...], int]:
    check_local_qkv(q, k, v, key_padding_mask, scale)
    grid = check_grid("grid", grid, q.shape[2])
    if isinstance(axis, bool) or not isinstance(axis, int):
        fail("axis", "an int (an axis of the grid)", describe(axis), TypeError)
    if not -len(grid) <= axis < len(grid):
        fail("axis", f"an axis of grid {grid}, in [-{len(grid)}, {len(grid)})", axis)
    if not isinstance(causal, bool):
        fail("causal", "a bool", describe(causal), TypeError)
    return grid, axis % len(grid)


def axial_mask(grid: Sequence[int], axis: int, causal: bool = False) -> torch.Tensor:
    """(N, N) bool mask of axial attention along ``axis`` of ``grid`` (True = may attend)."""
    grid = tuple(grid)
    coords = torch.stack(torch.meshgrid(*[torch.arange(g) for g in grid], indexing="ij"), -1).reshape(-1, len(grid))
    others = [i for i in range(len(grid)) if i != axis]
    same = (coords[:, None, others] == coords[None, :, others]).all(-1)
    if causal:
        same &= coords[None, :, axis] <= coords[:, None, axis]
    return same


@fp32_op
def axial_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grid: Sequence[int],
    axis: int,
    *,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention along ``axis`` of ``grid`` (P19), O(N L_axis d); forward and backward.

    Args:
        q, k, v: (B, H, N, D) in raster order of ``grid`` (v may have its own Dv).
        grid: spatial shape with prod == N, e.g. (H, W).
        axis: the axis attended along (0 = columns of an image: tokens of one column;
            1 = rows: tokens of one row).
        causal: only keys at or before the query along ``axis``.
        key_padding_mask: (B, N) bool, True = real key; a query whose line has no real
            key (in its causal part) gets zeros.
        scale: logit scale (default D^-1/2).
    Returns:
        (B, H, N, Dv), equal to :func:`axial_attention_reference`.
    """
    grid, axis = _check(q, k, v, grid, axis, causal, key_padding_mask, scale)
    if is_recording():
        out, probs = axial_attention_reference(q, k, v, grid, axis, causal=causal, key_padding_mask=key_padding_mask,
                                               scale=scale, return_probs=True)
        record(probs)
        return out
    b, h, n, _ = q.shape
    L = grid[axis]
    lines = n // L

    def to_lines(x):  # (B, H, N, D) -> (B, H * lines, L, D)
        return x.reshape(b, h, *grid, x.shape[-1]).movedim(2 + axis, -2).reshape(b, h * lines, L, x.shape[-1])

    qs, ks, vs = to_lines(q), to_lines(k), to_lines(v)
    if key_padding_mask is None:
        o = sdpa(qs, ks, vs, is_causal=causal, scale=scale)
    else:
        kp = key_padding_mask.reshape(b, *grid).movedim(1 + axis, -1).reshape(b, 1, lines, 1, L)
        mask = kp.expand(b, h, lines, 1, L).reshape(b, h * lines, 1, L)
        if causal:
            mask = mask & torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
        has_key = mask.any(-1, keepdim=True)
        o = sdpa(qs, ks, vs, attn_mask=mask | ~has_key, scale=scale)
        o = o * has_key.to(o.dtype)
    dv = o.shape[-1]
    shape = list(grid)
    del shape[axis]
    o = o.reshape(b, h, *shape, L, dv).movedim(-2, 2 + axis)
    return o.reshape(b, h, n, dv)


@fp32_op
def axial_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grid: Sequence[int],
    axis: int,
    *,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    return_probs: bool = False,
):
    """Dense reference: ``softmax(Q K^T * scale, axial mask) V``, O(N^2); same arguments.

    ``return_probs`` also returns the (B, H, N, N) probabilities.
    """
    grid, axis = _check(q, k, v, grid, axis, causal, key_padding_mask, scale)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    mask = axial_mask(grid, axis, causal).to(q.device)
    return masked_dense_attention(q, k, v, mask, key_padding_mask=key_padding_mask, scale=scale, return_probs=return_probs)
