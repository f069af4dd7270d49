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

from typing import Callable

import torch
import torch.nn.functional as F

from attnlab.bench.inputs import grid_side, random_qkv
from attnlab.bench.registry import register_case
from attnlab.bench.thunks import Impls
from attnlab.ops.axial import axial_attention, axial_attention_reference
from attnlab.ops.neighborhood import neighborhood_attention, neighborhood_attention_reference, neighborhood_mask
from attnlab.ops.sliding_window import sliding_window_attention, sliding_window_attention_reference, sliding_window_mask

#: largest N whose explicit reference (N x N floats, with backward) we run here
REFERENCE_MAX_N = 4096
#: largest N for an explicit (N, N) bool mask fed to SDPA
MASK_MAX_N = 16384


def _add_flex(impls: Impls, qkv: list[torch.Tensor], mask_mod: Callable, n: int) -> None:
    """Add the compiled FlexAttention forward (block mask built here, compiled in the warm-up call)."""
    if impls.mode != "fwd":
        impls.skip("flex", "FlexAttention has no backward on CPU")
        return
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError as e:  # pragma: no cover - torch without flex
        impls.skip("flex", f"unavailable: {e}")
        return
    block_mask = create_block_mask(mask_mod, None, None, n, n, device="cpu")
    compiled = torch.compile(flex_attention, dynamic=False)
    q, k, v = qkv
    impls.add("flex", lambda: compiled(q, k, v, block_mask=block_mask), qkv)


def _add_dense(impls: Impls, qkv: list[torch.Tensor], n: int, reference: Callable, mask: Callable) -> None:
    """Add dense SDPA with the explicit (N, N) bool ``mask()`` and the explicit ``reference()``, where they fit."""
    q, k, v = qkv
    if n <= MASK_MAX_N:
        m = mask()
        impls.add("sdpa_mask", lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=m), qkv)
    else:
        impls.skip("sdpa_mask", f"N > {MASK_MAX_N}: the (N, N) mask alone is too big")
    impls.add_up_to("reference", n, REFERENCE_MAX_N, "the explicit N x N matrix with backward does not fit",
                    reference, qkv)


_LOCAL = dict(reference="sdpa_mask", oracle="reference", agree=("attnlab", "flex", "sdpa_mask"))


@register_case(
    "sliding_window",
    description="sliding-window attention (B=1, H=8, D=64, window 256, causal): attnlab tiled vs compiled Flex "
                "(block mask, fwd only) vs dense SDPA with the bool mask vs explicit reference",
    sizes=(1024, 4096, 16384),
    ops=("attnlab.ops.sliding_window.sliding_window_attention",),
    tests=("tests/ops/test_sliding_window.py",),
    tiny=(70, {"heads": 2, "head_dim": 8, "window": 16}),
    params={"batch": 1, "heads": 8, "head_dim": 64, "window": 256, "causal": True},
    **_LOCAL,
)
def setup_sliding_window(n, dtype, mode, *, batch, heads, head_dim, window, causal) -> Impls:
    """Inputs (B, H, n, D); impls attnlab / flex / sdpa_mask / reference."""
    q, k, v = qkv = random_qkv(n, dtype, mode, batch=batch, heads=heads, head_dim=head_dim)
    impls = Impls(mode)
    impls.add("attnlab", lambda: sliding_window_attention(q, k, v, window, causal=causal, backend="tiled"), qkv)

    def sw(b, h, qi, ki):
        d = qi - ki
        return ((d >= 0) if causal else (d > -window)) & (d < window)

    _add_flex(impls, qkv, sw, n)
    _add_dense(impls, qkv, n, lambda: sliding_window_attention_reference(q, k, v, window, causal=causal),
               lambda: sliding_window_mask(n, window, causal))
    return impls


