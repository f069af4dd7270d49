"""The token-mixer contract every mixer in attnlab follows.

A token mixer maps ``x`` of shape (B, N, C) to (B, N, C) with the same dtype.
Keyword-only options: ``grid`` (spatial shape with prod == N, for mixers that use
geometry), ``causal`` (token i sees only tokens <= i) and ``key_padding_mask``
((B, N) bool, True = real token). What a mixer supports is declared on its class
as :class:`Capabilities`; the base class validates every input against it and
raises a clear error instead of returning a silent wrong result.

Precision (one behaviour for every mixer): ``x`` must have the dtype of the mixer's
parameters (fp32, fp64, or bf16 after ``.to(torch.bfloat16)``), except under
``torch.autocast("cpu", dtype=torch.bfloat16)``, where any floating ``x`` runs with the
fp32 weights (matmuls in bf16, the ops' accumulations in fp32); a mismatch outside
autocast is a TypeError naming ``x``. The output always has ``x``'s dtype, under
autocast too.

Padding: positions where ``key_padding_mask`` is False are set to zero before
:meth:`TokenMixer.mix` sees them, so nothing they hold (NaN, inf, uninitialised memory)
reaches a real token; their own outputs are those of a zero token and carry no meaning.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import nn

from attnlab.utils.checks import check_grid, check_key_padding_mask, check_positive_int, check_tensor, describe, fail
from attnlab.utils.precision import autocast_dtype

__all__ = ["Capabilities", "TokenMixer", "check_num_heads"]


@dataclass(frozen=True)
class Capabilities:
    """What a mixer supports.

    Attributes:
        causal: can run with ``causal=True`` (autoregressive).
        bidirectional: can run with ``causal=False``.
        grid: ``"none"`` (geometry unused), ``"optional"`` (used when given) or
            ``"required"`` (a ``grid`` must be passed).
        grid_dims: numbers of grid dimensions accepted, e.g. ``(2,)``.
        key_padding_mask: honours ``key_padding_mask`` (padded keys are ignored).
        cross: can attend to a separate context sequence.
        recurrent: has a carried-state decoding path (``step``).
        complexity: time complexity in N, for the registry listing.
        paper: paper id from PAPERS.md (e.g. ``"P12"``) or ``""``.
    """

    causal: bool = False
    bidirectional: bool = True
    grid: str = "none"
    grid_dims: tuple[int, ...] = (1, 2, 3)
    key_padding_mask: bool = False
    cross: bool = False
    recurrent: bool = False
    complexity: str = "O(N^2)"
    paper: str = ""

    def as_dict(self) -> dict:
        """Plain dict (for tables and JSON)."""
        return asdict(self)


def check_num_heads(dim: int, num_heads: object) -> int:
    """``num_heads`` as a positive int dividing the width ``dim`` (head dim ``dim // num_heads``).

    Raises the standard ValueError / TypeError naming ``num_heads`` otherwise.
    """
    check_positive_int("num_heads", num_heads)
    if dim % num_heads:
        fail("num_heads", f"a divisor of dim={dim}", num_heads)
    return num_heads


class TokenMixer(nn.Module):
    """Base class: validates input against the declared capabilities.

    Subclasses set ``capabilities`` and implement :meth:`mix`; callers use
    ``forward(x, *, grid=None, causal=False, key_padding_mask=None)``.
    ``dim`` is the channel width C. ``mix`` receives zeros at padded positions and may
    return any floating dtype (e.g. bf16 under autocast); ``forward`` returns ``x``'s dtype.
    """

    capabilities: ClassVar[Capabilities] = Capabilities()
    is_token_mixer: ClassVar[bool] = True  # read by attnlab.ops.record_attention

    def __init__(self, dim: int):
        super().__init__()
        self.dim = check_positive_int("dim", dim)

    def mix(
        self,
        x: torch.Tensor,
        *,
        grid: tuple[int, ...] | None,
        causal: bool,
        key_padding_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Mix validated input (B, N, C) -> (B, N, C). Implemented by subclasses."""
        raise NotImplementedError(f"{type(self).__name__} must implement mix()")

    def check_input(
        self,
        x: object,
        grid: object = None,
        causal: object = False,
        key_padding_mask: object = None,
    ) -> tuple[torch.Tensor, tuple[int, ...] | None, torch.Tensor | None]:
        """Validate the forward arguments; returns (x, grid, key_padding_mask) normalised."""
        name = type(self).__name__
        caps = self.capabilities
        x = check_tensor("x", x, ndim=3, floating=True)
        weight_dtype = self.weight_dtype()
        if weight_dtype is not None and x.dtype != weight_dtype and autocast_dtype() is None:
            fail("x", f"dtype {weight_dtype} (the mixer's parameters: cast the module with .to(dtype), or run under "
                 "torch.autocast('cpu', dtype=torch.bfloat16))", describe(x), TypeError)
        b, n, c = x.shape
        if c != self.dim:
            fail("x", f"channel dim C={self.dim} (the mixer's dim), shape (B, N, {self.dim})", describe(x))
        if n == 0:
            fail("x", "at least one token (N >= 1)", describe(x))
        if not isinstance(causal, bool):
            fail("causal", "a bool", describe(causal), TypeError)
        if causal and not caps.causal:
            fail("causal", f"False: {name} cannot be causal (see its capabilities)", True)
        if not causal and not caps.bidirectional:
            fail("causal", f"True: {name} is causal-only", False)
        if grid is None:
            if caps.grid == "required":
                fail("grid", f"a spatial shape such as (H, W) with H*W == N={n}: {name} needs geometry", None)
        else:
            grid = check_grid("grid", grid, n, caps.grid_dims)
        if key_padding_mask is not None:
            if not caps.key_padding_mask:
                fail("key_padding_mask", f"None: {name} does not support key padding masks", describe(key_padding_mask))
            key_padding_mask = check_key_padding_mask("key_padding_mask", key_padding_mask, b, n)
            if key_padding_mask.device != x.device:
                fail("key_padding_mask", f"device {x.device} (as x)", key_padding_mask.device)
        return x, grid, key_padding_mask

    def weight_dtype(self) -> torch.dtype | None:
        """dtype of the mixer's first floating parameter (else buffer); None if it has neither."""
        for t in (*self.parameters(), *self.buffers()):
            if t.is_floating_point():
                return t.dtype
        return None

    def forward(
        self,
        x: torch.Tensor,
        *,
        grid: tuple[int, ...] | None = None,
        causal: bool = False,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mix tokens: x (B, N, C) -> (B, N, C), same dtype (see the module doc for precision and padding)."""
        x, grid, key_padding_mask = self.check_input(x, grid, causal, key_padding_mask)
        if key_padding_mask is not None:
            # masked_fill, not a product: 0 * NaN would carry the NaN on
            x = x.masked_fill(~key_padding_mask.unsqueeze(-1), 0.0)
        y = self.mix(x, grid=grid, causal=causal, key_padding_mask=key_padding_mask)
        return y if y.dtype == x.dtype else y.to(x.dtype)
