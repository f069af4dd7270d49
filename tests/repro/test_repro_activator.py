"""Repro activator (P07): the rule on hand-written intervals (each outcome, the -3-point and 1x edges, at chance)."""
from __future__ import annotations

import pytest

from attnlab.repro import activator as act
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

OK, SPEED = (-2.0, 1.0), (1.2, 1.8)


@pytest.mark.parametrize("a, glu, speed, at_chance, verdict", [
    (OK, OK, SPEED, [], HOLDS),
    ((-2.99, 0.0), (-2.99, 0.0), (1.001, 1.1), [], HOLDS),                # every edge just inside
    ((-3.0, 0.0), OK, SPEED, [], INCONCLUSIVE), (OK, OK, (1.0, 1.5), [], INCONCLUSIVE),  # touching is not clearing
    ((-9.0, -3.01), OK, SPEED, [], DOES_NOT_HOLD), (OK, (-9.0, -3.01), SPEED, [], DOES_NOT_HOLD),
    (OK, OK, (0.5, 0.99), [], DOES_NOT_HOLD),
    ((-5.0, 1.0), OK, SPEED, [], INCONCLUSIVE),
    (OK, OK, SPEED, ["ViT", "activator", "only_glu"], INCONCLUSIVE),      # nothing learned anything
    (OK, OK, SPEED, ["only_glu"], DOES_NOT_HOLD),                         # a variant learned nothing the ViT learned
    (OK, OK, SPEED, ["ViT"], HOLDS),                                      # the baseline at chance: intervals decide
])
def test_rule(iv, a, glu, speed, at_chance, verdict):
    f = {act.ACTIVATOR: iv(*a), act.ONLY_GLU: iv(*glu), act.SPEED: iv(*speed), AT_CHANCE: at_chance}
    assert act.judge(f) == verdict


def test_quick_run_records_the_speed_ratio_per_seed(quick_run, seed_gaps):
    r = quick_run("activator")
    seeds = r.protocol[0]["seeds"]
    assert r.figures[act.SPEED].n == len(seeds) and r.figures[act.SPEED].mean > 0
    assert r.figures[act.ACTIVATOR].values == pytest.approx(seed_gaps(r, "activator", "ViT"))
