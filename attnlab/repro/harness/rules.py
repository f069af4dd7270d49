"""Verdicts and the rule shapes reproductions share.

A reproduction's rule is a pure function ``judge(figures) -> verdict`` of the figures it
measured (a mapping from the module's named figure keys to intervals, numbers or booleans); the
runner calls it, so a verdict can never be written by hand. The helpers here are the shapes that
recur across rules; each is pure and total (NaN compares false, which the docstrings spell out).

Under the protocol of issue 18 a figure is a mean over seeds with a 95 % interval
(:class:`~attnlab.repro.harness.intervals.Interval`), and a claim part is judged by :func:`clears`:
it holds when the whole interval is on the claimed side of the paper's margin, does not hold when
the whole interval is on the other side, and is inconclusive when the interval contains the margin.
Parts combine with :func:`all_parts` (a claim that needs every part) or :func:`unanimous` (both
parts, neither, or one of two). :func:`chance_rule` is what arms that learned nothing decide, said
by each rule before the run.
"""
from __future__ import annotations

from collections.abc import Iterable

__all__ = ["HOLDS", "DOES_NOT_HOLD", "INCONCLUSIVE", "VERDICTS", "QUICK_NOTE", "band", "two_parts", "guard_learned",
           "clears", "all_parts", "unanimous", "chance_rule", "chance_rule_each"]

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


def clears(interval, margin: float, *, above: bool = True) -> str:
    """One claim part against the paper's margin: the claim is "the figure is above ``margin``" (``above``) or
    "below ``margin``" (not ``above``).

    Holds if the whole interval is strictly on the claimed side (``low > margin``, resp. ``high < margin``);
    does not hold if it is strictly on the other side; inconclusive if it contains the margin, touches it,
    or is NaN. ``interval`` is an :class:`~attnlab.repro.harness.intervals.Interval`.
    """
    low, high = (interval.low, interval.high) if above else (-interval.high, -interval.low)
    m = margin if above else -margin
    if low > m:
        return HOLDS
    if high < m:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def all_parts(*verdicts: str) -> str:
    """A claim that needs every part: holds if every part holds, does not hold if any part does not, else
    inconclusive."""
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    if any(v == DOES_NOT_HOLD for v in verdicts):
        return DOES_NOT_HOLD
    return INCONCLUSIVE


def unanimous(*verdicts: str) -> str:
    """A claim of several findings where some but not all reproducing is "inconclusive": the common verdict
    when every part agrees, else inconclusive (``two_parts`` for verdicts instead of booleans)."""
    return verdicts[0] if verdicts and all(v == verdicts[0] for v in verdicts) else INCONCLUSIVE


def chance_rule(at_chance: Iterable[str], arms: Iterable[str], *, counts_against: Iterable[str] = ()) -> str | None:
    """What arms that learned nothing decide, before any interval is read (each rule states its choice).

    ``at_chance``: the arms within the protocol's margin of chance at every LR tried (figure
    :data:`~attnlab.repro.harness.protocol.AT_CHANCE`); ``arms``: the arms the rule reads. Returns
    inconclusive if every arm in ``arms`` is at chance (comparing arms that all sit at chance measures
    noise); does not hold if an arm of ``counts_against`` is at chance while another arm of ``arms``
    learned (a design that cannot learn what its baseline learns at equal budget); None otherwise (the
    intervals decide; an arm at chance outside ``counts_against`` is named in the verdict line all the same).
    """
    at, read = set(at_chance), set(arms)
    if read <= at:
        return INCONCLUSIVE
    if at & set(counts_against):
        return DOES_NOT_HOLD
    return None


def chance_rule_each(at_chance_lists: Iterable[Iterable[str]], arms: Iterable[str], *,
                     counts_against: Iterable[str] = ()) -> str | None:
    """:func:`chance_rule` over several comparisons of the same arms (e.g. two data regimes): inconclusive if it is
    inconclusive in any comparison (every arm at chance there), else does not hold if it does not hold in any,
    else None."""
    arms, against = tuple(arms), tuple(counts_against)
    found = [chance_rule(at, arms, counts_against=against) for at in at_chance_lists]
    if INCONCLUSIVE in found:
        return INCONCLUSIVE
    return DOES_NOT_HOLD if DOES_NOT_HOLD in found else None
