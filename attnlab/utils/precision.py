"""Precision: bf16 through CPU autocast, and the two policies attnlab's ops follow under it.

fp32 is the reference precision. bf16 (this CPU's AMX tile units run bf16 matmuls at about 5x the
fp32 rate) is a training precision through ``torch.autocast("cpu", dtype=torch.bfloat16)`` with
fp32 master weights: :func:`precision_context` gives that context for a precision name
(``"fp32"`` / ``"bf16"``, :data:`PRECISIONS`).

Every op of :mod:`attnlab.ops` follows one of two policies, the same two torch's own autocast
lists use, so that what an op computes under autocast is a decision of the op, not of whichever
torch functions it happens to call:

* :func:`lower_precision_op` (matmul-bound ops: the attention family, linear attention, the delta
  rule): under autocast, fp32 tensor arguments are cast to the autocast dtype, the op runs with
  autocast off (its own fp32 accumulations stay fp32) and returns the autocast dtype.
* :func:`fp32_op` (FFT convolutions, selective scans: ops whose bf16 result would be wrong or
  that have no bf16 kernel): under autocast, low-precision tensor arguments are cast to fp32, the
  op runs with autocast off and returns fp32. Outside autocast, bf16 arguments are computed in
  fp32 too and the outputs cast back to bf16.

Outside autocast, a :func:`lower_precision_op` only calls the op: bf16 inputs give bf16 outputs,
and the op accumulates in fp32 where precision needs it (see the op's docstring).
"""
from __future__ import annotations

import contextlib
import functools
from typing import Callable, TypeVar

import torch

from attnlab.utils.checks import describe, fail

__all__ = ["PRECISIONS", "LOW_PRECISION", "check_precision", "precision_context", "autocast_dtype", "no_autocast",
           "lower_precision_op", "fp32_op", "upcast", "is_low_precision"]

#: precision name -> the dtype autocast computes in (fp32: no autocast)
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
#: floating dtypes attnlab computes in at reduced precision
LOW_PRECISION = (torch.bfloat16, torch.float16)

F = TypeVar("F", bound=Callable)


def check_precision(arg: str, value: object) -> str:
    """``value`` as a precision name of :data:`PRECISIONS`; ValueError naming ``arg`` otherwise."""
    if not isinstance(value, str) or value not in PRECISIONS:
        fail(arg, f"one of {list(PRECISIONS)}", describe(value))
    return value


def precision_context(precision: str):
    """The context a forward pass runs in at ``precision``: CPU autocast to bf16, or nothing for fp32."""
    check_precision("precision", precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=PRECISIONS[precision])


def autocast_dtype() -> torch.dtype | None:
    """The dtype CPU autocast casts to when it is enabled here, else None."""
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None


def no_autocast():
    """A context with CPU autocast off (an op's explicit precision choices hold inside it)."""
    return torch.autocast("cpu", enabled=False)


def is_low_precision(t: torch.Tensor) -> bool:
    """Whether ``t`` is a bf16 / fp16 tensor."""
    return t.dtype in LOW_PRECISION


def upcast(t: torch.Tensor) -> torch.Tensor:
    """``t`` in fp32 if it is bf16 / fp16, else ``t`` itself (fp32 and fp64 are kept)."""
    return t.float() if t.dtype in LOW_PRECISION else t


def _cast_args(args: tuple, kwargs: dict, convert: Callable[[torch.Tensor], torch.Tensor]) -> tuple[tuple, dict]:
    def one(a):
        return convert(a) if isinstance(a, torch.Tensor) and a.is_floating_point() else a

    return tuple(one(a) for a in args), {k: one(v) for k, v in kwargs.items()}


def lower_precision_op(fn: F) -> F:
    """Decorator: under CPU autocast, run ``fn`` on its fp32 tensor arguments cast to the autocast dtype,
    with autocast off inside (see the module doc). Outside autocast, ``fn`` runs as called."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        dtype = autocast_dtype()
        if dtype is None:
            return fn(*args, **kwargs)
        args, kwargs = _cast_args(args, kwargs, lambda t: t.to(dtype) if t.dtype == torch.float32 else t)
        with no_autocast():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _cast_outputs(out, dtype: torch.dtype):
    if isinstance(out, torch.Tensor):
        return out.to(dtype) if out.is_floating_point() else out
    if isinstance(out, tuple):
        return tuple(_cast_outputs(o, dtype) for o in out)
    return out


def fp32_op(fn: F) -> F:
    """Decorator: run ``fn`` in fp32 when a tensor argument is bf16 / fp16 or CPU autocast is on.

    Under autocast: low-precision arguments are cast to fp32, autocast is off inside, outputs are
    fp32 (as torch's fp32-listed ops). Outside autocast, when the first floating tensor argument is
    bf16 / fp16: the arguments of that dtype are cast to fp32 (others are left for the op's dtype
    checks) and the floating outputs cast back to it. Otherwise ``fn`` runs as called.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if autocast_dtype() is not None:
            args, kwargs = _cast_args(args, kwargs, upcast)
            with no_autocast():
                return fn(*args, **kwargs)
        first = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.is_floating_point()),
                     None)
        if first is None or not is_low_precision(first):
            return fn(*args, **kwargs)
        low = first.dtype
        # only arguments of the first one's dtype: a mixed-dtype call still meets the op's own dtype check
        args, kwargs = _cast_args(args, kwargs, lambda t: t.float() if t.dtype == low else t)
        return _cast_outputs(fn(*args, **kwargs), low)

    return wrapper  # type: ignore[return-value]
