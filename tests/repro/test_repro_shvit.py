"""Repro shvit (P29): the rule on hand-written intervals (each outcome, the 1.2x and -1-point edges, at chance)."""
from __future__ import annotations

import pytest

from attnlab.repro import shvit
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


@pytest.mark.parametrize("speed, gap, at_chance, verdict", [
    ((1.5, 2.5), (-0.5, 8.0), [], HOLDS), ((1.2001, 2.5), (-0.999, 8.0), [], HOLDS),   # both edges just inside
    ((1.2, 2.5), (0.0, 8.0), [], INCONCLUSIVE), ((1.5, 2.5), (-1.0, 8.0), [], INCONCLUSIVE),
    ((0.9, 1.199), (0.0, 8.0), [], DOES_NOT_HOLD), ((1.5, 2.5), (-9.0, -1.001), [], DOES_NOT_HOLD),
    ((1.5, 2.5), (-0.5, 8.0), ["shvit"], DOES_NOT_HOLD), ((1.5, 2.5), (-0.5, 8.0), ["shvit", "ViT"], INCONCLUSIVE),
    ((1.5, 2.5), (-0.5, 8.0), ["ViT", "shvit_fullch"], HOLDS),
])
def test_rule(iv, speed, gap, at_chance, verdict):
    assert shvit.judge({shvit.SPEEDUP: iv(*speed), shvit.GAP: iv(*gap), AT_CHANCE: at_chance}) == verdict


def test_quick_run_records_both_speed_ratios(quick_run):
    m = quick_run("shvit").measured
    assert m[shvit.SPEEDUP].mean > 0 and m["shapes: shvit speed / full-channel speed"].mean > 0
    assert m["shapes/shvit images_per_s"] > 0 and m["shapes/ViT images_per_s"] > 0
