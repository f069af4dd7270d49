"""Benchmark cases for ``attnlab bench``: what to time, against what.

A case is a setup function registered with :func:`register_case`. Given a
sequence length ``n``, a dtype, a mode (``"fwd"`` or ``"fwdbwd"``) and the case's
params, it builds inputs and returns ``{impl_name: thunk}``; each thunk runs
the implementation once (forward under ``no_grad`` for ``"fwd"``; forward and
``backward`` for ``"fwdbwd"``). An implementation that cannot run here (peer
not installed, too large for the reference) is left out of the dict, or listed
in the optional ``skipped`` dict the setup may return as a second value.

Cases live in the modules listed in ``CASE_MODULES`` (one line per family).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import torch

__all__ = ["BenchCase", "register_case", "get_case", "available_cases", "CASE_MODULES"]

CASE_MODULES = [
    "attnlab.bench.attention",
    "attnlab.bench.linear",
    "attnlab.bench.vision",
    "attnlab.bench.routed",
    "attnlab.bench.sparse",
    "attnlab.bench.local",
]


@dataclass(frozen=True)
class BenchCase:
    """A registered benchmark: name, description, setup, defaults, the baseline impl for ratios."""

    name: str
    description: str
    setup: Callable
    sizes: tuple[int, ...]
    reference: str
    params: dict = field(default_factory=dict)
    modes: tuple[str, ...] = ("fwd", "fwdbwd")


_CASES: dict[str, BenchCase] = {}


def register_case(
    name: str, *, description: str, sizes: tuple[int, ...], reference: str, params: dict | None = None,
    modes: tuple[str, ...] = ("fwd", "fwdbwd"),
) -> Callable:
    """Decorator registering ``setup(n, dtype, mode, **params)`` as benchmark ``name``."""

    def deco(fn: Callable) -> Callable:
        if name in _CASES:
            raise ValueError(f"register_case: {name!r} is already registered")
        _CASES[name] = BenchCase(name, description, fn, tuple(sizes), reference, dict(params or {}), tuple(modes))
        return fn

    return deco


def _load_all() -> None:
    for mod in CASE_MODULES:
        importlib.import_module(mod)


def available_cases() -> dict[str, BenchCase]:
    """All registered cases by name."""
    _load_all()
    return dict(sorted(_CASES.items()))


def get_case(name: str) -> BenchCase:
    """The case ``name``; KeyError listing the cases if unknown."""
    cases = available_cases()
    if name not in cases:
        raise KeyError(f"case: expected one of {sorted(cases)}, received {name!r}")
    return cases[name]


def make_thunk(fn: Callable[[], torch.Tensor], inputs: list[torch.Tensor], mode: str) -> Callable[[], None]:
    """Helper for setups: wrap ``fn`` (returning a tensor) as a fwd or fwd+bwd thunk.

    For ``"fwdbwd"`` the gradient of ``(out * g).sum()`` with a fixed random g is
    taken w.r.t. ``inputs`` (which must require grad); grads are cleared first.
    """
    if mode == "fwd":

        def run_fwd() -> None:
            with torch.no_grad():
                fn()

        return run_fwd

    g_holder: list[torch.Tensor] = []

    def run_fwdbwd() -> None:
        for t in inputs:
            t.grad = None
        out = fn()
        if not g_holder:
            g_holder.append(torch.randn_like(out))
        out.backward(g_holder[0])

    return run_fwdbwd
