"""What a case setup hands the runner: one timed call per implementation, able to show its answer.

A :class:`Thunk` runs an implementation once the way the benchmark times it (forward under
``no_grad`` for ``"fwd"``; forward and ``backward`` for ``"fwdbwd"``), and on request returns
what that call computed (the output, and for ``"fwdbwd"`` the input gradients), so that a test
can check that a benchmark does not time a wrong answer. :class:`Impls` collects a setup's
thunks and the implementations it skipped, with the reason.
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ["Thunk", "Impls", "autocast_thunk"]


def _cotangent(out: torch.Tensor) -> torch.Tensor:
    """The fixed upstream gradient of a fwd+bwd call: the same for every implementation of a case."""
    g = torch.Generator().manual_seed(1234)
    return torch.randn(out.shape, generator=g, dtype=torch.float32).to(out.dtype)


class Thunk:
    """One call of ``fn`` (returning a tensor) as timed in ``mode``.

    For ``"fwdbwd"`` the gradient of ``(out * g).sum()``, with a fixed random ``g``, is taken
    w.r.t. ``inputs`` (which must require grad; their grads are cleared first). ``to_bhnd``
    maps the output to the case's common layout for comparisons only (it is not timed).
    """

    def __init__(self, fn: Callable[[], torch.Tensor], inputs: list[torch.Tensor], mode: str,
                 to_bhnd: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if mode not in ("fwd", "fwdbwd"):
            raise ValueError(f"mode: expected 'fwd' or 'fwdbwd', received {mode!r}")
        self.fn, self.inputs, self.mode, self.to_bhnd = fn, list(inputs), mode, to_bhnd
        self._g: torch.Tensor | None = None

    def __call__(self) -> None:
        """Run once, as timed."""
        self._run()

    def _run(self) -> torch.Tensor:
        if self.mode == "fwd":
            with torch.no_grad():
                return self.fn()
        for t in self.inputs:
            t.grad = None
        out = self.fn()
        if self._g is None:
            self._g = _cotangent(out)
        out.backward(self._g)
        return out

    def outputs(self) -> list[torch.Tensor]:
        """What one call computes: [output] for ``"fwd"``, [output, *input grads] for ``"fwdbwd"`` (detached)."""
        out = self._run().detach()
        out = self.to_bhnd(out) if self.to_bhnd is not None else out
        if self.mode == "fwd":
            return [out]
        return [out] + [t.grad.detach().clone() for t in self.inputs]


class Impls:
    """A setup's implementations for one (n, dtype, mode): ``thunks`` {name: Thunk} and ``skipped`` {name: why}."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.thunks: dict[str, Thunk] = {}
        self.skipped: dict[str, str] = {}

    def add(self, name: str, fn: Callable[[], torch.Tensor], inputs: list[torch.Tensor],
            to_bhnd: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Register implementation ``name``: ``fn()`` returns its output; ``inputs`` get gradients in fwd+bwd."""
        if name in self.thunks or name in self.skipped:
            raise ValueError(f"impl: {name!r} is already registered")
        self.thunks[name] = Thunk(fn, inputs, self.mode, to_bhnd)

    def skip(self, name: str, why: str) -> None:
        """Record that implementation ``name`` does not run here, and why."""
        self.skipped[name] = why

    def add_up_to(self, name: str, n: int, limit: int, why: str, fn: Callable[[], torch.Tensor],
                  inputs: list[torch.Tensor]) -> None:
        """Add ``name`` when ``n <= limit``; else skip it with ``"N > limit: why"`` (references that need N x N)."""
        if n <= limit:
            self.add(name, fn, inputs)
        else:
            self.skip(name, f"N > {limit}: {why}")


def autocast_thunk(thunk: Thunk) -> Thunk:
    """``thunk`` with its forward call under CPU autocast to bf16 (the backward runs outside it, as in training)."""
    fn = thunk.fn

    def run() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fn()

    thunk.fn = run
    return thunk
