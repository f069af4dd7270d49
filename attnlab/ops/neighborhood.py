"""Neighborhood attention (NA) and dilated NA (P26, DiNAT), 1D / 2D / 3D, trainable on CPU.

Semantics (NATTEN's; the peer tests check the forward against ``natten.na1d/na2d/na3d``):

* Along an axis of length ``L`` with kernel ``k`` (odd) and dilation ``d``, the tokens
  split into the ``d`` subsequences ``i mod d`` (lengths ``L_r = ceil((L - r) / d)``);
  NA runs inside each. Query ``a`` of a subsequence sees the ``k`` keys ``[s, s + k)``
  with ``s = clamp(a - k // 2, 0, L_r - k)``: the window is *clamped* (it shifts inward
  at the borders, every query sees exactly ``k`` keys; no zero padding). Causal along
  an axis: keys ``[max(a - k + 1, 0), a]`` (fewer at the start).
* On a 2D / 3D grid the neighbourhood is the product of the per-axis windows.
* Relative positional bias ``rpb`` (per head, ``2k - 1`` entries per axis) is added to
  the logit of query ``a`` and key ``b`` at index ``b - a + k - 1`` (subsequence units),
  as in NAT / DiNAT (NATTEN < 0.20 computed it so; NATTEN 0.20 dropped rpb).

Fast path (:func:`neighborhood_attention`, never the N x N matrix). Along each axis the
queries of a subsequence are cut into tiles of ``t`` queries; tile ``j`` starts at query
``j t`` and reads the ``T = t + k - 1`` keys from ``j t - k // 2``. With ``t >= k // 2 + 1``
every *full* tile holds the clamped windows of its queries, and the key tiles of
consecutive tiles are a constant stride apart, so they are a strided view
(``Tensor.unfold``) of the (padded) keys, not a gather. A last, partial tile is taken
right-aligned (queries ``[L_r - t, L_r)``, overlapping the previous tile; the overlap is
dropped). So an axis is covered by at most two "segments" per subsequence length
(dilation gives at most two lengths), and a grid by the product of its axes' segments.
Each product runs as one ``scaled_dot_product_attention`` call over its tiles with a
per-tile boolean mask (CPU flash kernel, forward and backward); with ``rpb`` the bias
is gathered per tile and the attention is computed explicitly. Time and memory are
O(N * prod(T_a)) = O(N k^d) for fixed tiles. The same core serves sliding-window
attention (:mod:`attnlab.ops.sliding_window`), whose windows are cut at the sequence
ends instead of clamped.

Precision: computed in fp32 for bf16 inputs and under autocast (``fp32_op``). Measured on this CPU
(torch 2.13, sliding window N=4096 w=256 and 2-D NA 64x64 k=7, fwd+bwd): every bf16 variant was
slower than fp32 (torch's bf16 tile backward 0.84x, a bf16 forward with an fp32 backward 0.69x,
upcasting the inputs 0.92x): the fused SDPA backward over tile-sized problems, about half the time,
has no faster bf16 kernel, the forward is about 15 % of it, and the rest is memory-bound tiling.

:func:`neighborhood_attention_reference` is the dense ``softmax(Q K^T * scale + bias,
mask) V`` with the (N, N) neighbourhood mask built from the definition above.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from attnlab.utils.checks import check_tensor, describe, fail
from attnlab.utils.precision import fp32_op
from attnlab.ops.attention import check_attention_options, sdpa
from attnlab.ops.recording import is_recording, record

__all__ = [
    "AxisWindow",
    "AxisPlan",
    "plan_axis",
    "tiled_local_attention",
    "neighborhood_attention",
    "neighborhood_attention_reference",
    "neighborhood_mask",
    "neighborhood_rpb_index",
    "window_bounds",
    "grid_mask_and_rel",
    "dinat_dilation",
    "dense_local_attention",
    "DENSE_MAX_N",
]


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class AxisWindow:
    """The window along one axis: which keys a query sees.

    ``kind="na"``: neighbourhood of odd ``kernel`` (clamped; ``causal``: the last ``kernel``
    positions up to the query); ``kind="sw"``: sliding window ``[a - left, a + right]``
    cut at the ends. ``dilation``: the window runs inside the subsequences ``i mod d``.
    """

    kind: str
    kernel: int = 1
    causal: bool = False
    left: int = 0
    right: int = 0
    dilation: int = 1

    @property
    def before(self) -> int:
        """How far a tile's key range reaches before its first query."""
        if self.kind == "sw":
            return self.left
        return self.kernel - 1 if self.causal else self.kernel // 2

    @property
    def halo(self) -> int:
        """Key-tile size minus query-tile size."""
        return self.left + self.right if self.kind == "sw" else self.kernel - 1

    @property
    def rel_offset(self) -> int:
        """Added to ``b - a`` to index the relative-bias table."""
        return self.left if self.kind == "sw" else self.kernel - 1

    @property
    def min_tile(self) -> int:
        """Smallest query tile whose full tiles hold their clamped windows."""
        return self.kernel // 2 + 1 if (self.kind == "na" and not self.causal) else 1


