"""Registry of named models: ``register_model(name)``, ``create(name, **kw)``, ``available()``.

Named designs (``convit_tiny``, ``spectformer_small``, ...) register a factory
function; ``create`` calls it with the user's keyword arguments (e.g.
``img_size``, ``num_classes``) and names the accepted ones when a keyword is
unknown.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable

from torch import nn

__all__ = ["register_model", "create", "available", "count_parameters"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model factory ``fn(**kwargs) -> nn.Module`` under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"register_model: model name {name!r} is already registered")
        _MODELS[name] = fn
        return fn

    return deco


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with ``kwargs`` (KeyError with close matches if unknown)."""
    if name not in _MODELS:
        close = difflib.get_close_matches(str(name), list(_MODELS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise KeyError(f"model name: expected one of {sorted(_MODELS)}, received {name!r}{hint}")
    try:
        return _MODELS[name](**kwargs)
    except TypeError as e:
        if "unexpected keyword" not in str(e):
            raise
        raise TypeError(f"model {name!r} kwargs: {e} (see help(attnlab.models.available()[{name!r}]))") from None


def available() -> dict[str, Callable[..., nn.Module]]:
    """Registered model factories by name (sorted)."""
    return dict(sorted(_MODELS.items()))


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``; shared tensors counted once."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total
