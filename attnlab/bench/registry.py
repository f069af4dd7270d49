"""The registry of ``attnlab bench`` cases: what to time, against what, and what proves it correct.

A case is a setup function registered with :func:`register_case`. Given a sequence length
``n``, a dtype, a mode (``"fwd"`` or ``"fwdbwd"``) and the case's params, it builds inputs and
returns an :class:`~attnlab.bench.thunks.Impls` (one :class:`~attnlab.bench.thunks.Thunk` per
implementation, and the implementations it skipped with the reason). Each case names the ops
it times (dotted paths) and the test files that prove those ops correct; a case with an
``oracle`` implementation states which other implementations must give the oracle's outputs
(and input gradients), checked at the case's ``tiny`` size by ``tests/bench``.

The param ``threads``, when a case declares it, is not passed to the setup: the worker sets
torch's intra-op thread count to it before the setup runs (``--threads`` on the command line).

Cases live in the modules listed in ``CASE_MODULES`` (one per ops family); nothing outside
``attnlab.bench`` imports them.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Callable

from attnlab.utils.checks import fail
from attnlab.utils.names import lookup, unknown_hint

__all__ = ["BenchCase", "register_case", "get_case", "available_cases", "validate_sizes", "CASE_MODULES",
           "RUNNER_PARAMS"]

CASE_MODULES = (
    "attnlab.bench.attention",
    "attnlab.bench.linear",
    "attnlab.bench.local",
    "attnlab.bench.routed",
    "attnlab.bench.sparse",
    "attnlab.bench.vision",
    "attnlab.bench.training",
)

#: params the worker consumes itself instead of passing them to the setup
RUNNER_PARAMS = ("threads",)

#: size rules a case may declare: name -> (predicate on a positive N, what it expects)
SIZE_RULES: dict[str, tuple[Callable[[int], bool], str]] = {
    "any": (lambda n: True, "positive integers"),
    "square": (lambda n: math.isqrt(n) ** 2 == n, "positive square numbers (a side x side grid)"),
}


@dataclass(frozen=True)
class BenchCase:
    """A registered benchmark.

    ``reference`` is the implementation the time ratios are taken against; ``oracle`` (or None)
    the implementation whose outputs those in ``agree`` must reproduce to ``tolerance`` (largest
    absolute difference over the oracle's largest absolute entry); ``tiny`` is (n, param
    overrides) of the correctness smoke run; ``ops`` and ``tests`` name what is timed and the
    test files (paths under the repository) that prove it correct.
    """

    name: str
    description: str
    setup: Callable
    sizes: tuple[int, ...]
    reference: str
    ops: tuple[str, ...]
    tests: tuple[str, ...]
    tiny: tuple[int, dict]
    params: dict = field(default_factory=dict)
    modes: tuple[str, ...] = ("fwd", "fwdbwd")
    oracle: str | None = None
    agree: tuple[str, ...] = ()
    tolerance: float = 1e-4
    size_rule: str = "any"

    def setup_params(self, overrides: dict | None = None, arg: str = "params") -> dict:
        """The case's params with ``overrides`` applied, without the ones the worker consumes itself.

        Unknown keys raise a ValueError naming ``arg``.
        """
        merged = {**self.params, **(overrides or {})}
        unknown = sorted(set(merged) - set(self.params) - set(RUNNER_PARAMS))
        if unknown:
            fail(arg, f"keys among {sorted(self.params)} for case {self.name!r}",
                 f"{unknown}{unknown_hint(unknown, [*self.params, *RUNNER_PARAMS])}")
        return {k: v for k, v in merged.items() if k not in RUNNER_PARAMS}


_CASES: dict[str, BenchCase] = {}


def register_case(
    name: str, *, description: str, sizes: tuple[int, ...], reference: str, ops: tuple[str, ...],
    tests: tuple[str, ...], tiny: tuple[int, dict], params: dict | None = None,
    modes: tuple[str, ...] = ("fwd", "fwdbwd"), oracle: str | None = None, agree: tuple[str, ...] = (),
    tolerance: float = 1e-4, size_rule: str = "any",
) -> Callable:
    """Decorator registering ``setup(n, dtype, mode, **params) -> Impls`` as benchmark ``name``."""

    def deco(fn: Callable) -> Callable:
        if name in _CASES:
            raise ValueError(f"register_case: {name!r} is already registered")
        if size_rule not in SIZE_RULES:
            fail("size_rule", f"one of {sorted(SIZE_RULES)}", repr(size_rule))
        if agree and oracle is None:
            fail("agree", "no implementations when the case has no oracle", agree)
        _CASES[name] = BenchCase(name, description, fn, tuple(sizes), reference, tuple(ops), tuple(tests),
                                 (tiny[0], dict(tiny[1])), dict(params or {}), tuple(modes), oracle, tuple(agree),
                                 tolerance, size_rule)
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
    """The case ``name``; KeyError listing the cases (and close matches) if unknown."""
    return lookup(available_cases(), name, "case", arg="case")


def validate_sizes(case: BenchCase, sizes: object, arg: str = "sizes") -> list[int]:
    """``sizes`` as a list of ints that ``case`` accepts; ValueError naming ``arg`` otherwise."""
    check, expected = SIZE_RULES[case.size_rule]
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        fail(arg, f"a list of {expected}", repr(sizes))
    sizes = list(sizes)
    bad = [n for n in sizes if isinstance(n, bool) or not isinstance(n, int) or n < 1 or not check(n)]
    if not sizes or bad:
        fail(arg, f"{expected} for case {case.name!r}", ",".join(map(str, bad or sizes)) or "nothing")
    return sizes
