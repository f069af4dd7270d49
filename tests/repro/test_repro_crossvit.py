"""Repro crossvit (P13): the margin the rule judges, in the quick run
(the rule itself: tests/repro/harness/test_harness_vision.py)."""
from __future__ import annotations

import pytest

from attnlab.repro import crossvit


def test_quick_run_judges_crossvit_against_the_better_vit(quick_run):
    m = quick_run("crossvit").measured
    best = max(m["shapes/ViT-p4 accuracy"], m["shapes/ViT-p8 accuracy"])
    assert m[crossvit.MARGIN] == pytest.approx(100 * (m["shapes/crossvit accuracy"] - best))
    for vit in ("ViT-p4", "ViT-p8"):  # matched to CrossViT's parameters
        assert abs(m[f"shapes/{vit} params"] / m["shapes/crossvit params"] - 1) < 0.15
