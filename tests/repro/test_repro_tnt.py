"""Repro tnt (P32): the margin the rule judges, in the quick run
(the rule itself: tests/repro/harness/test_harness_vision.py)."""
from __future__ import annotations

import pytest

from attnlab.repro import tnt


def test_quick_run_judges_tnt_against_the_same_patch_vit_only(quick_run, seed_gaps):
    r = quick_run("tnt")
    assert r.measured[tnt.MARGIN].values == pytest.approx(seed_gaps(r, "tnt", "ViT-p8"))
    assert "shapes/ViT-p4 accuracy" in r.measured  # context, not judged
