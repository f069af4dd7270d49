"""RotaryEmbedding: RoPE for the attention mixers, with a cosine/sine cache that grows on demand.

The mixers whose scores are query-key dot products take ``rope=`` (False, True, or a dict of
:class:`RotaryEmbedding` options); :func:`make_rope` turns that argument into the module (or None).
A mixer rotates its (B, H, N, D) queries and keys by their positions: ``0 .. N-1`` in a full
forward, the cache length in a decoding step. The math is :mod:`attnlab.ops.rope`.

The cache holds the cosines and sines of positions ``0 .. L-1``. A position at or beyond L
extends it (to the next power of two) instead of wrapping around; with ``max_positions`` set, a
position at or beyond it raises a ValueError instead, for models that must not see longer
sequences than they were built for.
"""
from __future__ import annotations

import torch
from torch import nn

from attnlab.ops.rope import LAYOUTS, apply_rotary, check_positions, rope_cos_sin
from attnlab.utils.checks import check_choice, check_positive_int, describe, fail

__all__ = ["RotaryEmbedding", "make_rope"]


class RotaryEmbedding(nn.Module):
    """Rotary position embedding of a head dim ``head_dim`` (RoFormer, Su et al. 2021): x (B, H, N, D) -> same.

    Args:
        head_dim: D (even).
        base: the wavelength base (10000 in RoFormer / LLaMA; any value > 1).
        layout: ``"half"`` (pairs (k, k + D/2)) or ``"interleaved"`` (pairs (2k, 2k+1)); see :mod:`attnlab.ops.rope`.
        max_positions: None (the cache grows as needed) or the number of positions allowed (a position
            >= max_positions raises a ValueError).
    """

    def __init__(self, head_dim: int, base: float = 10000.0, layout: str = "half", max_positions: int | None = None):
        super().__init__()
        if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim < 2 or head_dim % 2:
            fail("head_dim", "an even int >= 2 (RoPE rotates channel pairs)", describe(head_dim))
        check_choice("layout", layout, LAYOUTS)
        if max_positions is not None:
            check_positive_int("max_positions", max_positions)
        self.head_dim, self.layout, self.max_positions = head_dim, layout, max_positions
        self.base = float(base)
        rope_cos_sin(torch.zeros(1, dtype=torch.long), head_dim, base)  # validates base now, not at first use
        self.register_buffer("cos_cached", torch.zeros(0, head_dim // 2), persistent=False)
        self.register_buffer("sin_cached", torch.zeros(0, head_dim // 2), persistent=False)

    @property
    def cached_positions(self) -> int:
        """How many positions the cache holds now (it grows on demand)."""
        return self.cos_cached.shape[0]

    def _ensure(self, needed: int) -> None:
        if self.max_positions is not None and needed > self.max_positions:
            fail("positions", f"positions < max_positions={self.max_positions} of this RotaryEmbedding",
                 f"a position {needed - 1}")
        if needed <= self.cached_positions:
            return
        length = 1 << max(needed - 1, 1).bit_length()
        if self.max_positions is not None:
            length = min(length, self.max_positions)
        pos = torch.arange(length, device=self.cos_cached.device)
        self.cos_cached, self.sin_cached = rope_cos_sin(pos, self.head_dim, self.base, self.cos_cached.dtype)

    def cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached cosines and sines of integer ``positions`` (N,) or (B, N): each (..., N, D/2)."""
        if positions.numel() and int(positions.min()) < 0:
            fail("positions", "integers >= 0", f"a position {int(positions.min())}")
        self._ensure(int(positions.max()) + 1 if positions.numel() else 0)
        return self.cos_cached[positions], self.sin_cached[positions]

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None, *, offset: int = 0) -> torch.Tensor:
        """Rotate x (B, H, N, D) by ``positions`` ((N,) or (B, N) integers; default ``offset .. offset + N - 1``)."""
        if positions is None:
            positions = torch.arange(offset, offset + x.shape[2], device=x.device)
        positions = check_positions(positions, x.shape[2], x.shape[0])
        cos, sin = self.cos_sin(positions)
        return apply_rotary(x, cos, sin, self.layout)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base:g}, layout={self.layout!r}, max_positions={self.max_positions}"


def make_rope(rope: object, head_dim: int) -> RotaryEmbedding | None:
    """A mixer's ``rope=`` argument as a module: False/None -> None, True -> defaults, a dict -> its options."""
    if rope is None or rope is False:
        return None
    if rope is True:
        return RotaryEmbedding(head_dim)
    if isinstance(rope, dict):
        allowed = ("base", "layout", "max_positions")
        unknown = sorted(set(rope) - set(allowed))
        if unknown:
            fail("rope", f"a dict with keys among {list(allowed)}", f"unknown keys {unknown}", TypeError)
        return RotaryEmbedding(head_dim, **rope)
    fail("rope", "False, True or a dict of RotaryEmbedding options (base, layout, max_positions)", describe(rope),
         TypeError)
    raise AssertionError  # unreachable
