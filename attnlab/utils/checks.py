"""Input checks shared by ops, mixers and models.

Every check raises ``ValueError`` or ``TypeError`` with a message that names the
argument, what was expected and what was received, so that bad input never turns
into a silent wrong result.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch


def fail(arg: str, expected: str, received: object, exc: type[Exception] = ValueError) -> None:
    """Raise ``exc`` with the project's standard message."""
    raise exc(f"{arg}: expected {expected}, received {received}")


def describe(t: object) -> str:
    """Short description of a value for error messages (shape and dtype for tensors)."""
    if isinstance(t, torch.Tensor):
        return f"tensor of shape {tuple(t.shape)} and dtype {t.dtype}"
    return f"{type(t).__name__} {t!r}"


def check_tensor(
    arg: str,
    t: object,
    *,
    ndim: int | None = None,
    floating: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Check that ``t`` is a tensor of the given rank / kind and return it."""
    if not isinstance(t, torch.Tensor):
        fail(arg, "a torch.Tensor", describe(t), TypeError)
    if ndim is not None and t.dim() != ndim:
        fail(arg, f"a tensor of rank {ndim}", describe(t))
    if floating and not t.is_floating_point():
        fail(arg, "a floating-point tensor", describe(t), TypeError)
    if dtype is not None and t.dtype != dtype:
        fail(arg, f"dtype {dtype}", describe(t), TypeError)
    return t


def check_positive_int(arg: str, value: object) -> int:
    """Check that ``value`` is an int >= 1 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        fail(arg, "a positive int", describe(value), TypeError if not isinstance(value, int) else ValueError)
    return value


def check_choice(arg: str, value: object, choices: Sequence[object]) -> object:
    """Check that ``value`` is one of ``choices``."""
    if value not in choices:
        fail(arg, f"one of {list(choices)}", describe(value))
    return value


def check_grid(arg: str, grid: object, n: int, dims: Sequence[int] = (1, 2, 3)) -> tuple[int, ...]:
    """Check that ``grid`` is a tuple of positive ints with ``prod(grid) == n``."""
    if not isinstance(grid, (tuple, list, torch.Size)) or not all(
        isinstance(g, int) and not isinstance(g, bool) and g > 0 for g in grid
    ):
        fail(arg, "a tuple of positive ints such as (H, W)", describe(grid), TypeError)
    grid = tuple(grid)
    if len(grid) not in dims:
        fail(arg, f"a grid with {' or '.join(map(str, dims))} dimensions", describe(grid))
    if math.prod(grid) != n:
        fail(arg, f"a grid whose product equals the number of tokens N={n}", f"{grid} (product {math.prod(grid)})")
    return grid


def check_key_padding_mask(arg: str, mask: object, batch: int, n: int) -> torch.Tensor:
    """Check a key-padding mask: bool tensor (B, N), True = real token."""
    m = check_tensor(arg, mask, ndim=2)
    if m.dtype != torch.bool:
        fail(arg, "a bool tensor (True = real token)", describe(m), TypeError)
    if tuple(m.shape) != (batch, n):
        fail(arg, f"shape (B, N) = ({batch}, {n})", describe(m))
    return m
