"""Repro dinat (P26): the rule on hand-written intervals (each outcome, every edge); the quick run's figures."""
from __future__ import annotations

import pytest

from attnlab.repro import dinat
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


@pytest.mark.parametrize("gain, cost, at_chance, verdict", [
    ((10.0, 30.0), (0.6, 1.1), [], HOLDS), ((5.01, 30.0), (0.6, 1.149), [], HOLDS),   # both edges just inside
    ((5.0, 30.0), (0.6, 1.1), [], INCONCLUSIVE),                                     # touching 5 points
    ((10.0, 30.0), (0.9, 1.15), [], INCONCLUSIVE),                                   # touching 1.15x
    ((-2.0, 4.99), (0.6, 1.1), [], DOES_NOT_HOLD),                                   # gain below 5 points
    ((10.0, 30.0), (1.16, 1.5), [], DOES_NOT_HOLD),                                  # costlier
    ((0.0, 30.0), (0.6, 1.3), [], INCONCLUSIVE),
    ((10.0, 30.0), (0.6, 1.1), ["NA"], HOLDS),                                       # the baseline at chance
    ((10.0, 30.0), (0.6, 1.1), ["DiNA+NA"], DOES_NOT_HOLD), ((0.0, 1.0), (0.6, 1.1), ["NA", "DiNA+NA"], INCONCLUSIVE),
])
def test_rule(iv, gain, cost, at_chance, verdict):
    assert dinat.judge({dinat.GAIN: iv(*gain), dinat.COST: iv(*cost), AT_CHANCE: at_chance}) == verdict


def test_quick_run(quick_run):
    r = quick_run("dinat")
    m, per = r.measured, r.per_seed
    steps = m["step seconds per seed"]
    assert len(steps) == len(r.protocol[0]["seeds"]) and all(s["NA"] > 0 and s["DiNA+NA"] > 0 for s in steps)
    assert m[dinat.COST].values == pytest.approx([s["DiNA+NA"] / s["NA"] for s in steps])
    assert m[dinat.GAIN].values == pytest.approx(
        [100 * (x - y) for x, y in zip(per["far_cue/DiNA+NA accuracy"], per["far_cue/NA accuracy"])])
