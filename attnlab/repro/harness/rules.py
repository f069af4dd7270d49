"""Verdicts and the rule shapes reproductions share.

A reproduction's rule is a pure function ``judge(figures) -> verdict`` of the figures it
measured (a mapping from the module's named figure keys to numbers or booleans); the runner
calls it, so a verdict can never be written by hand. The helpers here are the shapes that
recur across rules; each is pure and total (NaN compares false, which the docstrings spell out).
"""
from __future__ import annotations

__all__ = ["HOLDS", "DOES_NOT_HOLD", "INCONCLUSIVE", "VERDICTS", "QUICK_NOTE", "band", "two_parts", "guard_learned"]

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold at this scale"
INCONCLUSIVE = "inconclusive"
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE)

#: What a quick run's verdict says wherever it is shown (terminal, report.md).
QUICK_NOTE = "quick run: a smoke test, not a finding"


def band(margin: float, width: float) -> str:
    """The band verdict: holds if ``margin > +width``, does not hold if ``margin < -width``, else inconclusive.

    ``margin`` is how far the claimed winner is ahead (any unit, the same as ``width``); NaN gives inconclusive.
    """
    if margin > width:
        return HOLDS
    if margin < -width:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def two_parts(first: bool, second: bool) -> str:
    """A claim with two parts: both hold -> holds; neither -> does not hold; exactly one -> inconclusive."""
    if first and second:
        return HOLDS
    if not (first or second):
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def guard_learned(learned: bool, verdict: str) -> str:
    """The "no arm learned the task" guard: inconclusive when nothing was learned (comparing arms that all sit
    at chance measures noise), otherwise ``verdict`` unchanged."""
    return verdict if learned else INCONCLUSIVE
