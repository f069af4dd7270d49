"""Benchmark cases of local attention: sliding window / 1D NA, 2D NA (P26), axial attention (P19).

Implementations side by side in one process per size:

* ``attnlab``: the tiled op (``backend="tiled"``; O(N w) / O(N k^2));
* ``flex``: ``torch.compile(flex_attention)`` with a block mask of the same window
  (forward only: FlexAttention has no CPU backward; compile and ``create_block_mask``
  happen before timing, the warm-up call compiles);
* ``sdpa_mask``: dense ``scaled_dot_product_attention`` with the explicit bool (N, N) mask;
* ``reference``: the dense explicit-softmax reference (skipped where N^2 does not fit);
* ``natten``: NATTEN's forward (2D case, when installed; its CPU path is eager Flex);
* ``sdpa_dense``: full dense attention (axial case: what axial attention replaces).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnlab.bench.registry import make_thunk, register_case
from attnlab.ops.axial import axial_attention
from attnlab.ops.neighborhood import neighborhood_attention, neighborhood_attention_reference, neighborhood_mask
from attnlab.ops.sliding_window import sliding_window_attention, sliding_window_attention_reference, sliding_window_mask

#: largest N whose explicit reference (N x N floats, with backward) we run here
REFERENCE_MAX_N = 4096
#: largest N for an explicit (N, N) bool mask fed to SDPA
MASK_MAX_N = 16384


def _qkv(n, dtype, mode, heads, head_dim, batch=1):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(batch, heads, n, head_dim, generator=g, dtype=dtype).requires_grad_(mode == "fwdbwd")
            for _ in range(3)]


def _flex(q, k, v, mask_mod, n, mode, impls, skipped):
    """Add the compiled FlexAttention forward (block mask built here, compiled in the warm-up call)."""
    if mode != "fwd":
        skipped["flex"] = "FlexAttention has no backward on CPU"
        return
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError as e:  # pragma: no cover - torch without flex
        skipped["flex"] = f"unavailable: {e}"
        return
    block_mask = create_block_mask(mask_mod, None, None, n, n, device="cpu")
    compiled = torch.compile(flex_attention, dynamic=False)
    impls["flex"] = make_thunk(lambda: compiled(q, k, v, block_mask=block_mask), [q, k, v], mode)


def _dense_rows(n, impls, skipped, fwd_reference, mask_fn, q, k, v, mode):
    if n <= MASK_MAX_N:
        mask = mask_fn()
        impls["sdpa_mask"] = make_thunk(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), [q, k, v], mode)
    else:
        skipped["sdpa_mask"] = f"N > {MASK_MAX_N}: the (N, N) mask alone is too big"
    if n <= REFERENCE_MAX_N:
        impls["reference"] = make_thunk(fwd_reference, [q, k, v], mode)
    else:
        skipped["reference"] = f"N > {REFERENCE_MAX_N}: the explicit N x N matrix with backward does not fit"


@register_case(
    "sliding_window",
    description="sliding-window attention (B=1, H=8, D=64, window 256, causal): attnlab tiled vs compiled Flex "
                "(block mask, fwd only) vs dense SDPA with the bool mask vs explicit reference",
    sizes=(1024, 4096, 16384),
    reference="sdpa_mask",
    params={"heads": 8, "head_dim": 64, "window": 256, "causal": True},
)
def setup_sliding_window(n, dtype, mode, *, heads, head_dim, window, causal):
    """Inputs (1, H, n, D); impls attnlab / flex / sdpa_mask / reference."""
    q, k, v = _qkv(n, dtype, mode, heads, head_dim)
    impls = {"attnlab": make_thunk(lambda: sliding_window_attention(q, k, v, window, causal=causal, backend="tiled"),
                                   [q, k, v], mode)}
    skipped: dict[str, str] = {}

    def sw(b, h, qi, ki):
        d = qi - ki
        return ((d >= 0) if causal else (d > -window)) & (d < window)

    _flex(q, k, v, sw, n, mode, impls, skipped)
    _dense_rows(n, impls, skipped, lambda: sliding_window_attention_reference(q, k, v, window, causal=causal),
                lambda: sliding_window_mask(n, window, causal), q, k, v, mode)
    return impls, skipped


@register_case(
    "na1d",
    description="1D neighborhood attention (B=1, H=8, D=64, kernel 257, clamped windows): attnlab tiled vs compiled "
                "Flex (block mask, fwd only) vs dense SDPA with the bool mask vs explicit reference",
    sizes=(1024, 4096, 16384),
    reference="sdpa_mask",
    params={"heads": 8, "head_dim": 64, "kernel": 257, "dilation": 1},
)
def setup_na1d(n, dtype, mode, *, heads, head_dim, kernel, dilation):
    """Inputs (1, H, n, D); impls attnlab / flex / sdpa_mask / reference."""
    q, k, v = _qkv(n, dtype, mode, heads, head_dim)
    impls = {"attnlab": make_thunk(lambda: neighborhood_attention(q, k, v, kernel, dilation=dilation, backend="tiled"),
                                   [q, k, v], mode)}
    skipped: dict[str, str] = {}

    def na(b, h, qi, ki):  # NATTEN's clamped window inside the subsequence i mod d
        qa, ka = qi // dilation, ki // dilation
        lr = (n - qi % dilation + dilation - 1) // dilation
        start = torch.clamp(torch.minimum(qa - kernel // 2, lr - kernel), min=0)
        return (qi % dilation == ki % dilation) & (ka >= start) & (ka < start + kernel)

    _flex(q, k, v, na, n, mode, impls, skipped)
    _dense_rows(n, impls, skipped, lambda: neighborhood_attention_reference(q, k, v, kernel, dilation=dilation),
                lambda: neighborhood_mask((n,), kernel, dilation), q, k, v, mode)
    return impls, skipped


@register_case(
    "na2d",
    description="2D neighborhood attention on a sqrt(N) x sqrt(N) grid (B=1, H=4, D=32, kernel 7): attnlab tiled vs "
                "dense SDPA with the bool mask vs explicit reference vs NATTEN (fwd only, when installed)",
    sizes=(1024, 4096, 16384),
    reference="reference",
    params={"heads": 4, "head_dim": 32, "kernel": 7, "dilation": 1},
)
def setup_na2d(n, dtype, mode, *, heads, head_dim, kernel, dilation):
    """Inputs (1, H, n, D) on the square grid; impls attnlab / sdpa_mask / reference / natten."""
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"n: expected a square number of tokens for the 2D grid, received {n}")
    grid = (side, side)
    q, k, v = _qkv(n, dtype, mode, heads, head_dim)
    impls = {"attnlab": make_thunk(lambda: neighborhood_attention(q, k, v, kernel, grid=grid, dilation=dilation,
                                                                  backend="tiled"), [q, k, v], mode)}
    skipped: dict[str, str] = {}
    _dense_rows(n, impls, skipped,
                lambda: neighborhood_attention_reference(q, k, v, kernel, grid=grid, dilation=dilation),
                lambda: neighborhood_mask(grid, kernel, dilation), q, k, v, mode)
    try:
        import natten
    except ImportError:
        skipped["natten"] = "not installed (pip install --no-build-isolation --no-deps natten==0.21.7)"
    else:
        if mode != "fwd":
            skipped["natten"] = "NATTEN's CPU path (eager Flex) has no backward"
        else:
            qn, kn, vn = (x.detach().reshape(1, heads, side, side, head_dim).movedim(1, -2).contiguous() for x in (q, k, v))
            impls["natten"] = make_thunk(lambda: natten.na2d(qn, kn, vn, kernel_size=kernel, dilation=dilation), [], mode)
    return impls, skipped


@register_case(
    "axial",
    description="axial attention (P19) on a sqrt(N) x sqrt(N) grid (B=1, H=8, D=64): rows then columns (attnlab) "
                "vs full dense SDPA over all N tokens",
    sizes=(1024, 4096, 16384),
    reference="sdpa_dense",
    params={"heads": 8, "head_dim": 64, "causal": False},
)
def setup_axial(n, dtype, mode, *, heads, head_dim, causal):
    """Inputs (1, H, n, D); impls attnlab (two axial passes) / sdpa_dense."""
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"n: expected a square number of tokens for the 2D grid, received {n}")
    grid = (side, side)
    q, k, v = _qkv(n, dtype, mode, heads, head_dim)

    def two_passes():
        return axial_attention(q, k, axial_attention(q, k, v, grid, 1, causal=causal), grid, 0, causal=causal)

    impls = {"attnlab": make_thunk(two_passes, [q, k, v], mode),
             "sdpa_dense": make_thunk(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal), [q, k, v], mode)}
    return impls, {}
