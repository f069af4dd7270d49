"""Repro spectformer (P04): the margin the rule judges, in the quick run
(the rule itself: tests/repro/harness/test_harness_vision.py)."""
from __future__ import annotations

import pytest

from attnlab.repro import spectformer


def test_quick_run_judges_ssaa_against_the_better_end(quick_run):
    r = quick_run("spectformer")
    m, per = r.measured, r.per_seed
    best = max(("AAAA", "SSSS"), key=lambda a: m[f"shapes/{a} accuracy"].mean)
    assert m[spectformer.MARGIN].values == pytest.approx(
        [100 * (x - y) for x, y in zip(per["shapes/SSAA accuracy"], per[f"shapes/{best} accuracy"])])
    assert {"shapes/AASS accuracy", "shapes/ViT accuracy"} <= set(m)
    assert set(r.protocol[0]["chosen"]) == {"SSAA", "AAAA", "SSSS", "AASS", "ViT"}
