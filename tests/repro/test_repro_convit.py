"""Repro convit (P11): the rule on hand-written figures (each outcome, its edges, the guard)."""
from __future__ import annotations

import pytest

from attnlab.repro import convit
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from attnlab.repro.harness.vision import SHAPES_LEARNED


@pytest.mark.parametrize("small, full, learned, verdict", [
    (5.0, 1.0, True, HOLDS), (2.0, 1.0, True, HOLDS),           # +2 points is enough ...
    (1.99, 1.0, True, INCONCLUSIVE),
    (3.0, 3.0, True, INCONCLUSIVE), (3.0, 2.99, True, HOLDS),   # ... if the gain grows as data shrinks
    (0.0, -5.0, True, DOES_NOT_HOLD), (0.01, -5.0, True, INCONCLUSIVE), (-2.0, 4.0, True, DOES_NOT_HOLD),
    (9.0, 0.0, False, INCONCLUSIVE), (-9.0, 0.0, False, INCONCLUSIVE),
])
def test_rule(small, full, learned, verdict):
    assert convit.judge({convit.GAP_SMALL: small, convit.GAP_FULL: full, SHAPES_LEARNED: learned}) == verdict


def test_quick_run_has_both_data_regimes(quick_run):
    m = quick_run("convit").measured
    gap = m["small/shapes/convit accuracy"] - m["small/shapes/deit accuracy"]
    assert m[convit.GAP_SMALL] == pytest.approx(100 * gap)
    assert "full/shapes/convit images_per_s" in m and "small/shapes/convit images_per_s" not in m