def window_bounds(w: AxisWindow, a: torch.Tensor, length: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive key range ``[lo, hi]`` (subsequence units) of queries ``a`` in a subsequence of ``length``."""
    if w.kind == "sw":
        lo = (a - w.left).clamp(min=0)
        hi = torch.minimum(a + w.right, torch.as_tensor(length) - 1)
    elif w.causal:
        lo = (a - w.kernel + 1).clamp(min=0)
        hi = a
    else:
        lo = torch.minimum((a - w.kernel // 2).clamp(min=0), torch.as_tensor(length) - w.kernel)
        hi = lo + w.kernel - 1
    return lo, hi


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True, eq=False)  # hashed by identity: plans are cached, tensors are not comparable
class Segment:
    """A run of query tiles along one axis whose key tiles are a constant stride apart.

    Groups ``[g0, g1)`` (dilation residues sharing one subsequence length ``length``);
    ``tiles`` tiles of ``tile`` queries starting at query ``q0``; tile ``j`` reads the
    ``key_tile`` keys from ``q0 + j * tile - before``. Output slots before ``keep`` are
    dropped (they overlap the previous segment). ``allowed`` / ``rel``: (tiles, tile,
    key_tile) mask and relative-bias index.
    """

    g0: int
    g1: int
    length: int
    q0: int
    tiles: int
    tile: int
    key_tile: int
    keep: int
    allowed: torch.Tensor
    rel: torch.Tensor


@dataclass(frozen=True, eq=False)
class AxisPlan:
    """How one axis is covered by segments (see the module docstring).

    ``sub_len`` A = ceil(L / d) slots per subsequence; keys are padded by ``pad_lo`` /
    ``pad_hi`` subsequence slots so every segment's key tiles are in range.
    """

    length: int
    window: AxisWindow
    sub_len: int
    pad_lo: int
    pad_hi: int
    segments: tuple[Segment, ...]


@functools.lru_cache(maxsize=256)
def plan_axis(length: int, window: AxisWindow, tile: int) -> AxisPlan:
    """Plan one axis of ``length`` for ``window`` with query tiles of (about) ``tile``.

    Cached: plans are pure functions of their arguments. Raises RuntimeError if a window
    would not fit its key tile (an internal invariant, checked once per plan).
    """
    d = window.dilation
    A = -(-length // d)
    rem = length % d
    # Subsequences r < L mod d hold A tokens, the others A - 1 (when d does not divide L).
    classes = [(0, d, A)] if rem == 0 else [(0, rem, A), (rem, d, A - 1)]
    segs: list[Segment] = []
    for g0, g1, lr in classes:
        t = min(max(tile, window.min_tile), lr)
        full = lr // t
        runs = [(0, full, 0)] if full else []
        if lr % t:
            runs.append((lr - t, 1, full * t - (lr - t)))  # right-aligned last tile; drop the overlap
        for q0, ntiles, keep in runs:
            T = t + window.halo
            a = q0 + torch.arange(ntiles)[:, None, None] * t + torch.arange(t)[None, :, None]  # (P, t, 1)
            kb = q0 - window.before + torch.arange(ntiles)[:, None, None] * t + torch.arange(T)[None, None, :]
            lo, hi = window_bounds(window, a, lr)
            allowed = (kb >= lo) & (kb <= hi) & (kb >= 0) & (kb < lr)
            if not torch.equal(allowed.sum(-1), (hi - lo + 1).squeeze(-1)):
                raise RuntimeError(f"plan_axis: internal error, a window does not fit its key tile ({length}, {window}, {tile})")
            rel = torch.where(allowed, kb - a + window.rel_offset, torch.zeros((), dtype=torch.long))
            segs.append(Segment(g0, g1, lr, q0, ntiles, t, T, keep, allowed, rel))
    pad_lo = max(0, max(window.before - s.q0 for s in segs))
    pad_hi = max(max(s.q0 - window.before + (s.tiles - 1) * s.tile + s.key_tile for s in segs) - A, 0)
    return AxisPlan(length, window, A, pad_lo, pad_hi, tuple(segs))


# --------------------------------------------------------------------------- tiled core


def _split_axes(x: torch.Tensor, plans: Sequence[AxisPlan], keys: bool) -> torch.Tensor:
    """(B, H, L1..Ln, D) -> (B, H, A1, d1, ..., An, dn, D): each axis as (subsequence slot, residue).

    Queries are padded at the end to A * d; keys also by the plan's ``pad_lo`` / ``pad_hi``
    slots (zeros; they are masked), so every segment's key tiles are in range.
    """
    pads: list[int] = [0, 0]
    for p in reversed(plans):
        d = p.window.dilation
        lo = p.pad_lo * d if keys else 0
        hi = ((p.sub_len + p.pad_hi) * d if keys else p.sub_len * d) - p.length
        pads += [lo, hi]
    if any(pads):
        x = F.pad(x, pads)
    shape = list(x.shape[:2])
    for i, p in enumerate(plans):
        d = p.window.dilation
        shape += [x.shape[2 + i] // d, d]
    return x.reshape(*shape, x.shape[-1])


def _piece_tiles(xs: torch.Tensor, plans: Sequence[AxisPlan], segs: Sequence[Segment], keys: bool) -> torch.Tensor:
    """Tiles of one piece: (B, H, G1.., P1.., w1.., D) with w = key_tile (keys) or tile (queries).

    ``xs`` comes from :func:`_split_axes`. Slices and ``unfold`` only: a strided view;
    the caller's reshape copies only when the layout requires it.
    """
    n = len(plans)
    for i, (p, s) in enumerate(zip(plans, segs)):
        start = s.q0 - p.window.before + p.pad_lo if keys else s.q0
        size, width = ((s.tiles - 1) * s.tile + s.key_tile, s.key_tile) if keys else (s.tiles * s.tile, s.tile)
        # Skip no-op narrows: each one would add a full-size zero-filled buffer to the backward.
        if start or size != xs.shape[2 + 2 * i]:
            xs = xs.narrow(2 + 2 * i, start, size)
        if s.g0 or s.g1 != xs.shape[3 + 2 * i]:
            xs = xs.narrow(3 + 2 * i, s.g0, s.g1 - s.g0)
        xs = xs.unfold(2 + 2 * i, width, s.tile)  # appends the window dim after D
    perm = [0, 1] + [3 + 2 * i for i in range(n)] + [2 + 2 * i for i in range(n)]
    perm += [3 + 2 * n + i for i in range(n)] + [2 + 2 * n]
    return xs.permute(perm)


def _outer(parts: Sequence[torch.Tensor], op) -> torch.Tensor:
    """Combine per-axis (P_a, t_a, T_a) tensors into (prod P, prod t, prod T) by ``op``."""
    n = len(parts)
    out = None
    for i, x in enumerate(parts):
        shape = [1] * (3 * n)
        shape[i], shape[n + i], shape[2 * n + i] = x.shape
        xi = x.reshape(shape)
        out = xi if out is None else op(out, xi)
    full = [x.shape[j] for j in range(3) for x in parts]
    out = out.expand(full)
    return out.reshape(math.prod(full[:n]), math.prod(full[n : 2 * n]), math.prod(full[2 * n :]))


@functools.lru_cache(maxsize=512)
def _piece_mask(segs: tuple[Segment, ...]) -> torch.Tensor:
    return _outer([s.allowed for s in segs], torch.logical_and)


@functools.lru_cache(maxsize=512)
def _piece_additive_mask(segs: tuple[Segment, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # SDPA turns a bool mask into this (0 / -inf) on every call; caching it saves 15-20%.
    mask = _piece_mask(segs)
    return torch.zeros(mask.shape, dtype=dtype).masked_fill_(~mask, float("-inf")).to(device)


def _piece_rel(segs: Sequence[Segment], sizes: Sequence[int]) -> torch.Tensor:
    strides = [math.prod(sizes[i + 1 :]) for i in range(len(sizes))]
    return _outer([s.rel * st for s, st in zip(segs, strides)], torch.add)


def _attend_piece(q, k, v, segs, kpm, bias, scale):
    """Attention of one piece (the product ``segs`` of axis segments). q (B, H, G, P, S, D), k/v (B, H, G, P, K, D*).

    kpm (B, 1, G, P, 1, K) bool or None; bias (H, 1, P, S, K) or None.
    Returns (B, H, G, P, S, Dv). Query rows without a visible key give zeros.
    """
    b, h, g, p, s, _ = q.shape
    kk, dv = k.shape[-2], v.shape[-1]
    mask = _piece_mask(segs).to(q.device)
    full = mask if kpm is None else mask & kpm  # (P,S,K) or (B,1,G,P,S,K)
    has_key = None
    if kpm is not None:
        has_key = full.any(-1, keepdim=True)
        full = full | ~has_key  # such rows see everything (finite), zeroed below
    if bias is None:
        if kpm is None:
            m4 = _piece_additive_mask(segs, q.dtype, q.device)[None]
        else:
            m4 = full.expand(b, h, g, p, s, kk).reshape(b * h * g, p, s, kk)
        o = sdpa(
            q.reshape(b * h * g, p, s, -1), k.reshape(b * h * g, p, kk, -1), v.reshape(b * h * g, p, kk, dv),
            attn_mask=m4, scale=scale,
        ).reshape(b, h, g, p, s, dv)
    else:
        logits = torch.matmul(q, k.transpose(-1, -2)) * scale + bias
        logits = logits.masked_fill(~full, float("-inf"))
        o = torch.matmul(torch.softmax(logits, dim=-1), v)
    if has_key is not None:
        o = o * has_key.to(o.dtype)
    return o


@fp32_op
def tiled_local_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plans: Sequence[AxisPlan],
    *,
    scale: float,
    rpb: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Local attention over a grid, from per-axis plans (the fast core of NA and sliding windows).

    Args:
        q, k, v: (B, H, L1, ..., Ln, D) (v may have its own last dim Dv).
        plans: one :class:`AxisPlan` per grid axis (from :func:`plan_axis`).
        scale: logit scale.
        rpb: optional (H, R1, ..., Rn) bias table indexed by the segments' ``rel``.
        key_padding_mask: optional (B, L1, ..., Ln) bool, True = real key.
    Returns:
        (B, H, L1, ..., Ln, Dv). Cost O(N * prod(key_tile)) time and memory.
    """
    n = len(plans)
    b, h = q.shape[:2]
    qs, ks, vs = _split_axes(q, plans, False), _split_axes(k, plans, True), _split_axes(v, plans, True)
    kps = _split_axes(key_padding_mask[:, None, ..., None], plans, True) if key_padding_mask is not None else None
    outs: dict[tuple[int, ...], torch.Tensor] = {}
    for idx in _product([range(len(p.segments)) for p in plans]):
        segs = tuple(p.segments[i] for p, i in zip(plans, idx))
        g = math.prod(s.g1 - s.g0 for s in segs)
        ptiles = math.prod(s.tiles for s in segs)
        S, K = math.prod(s.tile for s in segs), math.prod(s.key_tile for s in segs)

        def tiles(x, keys, w):
            return _piece_tiles(x, plans, segs, keys).reshape(x.shape[0], x.shape[1], g, ptiles, w, x.shape[-1])

        qt, kt, vt = tiles(qs, False, S), tiles(ks, True, K), tiles(vs, True, K)
        kpm = tiles(kps, True, K).squeeze(-1)[:, :, :, :, None, :] if kps is not None else None
        bias = None
        if rpb is not None:
            rel = _piece_rel(segs, rpb.shape[1:]).to(rpb.device)
            bias = rpb.reshape(h, -1)[:, rel][:, None]  # (H, 1, P, S, K)
        o = _attend_piece(qt, kt, vt, segs, kpm, bias, scale)
        # (B, H, G.., P.., t.., Dv) -> (B, H, G1, P1*t1, ..., Dv), dropping overlapped slots
        o = o.reshape(b, h, *[s.g1 - s.g0 for s in segs], *[s.tiles for s in segs], *[s.tile for s in segs], -1)
        perm = [0, 1]
        for i in range(n):
            perm += [2 + i, 2 + n + i, 2 + 2 * n + i]
        o = o.permute(perm + [2 + 3 * n])
        shape = [b, h]
        for s in segs:
            shape += [s.g1 - s.g0, s.tiles * s.tile]
        o = o.reshape(*shape, -1)
        for i, s in enumerate(segs):
            if s.keep:
                o = o.narrow(3 + 2 * i, s.keep, s.tiles * s.tile - s.keep)
        outs[idx] = o
    # Assemble axis by axis, last axis first: positions within a subsequence length class,
    # then the classes (padded to A slots) along the residue dim.
    for i in reversed(range(n)):
        p = plans[i]
        merged: dict[tuple[int, ...], torch.Tensor] = {}
        for prefix in {key[:i] for key in outs}:
            by_class: dict[int, list[torch.Tensor]] = {}
            for j, seg in enumerate(p.segments):
                by_class.setdefault(seg.g0, []).append(outs[prefix + (j,)])
            parts = []
            for chunks in by_class.values():
                x = chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=3 + 2 * i)
                if x.shape[3 + 2 * i] < p.sub_len:
                    pad = [0, 0] * (2 * (n - i) - 1) + [0, p.sub_len - x.shape[3 + 2 * i]]
                    x = F.pad(x, pad)
                parts.append(x)
            merged[prefix] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2 + 2 * i)
        outs = merged
    o = outs[()]  # (B, H, d1, A1, ..., dn, An, Dv)
    perm = [0, 1]
    for i in range(n):
        perm += [3 + 2 * i, 2 + 2 * i]
    o = o.permute(perm + [2 + 2 * n]).reshape(b, h, *[p.sub_len * p.window.dilation for p in plans], -1)
    for i, p in enumerate(plans):
        if o.shape[2 + i] != p.length:
            o = o.narrow(2 + i, 0, p.length)
    return o


