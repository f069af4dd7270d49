"""Means over seeds with 95 % intervals: what every figure a verdict reads is (issue 18's protocol).

A reproduction trains each arm on several seeds (each seed: its own initialisation and its own
generated data) and reports a figure as the mean over seeds with a two-sided 95 % **Student t**
interval, ``mean +- t_{0.975, n-1} * s / sqrt(n)`` (``s`` the sample standard deviation). With
three seeds ``t = 4.30``; with one seed there is no interval (``(-inf, +inf)``), so a rule that
compares intervals with a margin finds nothing decided. Differences between two arms are taken
seed by seed (:func:`paired`): both arms of a seed see the same data, so the pairing removes the
data's share of the noise.

An :class:`Interval` is what the rules read; ``result.json`` stores it as a dict marked
``"interval": "t"``, and :func:`revive` turns such dicts back into intervals.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from attnlab.utils.checks import fail

__all__ = ["Interval", "t_interval", "paired", "revive", "LEVEL", "METHOD"]

#: the coverage of every interval of the reproductions
LEVEL = 0.95
#: how the intervals are computed, as stated in reports
METHOD = "95 % Student t interval over seeds (n - 1 degrees of freedom)"


@dataclass(frozen=True)
class Interval:
    """A mean over seeds and its two-sided interval ``[low, high]``; ``values`` holds one value per seed."""

    mean: float
    low: float
    high: float
    values: tuple[float, ...]
    level: float = LEVEL

    @property
    def n(self) -> int:
        """Number of seeds."""
        return len(self.values)

    def scaled(self, k: float) -> Interval:
        """The same interval in other units (e.g. ``k = 100``: fractions to points); ``k`` > 0."""
        if not k > 0:
            fail("k", "a positive scale", repr(k))
        return Interval(self.mean * k, self.low * k, self.high * k, tuple(v * k for v in self.values), self.level)

    def to_dict(self) -> dict:
        """JSON-able form (``"interval": "t"`` marks it for :func:`revive`)."""
        return {"interval": "t", "mean": self.mean, "low": self.low, "high": self.high, "level": self.level,
                "values": list(self.values)}

    def text(self, digits: int = 4) -> str:
        """``mean [low, high]`` to ``digits`` significant digits (with the number of seeds)."""
        f = lambda v: f"{v:.{digits}g}"  # noqa: E731
        return f"{f(self.mean)} [{f(self.low)}, {f(self.high)}] (n={self.n})"

    def __str__(self) -> str:
        return self.text()


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean of ``values`` (one per seed) with its two-sided Student t interval at ``level``.

    One value: the interval is ``(-inf, +inf)``. Any NaN value (a diverged run): mean and bounds are NaN,
    which every rule reads as undecided. Equal values: a zero-width interval at the mean.
    """
    vals = tuple(float(v) for v in values)
    if not vals:
        fail("values", "at least one value (one per seed)", "none")
    if not 0.0 < level < 1.0:
        fail("level", "a coverage in (0, 1)", repr(level))
    if any(math.isnan(v) for v in vals):
        return Interval(math.nan, math.nan, math.nan, vals, level)
    mean = statistics.fmean(vals)
    if len(vals) == 1:
        return Interval(mean, -math.inf, math.inf, vals, level)
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, len(vals) - 1)) * statistics.stdev(vals) / math.sqrt(len(vals))
    return Interval(mean, mean - half, mean + half, vals, level)


def paired(a: Sequence[float], b: Sequence[float], *, scale: float = 1.0, level: float = LEVEL) -> Interval:
    """The interval of ``scale * (a - b)`` taken seed by seed (``a[i]`` and ``b[i]`` from the same seed)."""
    if len(a) != len(b):
        fail("b", f"one value per seed of a ({len(a)})", f"{len(b)} values")
    return t_interval([scale * (x - y) for x, y in zip(a, b)], level)


def revive(value):
    """``value`` with every dict written by :meth:`Interval.to_dict` turned back into an :class:`Interval`
    (recursively through dicts and lists); anything else unchanged."""
    if isinstance(value, dict):
        if value.get("interval") == "t" and {"mean", "low", "high", "values"} <= set(value):
            return Interval(float(value["mean"]), float(value["low"]), float(value["high"]),
                            tuple(float(v) for v in value["values"]), float(value.get("level", LEVEL)))
        return {k: revive(v) for k, v in value.items()}
    if isinstance(value, list):
        return [revive(v) for v in value]
    return value
