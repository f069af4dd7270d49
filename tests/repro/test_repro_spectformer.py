"""Repro spectformer (P04): the margin the rule judges, in the quick run
(the rule itself: tests/repro/harness/test_harness_vision.py)."""
from __future__ import annotations

import pytest

from attnlab.repro import spectformer


def test_quick_run_judges_ssaa_against_both_ends(quick_run):
    m = quick_run("spectformer").measured
    ends = max(m["shapes/AAAA accuracy"], m["shapes/SSSS accuracy"])
    assert m[spectformer.MARGIN] == pytest.approx(100 * (m["shapes/SSAA accuracy"] - ends))
    assert {"shapes/AASS accuracy", "shapes/ViT accuracy"} <= set(m)
