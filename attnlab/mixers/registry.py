"""Registry of token mixers: ``create(name, dim, **kw)`` and ``available()``."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from attnlab.mixers.base import Capabilities, TokenMixer
from attnlab.papers import PAPERS
from attnlab.utils.checks import check_positive_int
from attnlab.utils.names import lookup, unknown_hint

__all__ = ["MixerInfo", "register", "create", "available", "get_info"]


@dataclass(frozen=True)
class MixerInfo:
    """One registry entry.

    ``module`` is the module that defines the mixer (``"attnlab.mixers.deltanet"``) and
    ``paper`` the id of the paper it comes from (``"P12"``, ``""`` for a baseline of no
    paper; :attr:`paper_slug` gives its slug, see :mod:`attnlab.papers`).
    ``test_kwargs`` is a tiny configuration used by the registry-wide tests
    (gradcheck, causality, bad input); ``test_grid`` a grid to test it on when
    the mixer uses geometry (N = prod(test_grid)); ``test_len`` the sequence
    length otherwise. ``bf16_tol`` = (output, input gradient): the largest relative
    error ``|y_bf16 - y_fp32| / |y_fp32|`` (Frobenius norms) the mixer promises at its
    test size, both with module and input in bf16 and under CPU autocast with fp32
    weights; the contract tests check it (default (0.02, 0.03), about twice the worst of
    the mixers measured over six seeds).
    """

    name: str
    cls: type
    capabilities: Capabilities
    summary: str
    default_kwargs: dict = field(default_factory=dict)
    test_kwargs: dict = field(default_factory=dict)
    test_grid: tuple[int, ...] | None = None
    test_len: int = 9
    test_dim: int = 8
    bf16_tol: tuple[float, float] = (0.02, 0.03)
    module: str = ""
    paper: str = ""

    @property
    def paper_slug(self) -> str:
        """Slug of :attr:`paper` (``"deltanet"`` for P12), ``""`` for no paper."""
        return PAPERS[self.paper].slug if self.paper else ""


_REGISTRY: dict[str, MixerInfo] = {}


def register(
    name: str,
    *,
    default_kwargs: dict | None = None,
    test_kwargs: dict | None = None,
    test_grid: tuple[int, ...] | None = None,
    test_len: int = 9,
    test_dim: int = 8,
    bf16_tol: tuple[float, float] = (0.02, 0.03),
) -> Callable[[type], type]:
    """Class decorator adding a :class:`TokenMixer` subclass to the registry.

    The same class may be registered under several names with different
    ``default_kwargs`` (e.g. ``softmax`` and ``softmax_qknorm``). The entry records the
    class's module and the paper id its capabilities declare (an id of :mod:`attnlab.papers`).
    """

    def deco(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, TokenMixer)):
            raise TypeError(f"register({name!r}): expected a TokenMixer subclass, received {cls!r}")
        if name in _REGISTRY:
            raise ValueError(f"register: mixer name {name!r} is already registered by {_REGISTRY[name].cls.__name__}")
        paper = cls.capabilities.paper
        if paper and paper not in PAPERS:
            raise ValueError(f"register({name!r}): capabilities.paper: expected an id P01..P32 or '', "
                             f"received {paper!r}")
        doc = inspect.getdoc(cls) or ""
        _REGISTRY[name] = MixerInfo(
            name=name,
            cls=cls,
            capabilities=cls.capabilities,
            summary=doc.splitlines()[0] if doc else "",
            default_kwargs=dict(default_kwargs or {}),
            test_kwargs=dict(test_kwargs or {}),
            test_grid=test_grid,
            test_len=test_len,
            test_dim=test_dim,
            bf16_tol=tuple(bf16_tol),
            module=cls.__module__,
            paper=paper,
        )
        return cls

    return deco


def get_info(name: str) -> MixerInfo:
    """Registry entry for ``name``; KeyError with close matches if unknown."""
    return lookup(_REGISTRY, name, "mixer")


def create(name: str, dim: int, **kwargs: Any) -> TokenMixer:
    """Build the mixer registered as ``name`` with channel width ``dim``.

    ``kwargs`` override the entry's default kwargs; an unknown keyword raises a
    TypeError that names the mixer and lists the accepted ones.
    """
    info = get_info(name)
    check_positive_int("dim", dim)
    kw = {**info.default_kwargs, **kwargs}
    sig = inspect.signature(info.cls.__init__)
    accepts_var = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    if not accepts_var:
        allowed = [p for p in sig.parameters if p not in ("self", "dim")]
        unknown = [k for k in kw if k not in allowed]
        if unknown:
            raise TypeError(f"mixer {name!r} kwargs: expected some of {allowed}, received unknown {unknown}"
                            f"{unknown_hint(unknown, allowed)}")
    return info.cls(dim, **kw)


def available() -> list[MixerInfo]:
    """All registered mixers, sorted by name, with capabilities and paper ids."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
