"""Repro shvit (P29): the rule on hand-written figures (each outcome, the 1.2x and 1-point edges, the guard)."""
from __future__ import annotations

import pytest

from attnlab.repro import shvit
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from attnlab.repro.harness.vision import SHAPES_LEARNED


def _f(sh=0.5, speed=1.5, learned=True):
    return {shvit.SHVIT: sh, shvit.VIT: 0.5, shvit.SPEEDUP: speed, SHAPES_LEARNED: learned}


@pytest.mark.parametrize("figures, verdict", [
    (_f(), HOLDS), (_f(sh=0.5 - shvit.TOLERANCE, speed=shvit.MIN_SPEEDUP), HOLDS),
    (_f(speed=1.199), DOES_NOT_HOLD), (_f(sh=0.5 - shvit.TOLERANCE - 1e-9), DOES_NOT_HOLD),
    (_f(learned=False), INCONCLUSIVE),
])
def test_rule(figures, verdict):
    assert shvit.judge(figures) == verdict


def test_quick_run_records_both_speed_ratios(quick_run):
    m = quick_run("shvit").measured
    assert m[shvit.SPEEDUP] == pytest.approx(m["shapes/shvit images_per_s"] / m["shapes/ViT images_per_s"])
    assert m["shapes: shvit speed / full-channel speed"] > 0
