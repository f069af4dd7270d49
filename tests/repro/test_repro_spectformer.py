"""Repro spectformer (P04): the margin the rule judges, in the quick run
(the rule itself: tests/repro/harness/test_harness_vision.py)."""
from __future__ import annotations

import pytest

from attnlab.repro import spectformer


def test_quick_run_judges_ssaa_against_the_better_end(quick_run, seed_gaps):
    r = quick_run("spectformer")
    best = seed_gaps.best(r, ("AAAA", "SSSS"))
    assert r.measured[spectformer.MARGIN].values == pytest.approx(seed_gaps(r, "SSAA", best))
    assert {"shapes/AASS accuracy", "shapes/ViT accuracy"} <= set(r.measured)
    assert set(r.protocol[0]["chosen"]) == {"SSAA", "AAAA", "SSSS", "AASS", "ViT"}
