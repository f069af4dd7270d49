"""Repro hyena_nd (P15): the rule on hand-written figures (each outcome, its edges, the guard)."""
from __future__ import annotations

import pytest

from attnlab.repro import hyena_nd
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from attnlab.repro.harness.vision import SHAPES_LEARNED


@pytest.mark.parametrize("small, full, learned, verdict", [
    (5.0, 0.0, True, HOLDS), (0.5, -0.5, True, HOLDS),          # both edges inside
    (0.49, 0.0, True, INCONCLUSIVE), (0.5, -0.51, True, INCONCLUSIVE),
    (-0.5, 3.0, True, DOES_NOT_HOLD), (-0.49, 3.0, True, INCONCLUSIVE),
    (5.0, 0.0, False, INCONCLUSIVE),
])
def test_rule(small, full, learned, verdict):
    assert hyena_nd.judge({hyena_nd.GAP_SMALL: small, hyena_nd.GAP_FULL: full, SHAPES_LEARNED: learned}) == verdict


def test_quick_run_reports_the_attention_free_arm(quick_run):
    m = quick_run("hyena_nd").measured
    assert {"shapes: hyena - ViT, full (points)", "shapes: hyena - ViT, small (points)"} <= set(m)
    gap = m["full/shapes/hybrid accuracy"] - m["full/shapes/ViT accuracy"]
    assert m[hyena_nd.GAP_FULL] == pytest.approx(100 * gap)
