"""Repro activator (P07): the rule on hand-written figures (each outcome, the 3-point and 1x edges, the guard)."""
from __future__ import annotations

import pytest

from attnlab.repro import activator as act
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from attnlab.repro.harness.vision import SHAPES_LEARNED

VIT = 0.5
EDGE = VIT - act.TOLERANCE


def _f(a=VIT, glu=VIT, speed=1.5, learned=True):
    return {act.ACTIVATOR: a, act.ONLY_GLU: glu, act.VIT: VIT, act.SPEED: speed, SHAPES_LEARNED: learned}


@pytest.mark.parametrize("figures, verdict", [
    (_f(), HOLDS), (_f(a=EDGE, glu=EDGE, speed=1.0), HOLDS),           # both edges are inside
    (_f(a=EDGE - 1e-9), DOES_NOT_HOLD), (_f(glu=EDGE - 1e-9), DOES_NOT_HOLD), (_f(speed=0.999), DOES_NOT_HOLD),
    (_f(a=0.9, glu=0.9, speed=3.0, learned=False), INCONCLUSIVE), (_f(a=0.0, learned=False), INCONCLUSIVE),
])
def test_rule(figures, verdict):
    assert act.judge(figures) == verdict


def test_quick_run_records_the_speed_ratio(quick_run):
    m = quick_run("activator").measured
    assert m[act.SPEED] == pytest.approx(m["shapes/activator images_per_s"] / m["shapes/ViT images_per_s"])
