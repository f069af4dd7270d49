"""Repro crossvit (P13): the margin the rule judges, in the quick run
(the rule itself: tests/repro/harness/test_harness_vision.py)."""
from __future__ import annotations

import pytest

from attnlab.repro import crossvit


def test_quick_run_judges_crossvit_against_the_better_vit(quick_run):
    r = quick_run("crossvit")
    m, per = r.measured, r.per_seed
    best = max(("ViT-p4", "ViT-p8"), key=lambda a: m[f"shapes/{a} accuracy"].mean)
    assert m[crossvit.MARGIN].values == pytest.approx(
        [100 * (x - y) for x, y in zip(per["shapes/crossvit accuracy"], per[f"shapes/{best} accuracy"])])
    for vit in ("ViT-p4", "ViT-p8"):  # matched to CrossViT's parameters
        assert abs(m[f"shapes/{vit} params"] / m["shapes/crossvit params"] - 1) < 0.15
