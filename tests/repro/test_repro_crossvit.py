"""Repro crossvit (P13): the margin the rule judges, in the quick run
(the rule itself: tests/repro/harness/test_harness_vision.py)."""
from __future__ import annotations

import pytest

from attnlab.repro import crossvit


def test_quick_run_judges_crossvit_against_the_better_vit(quick_run, seed_gaps):
    r = quick_run("crossvit")
    best = seed_gaps.best(r, ("ViT-p4", "ViT-p8"))
    assert r.measured[crossvit.MARGIN].values == pytest.approx(seed_gaps(r, "crossvit", best))
    for vit in ("ViT-p4", "ViT-p8"):  # matched to CrossViT's parameters
        assert abs(r.measured[f"shapes/{vit} params"] / r.measured["shapes/crossvit params"] - 1) < 0.15
