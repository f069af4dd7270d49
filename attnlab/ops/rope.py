"""Rotary position embeddings (RoPE; Su et al. 2021, "RoFormer"): the op and its rotation-matrix reference.

RoPE rotates each pair of channels ``(x_a, x_b)`` of a query or key at position ``m`` by the
angle ``m * g_k``, with ``g_k = base ** (-2k / D)`` for pair ``k = 0 .. D/2 - 1``. Then
``<rot_m q, rot_n k>`` depends on the positions only through ``m - n``. Two channel layouts
pair the channels differently:

* ``"half"`` (GPT-NeoX, LLaMA in Hugging Face): pair k is ``(x_k, x_{k + D/2})``;
* ``"interleaved"`` (the RoFormer paper, GPT-J, Meta's LLaMA): pair k is ``(x_{2k}, x_{2k+1})``.

Positions are given explicitly, (N,) or (B, N) integers, so that a decoding step rotates its one
token by the position it really has. Angles are computed in float64 and only the cosines and
sines are cast to the input dtype: in float32, ``m * g_k`` itself loses about ``m * 6e-8`` rad,
which is 6e-3 rad at m = 1e5.

* :func:`rope_cos_sin` — the (..., N, D/2) cosines and sines for given positions;
* :func:`apply_rotary` — rotate x (B, H, N, D) with given cosines and sines (what a cache feeds);
* :func:`apply_rope` — both in one call;
* :func:`apply_rope_reference` — the explicit product with the (D, D) block-diagonal rotation
  matrix of each position, built pair by pair: the definition, to test against.
"""
from __future__ import annotations

import torch

from attnlab.utils.checks import check_choice, check_tensor, describe, fail

__all__ = ["LAYOUTS", "rope_inv_freq", "rope_cos_sin", "apply_rotary", "apply_rope", "apply_rope_reference",
           "check_positions", "rope_pair_index"]

LAYOUTS = ("half", "interleaved")


def _check_base(base: object) -> float:
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not base > 1.0:
        fail("base", "a number > 1 (the RoPE wavelength base, e.g. 10000)", describe(base))
    return float(base)


def _check_dim(dim: object, arg: str = "x") -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2 or dim % 2:
        fail(arg, "an even head dim D >= 2 (channels are rotated in pairs)", f"D = {dim!r}")
    return dim


def rope_inv_freq(dim: int, base: float = 10000.0) -> torch.Tensor:
    """The rotation frequencies g_k = base^(-2k / dim), k = 0 .. dim/2 - 1: (dim/2,) float64."""
    _check_dim(dim, "dim")
    base = _check_base(base)
    return base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)


def check_positions(positions: object, n: int, batch: int | None = None) -> torch.Tensor:
    """``positions`` as an integer tensor of shape (N,) or (B, N) matching ``n`` (and ``batch``)."""
    t = check_tensor("positions", positions)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        fail("positions", "an integer tensor of token positions", describe(t), TypeError)
    if t.dim() not in (1, 2) or t.shape[-1] != n or (t.dim() == 2 and batch is not None and t.shape[0] not in (1, batch)):
        shape = f"(N,) or (B, N) with N = {n}" + (f", B = {batch}" if batch is not None else "")
        fail("positions", f"shape {shape}", describe(t))
    return t


def rope_cos_sin(positions: torch.Tensor, dim: int, base: float = 10000.0,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines of the angles ``positions * g_k``: each (..., N, dim/2) in ``dtype``.

    ``positions``: integer (N,) or (B, N); the angles are formed in float64 (see the module docstring).
    """
    t = check_tensor("positions", positions)
    if t.is_floating_point() or t.dtype == torch.bool:
        fail("positions", "an integer tensor of token positions", describe(t), TypeError)
    angles = t.to(torch.float64)[..., None] * rope_inv_freq(dim, base).to(t.device)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rope_pair_index(dim: int, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The channel indices (a_k, b_k) of the D/2 rotated pairs in ``layout`` (see the module docstring)."""
    _check_dim(dim, "dim")
    check_choice("layout", layout, LAYOUTS)
    k = torch.arange(dim // 2)
    return (k, k + dim // 2) if layout == "half" else (2 * k, 2 * k + 1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str = "half") -> torch.Tensor:
    """Rotate the channel pairs of x (B, H, N, D): (a, b) -> (a cos - b sin, a sin + b cos).

    ``cos``, ``sin``: (N, D/2) for positions shared by the batch, or (B, N, D/2) per sequence
    (from :func:`rope_cos_sin`). Returns a tensor of x's shape and dtype.
    """
    check_tensor("x", x, ndim=4, floating=True)
    _check_dim(x.shape[-1])
    check_choice("layout", layout, LAYOUTS)
    half = x.shape[-1] // 2
    if cos.shape != sin.shape or cos.shape[-1] != half or cos.shape[-2] != x.shape[2] or cos.dim() not in (2, 3):
        fail("cos, sin", f"two tensors of shape (N, D/2) or (B, N, D/2) with N = {x.shape[2]}, D/2 = {half}",
             f"{describe(cos)} and {describe(sin)}")
    if cos.dim() == 3:  # per-sequence positions broadcast over the heads
        cos, sin = cos[:, None], sin[:, None]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    if layout == "half":
        a, b = x[..., :half], x[..., half:]
        return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, *, base: float = 10000.0, layout: str = "half") -> torch.Tensor:
    """RoPE: rotate x (B, H, N, D) by the angles of ``positions`` ((N,) or (B, N) integers) in ``layout``."""
    check_tensor("x", x, ndim=4, floating=True)
    _check_dim(x.shape[-1])
    positions = check_positions(positions, x.shape[2], x.shape[0])
    cos, sin = rope_cos_sin(positions.to(x.device), x.shape[-1], base, x.dtype)
    return apply_rotary(x, cos, sin, layout)


def apply_rope_reference(x: torch.Tensor, positions: torch.Tensor, *, base: float = 10000.0,
                         layout: str = "half") -> torch.Tensor:
    """The definition of RoPE: out[..., n, :] = R(positions[n]) @ x[..., n, :], with R(m) the (D, D)
    block-diagonal rotation matrix, entries set pair by pair (rotation by m g_k in the plane of pair k's
    channels). x (B, H, N, D) -> same; O(N D^2) (a test reference, not for use)."""
    check_tensor("x", x, ndim=4, floating=True)
    d = _check_dim(x.shape[-1])
    positions = check_positions(positions, x.shape[2], x.shape[0])
    per_seq = positions if positions.dim() == 2 else positions[None]
    a_idx, b_idx = rope_pair_index(d, layout)
    g = rope_inv_freq(d, _check_base(base))
    mats = torch.zeros(*per_seq.shape, d, d, dtype=torch.float64)
    for k in range(d // 2):
        ang = per_seq.to(torch.float64) * g[k]
        a, b = int(a_idx[k]), int(b_idx[k])
        mats[..., a, a], mats[..., a, b] = ang.cos(), -ang.sin()
        mats[..., b, a], mats[..., b, b] = ang.sin(), ang.cos()
    mats = mats.to(x.dtype).expand(x.shape[0], -1, -1, -1)
    return torch.einsum("bnij,bhnj->bhni", mats, x)