def _product(ranges):
    out = [()]
    for r in ranges:
        out = [x + (i,) for x in out for i in r]
    return out


#: up to this many tokens ``backend="auto"`` uses the dense masked path (one SDPA call
#: beats many small tiles); above it, the tiled path. Measured (fwd+bwd, one thread, ViT
#: shapes B=32, head dim 12): dense wins at 8x8 (5 vs 10 ms), tiled from 16x16 (37 vs 49 ms;
#: 78 vs 154 ms with rpb) and by 3-20x at 32x32 and 64x64.
DENSE_MAX_N = 128

BACKENDS = ("auto", "tiled", "dense")


@functools.lru_cache(maxsize=64)
def _dense_mask_and_rel(grid: tuple[int, ...], windows: tuple[AxisWindow, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    return grid_mask_and_rel(grid, windows)


@fp32_op
def dense_local_attention(q, k, v, grid, windows, *, scale, rpb=None, key_padding_mask=None) -> torch.Tensor:
    """Local attention as one SDPA call with the (N, N) window mask: the fast path for small N.

    q, k, v (B, H, N, D); ``windows`` one :class:`AxisWindow` per axis of ``grid``;
    rpb (H, R1, ..) or None; key_padding_mask (B, N) or None. O(N^2) memory, so only for
    small N (``DENSE_MAX_N``). Rows with no visible key give zeros.
    """
    mask, rel = _dense_mask_and_rel(tuple(grid), tuple(windows))
    mask = mask.to(q.device)
    has_key = None
    if key_padding_mask is not None:
        mask = mask[None, None] & key_padding_mask[:, None, None, :]
        has_key = mask.any(-1, keepdim=True)
        mask = mask | ~has_key
    if rpb is not None:
        bias = rpb.reshape(rpb.shape[0], -1)[:, rel.to(q.device)]  # (H, N, N)
        mask = bias.masked_fill(~mask, float("-inf"))
        mask = mask[None] if mask.dim() == 3 else mask  # 4-D masks keep SDPA on its fused CPU kernel
    out = sdpa(q, k, v, attn_mask=mask, scale=scale)
    return out * has_key.to(out.dtype) if has_key is not None else out


def check_backend(backend: str, tile) -> str:
    """Validate ``backend``; an explicit ``tile`` implies the tiled path under "auto"."""
    if backend not in BACKENDS:
        fail("backend", f"one of {list(BACKENDS)}", describe(backend))
    if tile is not None and backend == "dense":
        fail("tile", "None with backend='dense' (tiles belong to the tiled path)", describe(tile))
    return backend


def use_dense(backend: str, n: int, tile) -> bool:
    """Whether the dense path runs: asked for, or "auto" with small N and no tile given."""
    return backend == "dense" or (backend == "auto" and tile is None and n <= DENSE_MAX_N)


# --------------------------------------------------------------------------- NA API


def _per_axis(arg: str, value, nd: int, kind=int) -> tuple:
    """``value`` or a tuple of ``nd`` values, checked to be of ``kind`` (bools refused as ints)."""

    def ok(x):
        return isinstance(x, kind) and not (kind is int and isinstance(x, bool))

    if isinstance(value, (tuple, list)):
        if len(value) != nd or not all(ok(x) for x in value):
            fail(arg, f"a {kind.__name__} or a tuple of {nd} {kind.__name__}s (one per grid axis)", describe(value), TypeError)
        return tuple(value)
    if not ok(value):
        fail(arg, f"a {kind.__name__} or a tuple of {nd} {kind.__name__}s", describe(value), TypeError)
    return (value,) * nd


def check_local_qkv(q, k, v, key_padding_mask, scale) -> None:
    """Shared checks of the local-attention ops: q/k/v (B, H, N, D), mask (B, N), scale."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, t, ndim=4, floating=True)
    if k.shape[:3] != q.shape[:3] or v.shape[:3] != q.shape[:3]:
        fail("k, v", f"the same (B, H, N) as q = {tuple(q.shape[:3])}", f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    if k.shape[-1] != q.shape[-1]:
        fail("k", f"head dim D = {q.shape[-1]} (as q)", describe(k))
    if not (q.dtype == k.dtype == v.dtype):
        fail("q, k, v", "one dtype", f"{q.dtype}, {k.dtype}, {v.dtype}", TypeError)
    check_attention_options(q, q.shape[2], key_padding_mask, scale)


def _check_na_args(q, k, v, kernel_size, grid, dilation, causal, rpb, key_padding_mask, scale):
    check_local_qkv(q, k, v, key_padding_mask, scale)
    n = q.shape[2]
    if grid is None:
        grid = (n,)
    if not isinstance(grid, (tuple, list, torch.Size)) or not all(
        isinstance(g, int) and not isinstance(g, bool) and g > 0 for g in grid
    ):
        fail("grid", "a tuple of positive ints such as (H, W)", describe(grid), TypeError)
    grid = tuple(grid)
    if len(grid) not in (1, 2, 3):
        fail("grid", "1, 2 or 3 dimensions", describe(grid))
    if math.prod(grid) != n:
        fail("grid", f"a grid whose product equals the number of tokens N={n}", f"{grid} (product {math.prod(grid)})")
    nd = len(grid)
    ks = _per_axis("kernel_size", kernel_size, nd)
    dl = _per_axis("dilation", dilation, nd)
    cz = _per_axis("causal", causal, nd, bool)
    for kk, d, L in zip(ks, dl, grid):
        if kk < 1 or kk % 2 == 0:
            fail("kernel_size", "odd positive sizes", ks)
        if d < 1:
            fail("dilation", "positive ints", dl)
        if kk * d > L:
            fail("kernel_size", f"kernel_size * dilation <= the grid size along every axis (grid {grid})",
                 f"kernel {ks}, dilation {dl}")
    if rpb is not None:
        check_tensor("rpb", rpb, floating=True)
        want = (q.shape[1], *[2 * kk - 1 for kk in ks])
        if tuple(rpb.shape) != want:
            fail("rpb", f"shape (H, 2k-1 per axis) = {want}", describe(rpb))
        if rpb.dtype != q.dtype:
            fail("rpb", f"dtype {q.dtype} (as q)", describe(rpb), TypeError)
    return grid, ks, dl, cz


def default_tile(window: AxisWindow, nd: int) -> int:
    """Query tile per axis: big enough to amortise a tile, small enough not to waste keys.

    A tile computes ``t`` x ``(t + halo)`` logits for ``t`` x ``window`` useful ones, so
    large windows want t ~ 64 (1D; measured on this CPU: 64 beats 128 for a 256 window),
    small ones small tiles; grids use 8 (2D) / 4 (3D).
    """
    if nd == 1:
        span = window.halo + 1
        t = 64 if span > 96 else (32 if span > 24 else 16)
    else:
        t = 8 if nd == 2 else 4
    return max(t, window.min_tile)


@fp32_op
def neighborhood_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel_size: int | Sequence[int],
    *,
    grid: Sequence[int] | None = None,
    dilation: int | Sequence[int] = 1,
    causal: bool | Sequence[bool] = False,
    rpb: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    tile: int | Sequence[int] | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """(Dilated) neighborhood attention, P26 (NAT / DiNAT): O(N k^d) time and memory, with backward.

    Args:
        q, k, v: (B, H, N, D) in raster order of ``grid`` (v may have its own Dv).
        kernel_size: odd k, or one per axis.
        grid: spatial shape with prod == N, e.g. (H, W) or (T, H, W); None = 1D over N.
        dilation: d per axis (DiNA: NA inside the subsequences i mod d);
            kernel_size * dilation <= axis length (as NATTEN).
        causal: per-axis causal windows (bool or one per axis). Causal on every axis of
            a grid sees keys up-and-left only (NATTEN's semantics; a subset of raster order).
        rpb: optional relative positional bias, (H, 2k1-1[, 2k2-1[, 2k3-1]]).
        key_padding_mask: (B, N) bool, True = real key. Padded keys are dropped from the
            windows (windows are not re-clamped around them); a query whose whole window
            is padded gets zeros.
        scale: logit scale (default D^-1/2).
        tile: query tile per axis of the tiled path (default: :func:`default_tile`).
        backend: ``"tiled"`` (O(N k^d)), ``"dense"`` (one SDPA call with the (N, N)
            mask, O(N^2): faster for small N) or ``"auto"`` (dense up to
            ``DENSE_MAX_N`` tokens unless a tile is given, else tiled).
    Returns:
        (B, H, N, Dv), equal to :func:`neighborhood_attention_reference`.
    """
    grid, ks, dl, cz = _check_na_args(q, k, v, kernel_size, grid, dilation, causal, rpb, key_padding_mask, scale)
    check_backend(backend, tile)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if is_recording():
        out, probs = neighborhood_attention_reference(
            q, k, v, ks, grid=grid, dilation=dl, causal=cz, rpb=rpb, key_padding_mask=key_padding_mask, scale=scale,
            return_probs=True,
        )
        record(probs)
        return out
    nd = len(grid)
    windows = [AxisWindow("na", kernel=kk, causal=c, dilation=d) for kk, c, d in zip(ks, cz, dl)]
    if use_dense(backend, q.shape[2], tile):
        return dense_local_attention(q, k, v, grid, windows, scale=scale, rpb=rpb, key_padding_mask=key_padding_mask)
    tiles = _per_axis("tile", tile, nd) if tile is not None else tuple(default_tile(w, nd) for w in windows)
    plans = [plan_axis(L, w, t) for L, w, t in zip(grid, windows, tiles)]
    b, h, n, _ = q.shape
    out = tiled_local_attention(
        *(x.reshape(b, h, *grid, x.shape[-1]) for x in (q, k, v)), plans, scale=scale, rpb=rpb,
        key_padding_mask=key_padding_mask.reshape(b, *grid) if key_padding_mask is not None else None,
    )
    return out.reshape(b, h, n, -1)


# --------------------------------------------------------------------------- reference


def _axis_mask_and_rel(L: int, w: AxisWindow) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, L) allowed and relative-bias index along one axis, straight from the definition."""
    i = torch.arange(L)[:, None]
    j = torch.arange(L)[None, :]
    d = w.dilation
    same_group = (i % d) == (j % d)
    a, bb = i // d, j // d
    length = (L - (i % d) + d - 1) // d  # length of query i's subsequence
    lo, hi = window_bounds(w, a, length)
    allowed = same_group & (bb >= lo) & (bb <= hi)
    rel = torch.where(allowed, bb - a + w.rel_offset, torch.zeros((), dtype=torch.long))
    return allowed, rel


def grid_mask_and_rel(grid: Sequence[int], windows: Sequence[AxisWindow]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, N) allowed mask and flat relative-position index on ``grid``: the product of the per-axis windows.

    The definition the tiled op is tested against (shared with :mod:`attnlab.ops.sliding_window`).
    """
    mask = torch.ones((1, 1), dtype=torch.bool)
    idx = torch.zeros((1, 1), dtype=torch.long)
    for L, w in zip(grid, windows):
        a, r = _axis_mask_and_rel(L, w)
        size = 2 * w.kernel - 1 if w.kind == "na" else w.left + w.right + 1
        mask = (mask[:, None, :, None] & a[None, :, None, :]).reshape(mask.shape[0] * L, -1)
        idx = (idx[:, None, :, None] * size + r[None, :, None, :]).reshape(idx.shape[0] * L, -1)
    return mask, idx


def neighborhood_mask(grid: Sequence[int], kernel_size, dilation=1, causal=False) -> torch.Tensor:
    """(N, N) bool mask of (dilated) neighbourhoods on ``grid`` (True = may attend), P26."""
    nd = len(grid)
    ks, dl, cz = _per_axis("kernel_size", kernel_size, nd), _per_axis("dilation", dilation, nd), _per_axis("causal", causal, nd, bool)
    return grid_mask_and_rel(grid, [AxisWindow("na", kernel=kk, causal=c, dilation=d) for kk, c, d in zip(ks, cz, dl)])[0]


def neighborhood_rpb_index(grid: Sequence[int], kernel_size, dilation=1, causal=False) -> torch.Tensor:
    """(N, N) flat index into an (H, 2k1-1, ...) rpb table's per-head part (valid where the mask is True)."""
    nd = len(grid)
    ks, dl, cz = _per_axis("kernel_size", kernel_size, nd), _per_axis("dilation", dilation, nd), _per_axis("causal", causal, nd, bool)
    return grid_mask_and_rel(grid, [AxisWindow("na", kernel=kk, causal=c, dilation=d) for kk, c, d in zip(ks, cz, dl)])[1]


def masked_dense_attention(q, k, v, mask, *, bias=None, key_padding_mask=None, scale, return_probs=False):
    """Dense ``softmax(Q K^T * scale + bias, mask) V`` with an explicit (N, N) bool mask (the references' core).

    q/k/v (B, H, N, D); mask (N, N) bool; bias (H, N, N) or None; key_padding_mask (B, N).
    Rows with no visible key give zeros. ``return_probs`` also returns (B, H, N, N).
    """
    logits = torch.matmul(q, k.transpose(-1, -2)) * scale
    if bias is not None:
        logits = logits + bias
    mask = mask[None, None]
    if key_padding_mask is not None:
        mask = mask & key_padding_mask[:, None, None, :]
    has_key = mask.any(-1, keepdim=True)
    logits = logits.masked_fill(~mask, float("-inf")).masked_fill(~has_key, 0.0)
    probs = torch.softmax(logits, dim=-1) * has_key
    out = torch.matmul(probs, v)
    return (out, probs) if return_probs else out


@fp32_op
def neighborhood_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel_size: int | Sequence[int],
    *,
    grid: Sequence[int] | None = None,
    dilation: int | Sequence[int] = 1,
    causal: bool | Sequence[bool] = False,
    rpb: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    return_probs: bool = False,
):
    """Dense reference for :func:`neighborhood_attention` (P26): O(N^2) time and memory.

    ``softmax(Q K^T * scale + rpb[index], mask) V`` with the (N, N) mask of
    :func:`neighborhood_mask`; same arguments and shapes. Rows with no visible key give
    zeros. ``return_probs`` also returns the (B, H, N, N) probabilities.
    """
    grid, ks, dl, cz = _check_na_args(q, k, v, kernel_size, grid, dilation, causal, rpb, key_padding_mask, scale)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    windows = [AxisWindow("na", kernel=kk, causal=c, dilation=d) for kk, c, d in zip(ks, cz, dl)]
    mask, idx = grid_mask_and_rel(grid, windows)
    bias = rpb.reshape(rpb.shape[0], -1)[:, idx.to(q.device)] if rpb is not None else None
    return masked_dense_attention(q, k, v, mask.to(q.device), bias=bias, key_padding_mask=key_padding_mask,
                                  scale=scale, return_probs=return_probs)


def dinat_dilation(resolution: int, kernel_size: int, max_dilation: int | None = None) -> int:
    """DiNAT's dilation for a stage: the largest d with k * d <= resolution (P26, Sec. 3).

    The paper gives a stage's dilated layers the dilation that spans the whole feature map,
    ``floor(resolution / kernel_size)`` (e.g. 56 / 7 = 8 at stage 1 of ImageNet-224).
    """
    d = max(1, resolution // kernel_size)
    return min(d, max_dilation) if max_dilation else d