@register_case(
    "na1d",
    description="1D neighborhood attention (B=1, H=8, D=64, kernel 257, clamped windows): attnlab tiled vs compiled "
                "Flex (block mask, fwd only) vs dense SDPA with the bool mask vs explicit reference",
    sizes=(1024, 4096, 16384),
    ops=("attnlab.ops.neighborhood.neighborhood_attention",),
    tests=("tests/ops/test_neighborhood.py",),
    tiny=(70, {"heads": 2, "head_dim": 8, "kernel": 9, "dilation": 2}),
    params={"batch": 1, "heads": 8, "head_dim": 64, "kernel": 257, "dilation": 1},
    **_LOCAL,
)
def setup_na1d(n, dtype, mode, *, batch, heads, head_dim, kernel, dilation) -> Impls:
    """Inputs (B, H, n, D); impls attnlab / flex / sdpa_mask / reference."""
    q, k, v = qkv = random_qkv(n, dtype, mode, batch=batch, heads=heads, head_dim=head_dim)
    impls = Impls(mode)
    impls.add("attnlab", lambda: neighborhood_attention(q, k, v, kernel, dilation=dilation, backend="tiled"), qkv)

    def na(b, h, qi, ki):  # NATTEN's clamped window inside the subsequence i mod d
        qa, ka = qi // dilation, ki // dilation
        lr = (n - qi % dilation + dilation - 1) // dilation
        start = torch.clamp(torch.minimum(qa - kernel // 2, lr - kernel), min=0)
        return (qi % dilation == ki % dilation) & (ka >= start) & (ka < start + kernel)

    _add_flex(impls, qkv, na, n)
    _add_dense(impls, qkv, n, lambda: neighborhood_attention_reference(q, k, v, kernel, dilation=dilation),
               lambda: neighborhood_mask((n,), kernel, dilation))
    return impls


@register_case(
    "na2d",
    description="2D neighborhood attention on a sqrt(N) x sqrt(N) grid (B=1, H=4, D=32, kernel 7): attnlab tiled vs "
                "dense SDPA with the bool mask vs explicit reference vs NATTEN (fwd only, when installed)",
    sizes=(1024, 4096, 16384),
    reference="reference",
    ops=("attnlab.ops.neighborhood.neighborhood_attention",),
    tests=("tests/ops/test_neighborhood.py",),
    tiny=(81, {"heads": 2, "head_dim": 8, "kernel": 5}),
    oracle="reference",
    agree=("attnlab", "sdpa_mask", "natten"),
    size_rule="square",
    params={"batch": 1, "heads": 4, "head_dim": 32, "kernel": 7, "dilation": 1},
)
def setup_na2d(n, dtype, mode, *, batch, heads, head_dim, kernel, dilation) -> Impls:
    """Inputs (B, H, n, D) on the square grid; impls attnlab / sdpa_mask / reference / natten."""
    side = grid_side(n)
    grid = (side, side)
    q, k, v = qkv = random_qkv(n, dtype, mode, batch=batch, heads=heads, head_dim=head_dim)
    impls = Impls(mode)
    impls.add("attnlab", lambda: neighborhood_attention(q, k, v, kernel, grid=grid, dilation=dilation,
                                                        backend="tiled"), qkv)
    _add_dense(impls, qkv, n, lambda: neighborhood_attention_reference(q, k, v, kernel, grid=grid, dilation=dilation),
               lambda: neighborhood_mask(grid, kernel, dilation))
    try:
        import natten
    except ImportError:
        impls.skip("natten", "not installed (pip install --no-build-isolation --no-deps natten==0.21.7)")
        return impls
    if mode != "fwd":
        impls.skip("natten", "NATTEN's CPU path (eager Flex) has no backward")
        return impls
    # NATTEN's layout is (B, side, side, H, D)
    qn, kn, vn = (x.detach().reshape(batch, heads, side, side, head_dim).movedim(1, -2).contiguous() for x in qkv)
    impls.add("natten", lambda: natten.na2d(qn, kn, vn, kernel_size=kernel, dilation=dilation), [],
              to_bhnd=lambda o: o.movedim(-2, 1).reshape(batch, heads, n, head_dim))
    return impls


@register_case(
    "axial",
    description="axial attention (P19) on a sqrt(N) x sqrt(N) grid (B=1, H=8, D=64): rows then columns (attnlab) "
                "vs full dense SDPA over all N tokens",
    sizes=(1024, 4096, 16384),
    reference="sdpa_dense",
    ops=("attnlab.ops.axial.axial_attention",),
    tests=("tests/ops/test_axial.py",),
    tiny=(49, {"heads": 2, "head_dim": 8}),
    oracle="reference",
    agree=("attnlab",),
    size_rule="square",
    params={"batch": 1, "heads": 8, "head_dim": 64, "causal": False},
)
def setup_axial(n, dtype, mode, *, batch, heads, head_dim, causal) -> Impls:
    """Inputs (B, H, n, D); impls attnlab (two axial passes) / sdpa_dense / reference (the dense masked passes)."""
    grid = (grid_side(n),) * 2
    q, k, v = qkv = random_qkv(n, dtype, mode, batch=batch, heads=heads, head_dim=head_dim)
    impls = Impls(mode)
    impls.add("attnlab", lambda: axial_attention(q, k, axial_attention(q, k, v, grid, 1, causal=causal), grid, 0,
                                                 causal=causal), qkv)
    impls.add("sdpa_dense", lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal), qkv)
    impls.add_up_to("reference", n, REFERENCE_MAX_N, "two explicit N x N matrices with backward",
                    lambda: axial_attention_reference(
                        q, k, axial_attention_reference(q, k, v, grid, 1, causal=causal), grid, 0, causal=causal), qkv)
    return impls
