"""Inputs and implementation sets shared by the case modules (one place for setup code repeated by shape)."""
from __future__ import annotations

import inspect
import math

import torch

from attnlab.bench.thunks import Impls

__all__ = ["random_qkv", "grid_side", "create_mixer", "mixer_impls"]


def random_qkv(n: int, dtype: torch.dtype, mode: str, *, batch: int, heads: int, head_dim: int) -> list[torch.Tensor]:
    """[q, k, v], each (batch, heads, n, head_dim) standard normal (seed 0); they require grad in ``"fwdbwd"``."""
    g = torch.Generator().manual_seed(0)
    return [torch.randn(batch, heads, n, head_dim, generator=g, dtype=dtype).requires_grad_(mode == "fwdbwd")
            for _ in range(3)]


def grid_side(n: int) -> int:
    """The side of the square grid of ``n`` tokens; ValueError naming ``n`` when ``n`` is not a square."""
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"n: expected a square number of tokens (grid side x side), received {n}")
    return side


def create_mixer(name: str, dim: int, heads: int | None = None, **kwargs):
    """``attnlab.mixers.create(name, dim, **kwargs)``, with ``num_heads=heads`` for mixers that take heads."""
    import attnlab.mixers as registry

    if heads is not None and "num_heads" in inspect.signature(registry.get_info(name).cls.__init__).parameters:
        kwargs = {"num_heads": heads, **kwargs}
    return registry.create(name, dim, **kwargs)


def mixer_impls(specs: dict[str, tuple[str, dict]], n: int, dtype: torch.dtype, mode: str, *, batch: int, dim: int,
                heads: int | None = None, **call_kwargs) -> Impls:
    """One implementation per ``{impl: (mixer name, kwargs)}``, each with its own weights (seed 0), in train mode.

    All run on the same input x of shape (batch, n, dim), called as ``mixer(x, **call_kwargs)``.
    """
    torch.manual_seed(0)
    x = torch.randn(batch, n, dim, dtype=dtype, requires_grad=mode == "fwdbwd")
    impls = Impls(mode)
    for impl, (name, kwargs) in specs.items():
        m = create_mixer(name, dim, heads, **kwargs).to(dtype).train()
        impls.add(impl, lambda m=m: m(x, **call_kwargs), [x])
    return impls
