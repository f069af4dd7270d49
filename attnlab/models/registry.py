"""Registry of named models: ``register_model(name, paper=...)``, ``create(name, **kw)``, ``available()``.

Named designs (``convit_tiny``, ``spectformer_small``, ...) register a factory
function; ``create`` calls it with the user's keyword arguments (e.g.
``img_size``, ``num_classes``) and names the accepted ones when a keyword is
unknown. Each entry records the module that defines it and the id of its paper
(:func:`get_info`, :func:`available_info`; ``attnlab list models`` prints them).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from attnlab.papers import PAPERS
from attnlab.utils.names import lookup

__all__ = ["ModelInfo", "register_model", "create", "available", "available_info", "get_info", "count_parameters"]


@dataclass(frozen=True)
class ModelInfo:
    """One registered model: its ``name``, ``factory``, defining ``module``, ``paper`` id and one-line ``summary``."""

    name: str
    factory: Callable[..., nn.Module]
    module: str
    paper: str
    summary: str

    @property
    def paper_slug(self) -> str:
        """Slug of :attr:`paper` (``"convit"`` for P11)."""
        return PAPERS[self.paper].slug


_MODELS: dict[str, ModelInfo] = {}


def register_model(name: str, *, paper: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model factory ``fn(**kwargs) -> nn.Module`` under ``name``.

    ``paper`` is the id (``"P11"``) of the paper the design comes from (see :mod:`attnlab.papers`).
    """
    if paper not in PAPERS:
        raise ValueError(f"register_model({name!r}): paper: expected an id P01..P32, received {paper!r}")

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"register_model: model name {name!r} is already registered")
        doc = inspect.getdoc(fn) or ""
        _MODELS[name] = ModelInfo(name, fn, fn.__module__, paper, doc.splitlines()[0] if doc else "")
        return fn

    return deco


def get_info(name: str) -> ModelInfo:
    """Registry entry of model ``name``; KeyError with close matches if unknown."""
    return lookup(_MODELS, name, "model")


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with ``kwargs`` (KeyError with close matches if unknown)."""
    factory = get_info(name).factory
    try:
        return factory(**kwargs)
    except TypeError as e:
        if "unexpected keyword" not in str(e):
            raise
        raise TypeError(f"model {name!r} kwargs: {e} (see help(attnlab.models.available()[{name!r}]))") from None


def available() -> dict[str, Callable[..., nn.Module]]:
    """Registered model factories by name (sorted)."""
    return {name: info.factory for name, info in sorted(_MODELS.items())}


def available_info() -> list[ModelInfo]:
    """All registry entries, sorted by name, with module and paper."""
    return [_MODELS[k] for k in sorted(_MODELS)]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``; shared tensors counted once."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total
