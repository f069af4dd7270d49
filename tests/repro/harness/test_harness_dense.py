"""The efficient-mixer-vs-dense rule (biformer, s2aformer, axial), on hand-written intervals, edges included."""
from __future__ import annotations

import math

import pytest

from attnlab.repro import axial, biformer, s2aformer
from attnlab.repro.harness.dense import DENSE, GAP, SPEED, ceil_div, dense_macs, judge
from attnlab.repro.harness.intervals import Interval
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


def _iv(low, high):
    return Interval((low + high) / 2, low, high, (low, high))


def _f(gap=(-0.5, 3.0), speed=(1.1, 1.4), at_chance=()):
    return {GAP: _iv(*gap), SPEED: _iv(*speed), AT_CHANCE: list(at_chance)}


@pytest.mark.parametrize("figures, verdict", [
    (_f(), HOLDS),
    (_f(gap=(-0.99, 2.0)), HOLDS), (_f(gap=(-1.0, 2.0)), INCONCLUSIVE),          # the gap must clear -1 strictly
    (_f(gap=(-5.0, -1.01)), DOES_NOT_HOLD), (_f(gap=(-5.0, -1.0)), INCONCLUSIVE),
    (_f(speed=(1.0, 1.3)), INCONCLUSIVE), (_f(speed=(0.5, 0.99)), DOES_NOT_HOLD),  # faster must be shown
    (_f(gap=(-5.0, -2.0), speed=(1.5, 2.0)), DOES_NOT_HOLD),                     # one part failing is enough
    (_f(gap=(math.nan, math.nan)), INCONCLUSIVE),
    (_f(at_chance=[DENSE]), INCONCLUSIVE), (_f(at_chance=[DENSE, "BRA ViT"]), INCONCLUSIVE),
    (_f(at_chance=["BRA ViT"]), DOES_NOT_HOLD),                                  # efficient learned nothing dense did
])
def test_rule(figures, verdict):
    assert judge(figures, 1.0) == verdict


@pytest.mark.parametrize("module", [biformer, s2aformer, axial])
@pytest.mark.parametrize("gap, speed, at_chance, verdict", [
    ((-0.9, 1.0), (1.1, 1.3), (), HOLDS), ((-1.1, 1.0), (1.1, 1.3), (), INCONCLUSIVE),
    ((-4.0, -1.1), (1.1, 1.3), (), DOES_NOT_HOLD), ((2.0, 3.0), (0.8, 0.9), (), DOES_NOT_HOLD),
    ((2.0, 3.0), (1.1, 1.3), (DENSE,), INCONCLUSIVE),
])
def test_each_study_judges_at_a_one_point_margin(module, gap, speed, at_chance, verdict):
    assert module.FIGURES == (GAP, SPEED, AT_CHANCE) and module.FULL.tasks == ("digits",)
    assert module.judge(_f(gap, speed, at_chance)) == verdict


def test_counts():
    assert dense_macs(256, 48) == 2 * 256 * 256 * 48
    assert [ceil_div(a, 4) for a in (0, 1, 4, 5)] == [0, 1, 1, 2]
