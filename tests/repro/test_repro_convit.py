"""Repro convit (P11): the rule on hand-written intervals (each outcome, its edges, arms at chance per regime)."""
from __future__ import annotations

import pytest

from attnlab.repro import convit
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


@pytest.mark.parametrize("small, growth, full_chance, small_chance, verdict", [
    ((3.0, 8.0), (1.0, 5.0), [], [], HOLDS), ((2.01, 8.0), (0.01, 5.0), [], [], HOLDS),   # just clear both margins
    ((2.0, 8.0), (1.0, 5.0), [], [], INCONCLUSIVE), ((3.0, 8.0), (0.0, 5.0), [], [], INCONCLUSIVE),
    ((-4.0, 1.99), (1.0, 5.0), [], [], DOES_NOT_HOLD),           # the small-data gain is below 2 points
    ((3.0, 8.0), (-5.0, -0.01), [], [], DOES_NOT_HOLD),          # the gain does not grow as data shrinks
    ((0.0, 4.0), (1.0, 5.0), [], [], INCONCLUSIVE),
    ((3.0, 8.0), (1.0, 5.0), ["convit", "deit"], [], INCONCLUSIVE),   # full data: nothing learned anything
    ((3.0, 8.0), (1.0, 5.0), [], ["convit", "deit", "ViT"], INCONCLUSIVE),
    ((3.0, 8.0), (1.0, 5.0), [], ["convit"], DOES_NOT_HOLD),     # ConViT learned nothing DeiT learned
    ((3.0, 8.0), (1.0, 5.0), ["deit"], ["ViT"], HOLDS),          # baselines at chance: the intervals decide
])
def test_rule(iv, small, growth, full_chance, small_chance, verdict):
    f = {convit.GAP_SMALL: iv(*small), convit.GROWTH: iv(*growth), convit.GAP_FULL: iv(0.0, 1.0),
         convit.CHANCE_FULL: full_chance, convit.CHANCE_SMALL: small_chance}
    assert convit.judge(f) == verdict


def test_quick_run_has_both_data_regimes(quick_run):
    r = quick_run("convit")
    m = r.measured
    gap = [100 * (x - y) for x, y in zip(r.per_seed["small/shapes[10 batches]/convit accuracy"],
                                         r.per_seed["small/shapes[10 batches]/deit accuracy"])]
    assert m[convit.GAP_SMALL].values == pytest.approx(gap)
    assert m[convit.GROWTH].values == pytest.approx([s - f for s, f in zip(gap, m[convit.GAP_FULL].values)])
    assert "full/shapes/convit images_per_s" in m and "small/shapes[10 batches]/convit images_per_s" not in m
    assert [rec["name"] for rec in r.protocol] == ["shapes", "shapes[10 batches]"]
