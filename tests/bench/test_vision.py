"""The vision throughput benchmark compares like with like: same configuration, same parameter count."""
from __future__ import annotations

import pytest

from attnlab.bench.vision import ATTNLAB_ONLY, PAIRS, build_pair, run, to_markdown
from attnlab.models.timm_compat import timm_available


@pytest.mark.peer
@pytest.mark.parametrize("design", ["convit_tiny", "crossvit_tiny", "tnt_tiny"])
def test_timm_pair_has_the_same_parameters(design):
    ok, why = timm_available()
    if not ok:
        pytest.skip(why)
    ours, theirs, img = build_pair(design)
    assert theirs is not None and img == 32
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


def test_every_design_is_benchmarked_and_rows_are_measured():
    assert set(ATTNLAB_ONLY) <= set(PAIRS)
    rows = run(["dinat_tiny"], batch=2, repeats=1)
    assert [r["impl"] for r in rows] == ["attnlab"] and rows[0]["images_per_s"] > 0 and rows[0]["params"] > 0
    assert rows[0]["ratio_vs_timm"] is None
    assert "| dinat_tiny | attnlab | 32 |" in to_markdown(rows)
