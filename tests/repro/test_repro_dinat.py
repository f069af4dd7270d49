"""Repro dinat (P26): the rule on hand-written figures (each outcome, every edge); the quick run's figures."""
from __future__ import annotations

import pytest

from attnlab.repro import dinat
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


@pytest.mark.parametrize("gain, noise, cost, verdict", [
    (20.0, 3.0, 1.02, HOLDS), (5.0, 1.0, 1.15, HOLDS),            # both edges inside
    (4.99, 1.0, 1.0, INCONCLUSIVE),                               # below the 5-point bar
    (6.0, 6.0, 1.0, INCONCLUSIVE), (6.0, 5.99, 1.0, HOLDS),       # must clear seed noise
    (20.0, 3.0, 1.16, INCONCLUSIVE), (20.0, 3.0, 1.5, INCONCLUSIVE),  # better, not at the same cost
    (20.0, 3.0, 1.51, DOES_NOT_HOLD),                             # far costlier
    (0.0, 0.0, 1.0, DOES_NOT_HOLD), (0.01, 0.0, 1.0, INCONCLUSIVE), (-1.0, 1.0, 1.0, DOES_NOT_HOLD),
])
def test_rule(gain, noise, cost, verdict):
    assert dinat.judge({dinat.GAIN: gain, dinat.NOISE: noise, dinat.COST: cost}) == verdict


def test_quick_run(quick_run):
    r = quick_run("dinat")
    m = r.measured
    assert 0.0 <= m["NA accuracy"] <= 1.0 and m["NA step seconds"] > 0 and m["DiNA+NA step seconds"] > 0
    assert m[dinat.GAIN] == pytest.approx(100 * (m["DiNA+NA accuracy"] - m["NA accuracy"]))
    assert r.per_seed == {"far_cue/NA accuracy": [m["NA accuracy"]],
                          "far_cue/DiNA+NA accuracy": [m["DiNA+NA accuracy"]]}
