"""Repro hyena_nd (P15): the rule on hand-written intervals (each outcome, its edges, arms at chance)."""
from __future__ import annotations

import pytest

from attnlab.repro import hyena_nd
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


@pytest.mark.parametrize("small, full, full_chance, small_chance, verdict", [
    ((1.0, 9.0), (-0.4, 3.0), [], [], HOLDS), ((0.51, 9.0), (-0.49, 3.0), [], [], HOLDS),   # edges just inside
    ((0.5, 9.0), (0.0, 3.0), [], [], INCONCLUSIVE), ((1.0, 9.0), (-0.5, 3.0), [], [], INCONCLUSIVE),
    ((-3.0, 0.49), (0.0, 3.0), [], [], DOES_NOT_HOLD),                     # no small-data gain
    ((1.0, 9.0), (-3.0, -0.51), [], [], DOES_NOT_HOLD),                    # costs accuracy with full data
    ((0.0, 9.0), (0.0, 3.0), [], [], INCONCLUSIVE),
    ((1.0, 9.0), (0.0, 3.0), ["hybrid", "ViT"], [], INCONCLUSIVE),
    ((1.0, 9.0), (0.0, 3.0), [], ["hybrid"], DOES_NOT_HOLD), ((1.0, 9.0), (0.0, 3.0), ["ViT"], ["hyena"], HOLDS),
])
def test_rule(iv, small, full, full_chance, small_chance, verdict):
    f = {hyena_nd.GAP_SMALL: iv(*small), hyena_nd.GAP_FULL: iv(*full), hyena_nd.CHANCE_FULL: full_chance,
         hyena_nd.CHANCE_SMALL: small_chance}
    assert hyena_nd.judge(f) == verdict


def test_quick_run_reports_the_attention_free_arm(quick_run, seed_gaps):
    r = quick_run("hyena_nd")
    assert {hyena_nd.HYENA_FULL, hyena_nd.HYENA_SMALL} <= set(r.measured)
    assert r.measured[hyena_nd.GAP_FULL].values == pytest.approx(seed_gaps(r, "hybrid", "ViT", prefix="full/shapes/"))
