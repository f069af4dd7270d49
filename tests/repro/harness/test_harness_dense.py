"""The efficient-mixer-vs-dense rule (biformer, s2aformer, axial), on hand-written figures, edges included."""
from __future__ import annotations

import math

import pytest

from attnlab.repro import axial, biformer, s2aformer
from attnlab.repro.harness.dense import DENSE_LEARNED, GAP, NOISE, SPEED, ceil_div, dense_macs, judge
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


def _f(gap, noise=2.0, speed=1.3, learned=True):
    return {GAP: gap, NOISE: noise, SPEED: speed, DENSE_LEARNED: learned}


@pytest.mark.parametrize("figures, verdict", [
    (_f(-0.5), HOLDS),
    (_f(-1.0), HOLDS),                        # exactly at the margin
    (_f(+5.0, speed=1.0), DOES_NOT_HOLD),     # not faster: 1.0 is not faster
    (_f(+5.0, speed=1.0001), HOLDS),
    (_f(-1.01), INCONCLUSIVE),                # below the margin, within noise
    (_f(-3.0), INCONCLUSIVE),                 # exactly margin + noise below
    (_f(-3.01), DOES_NOT_HOLD),
    (_f(math.nan, math.nan, 2.0, False), INCONCLUSIVE),   # the dense ViT learned no task
    (_f(-10.0, speed=0.5, learned=False), INCONCLUSIVE),  # ... whatever else was measured
])
def test_rule(figures, verdict):
    assert judge(figures, 1.0) == verdict


@pytest.mark.parametrize("module", [biformer, s2aformer, axial])
@pytest.mark.parametrize("gap, speed, learned, verdict", [
    (-1.0, 1.2, True, HOLDS), (-1.01, 1.2, True, INCONCLUSIVE), (-3.01, 1.2, True, DOES_NOT_HOLD),
    (2.0, 1.0, True, DOES_NOT_HOLD), (2.0, 1.2, False, INCONCLUSIVE),
])
def test_each_study_judges_at_a_one_point_margin(module, gap, speed, learned, verdict):
    assert module.FIGURES == (GAP, NOISE, SPEED, DENSE_LEARNED)
    assert module.judge(_f(gap, speed=speed, learned=learned)) == verdict


def test_counts():
    assert dense_macs(256, 48) == 2 * 256 * 256 * 48
    assert [ceil_div(a, 4) for a in (0, 1, 4, 5)] == [0, 1, 1, 2]
