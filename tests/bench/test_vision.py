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
    assert "| dinat_tiny | attnlab | fp32 | 32 |" in to_markdown(rows)


def test_precisions_are_timed_side_by_side_on_one_model():
    rows = run(["activator_tiny"], batch=2, repeats=1, precisions=("fp32", "bf16"))
    assert [(r["impl"], r["precision"]) for r in rows] == [("attnlab", "fp32"), ("attnlab", "bf16")]
    fp32, bf16 = rows
    assert fp32["ratio_vs_fp32"] == 1.0
    assert bf16["ratio_vs_fp32"] == pytest.approx(bf16["images_per_s"] / fp32["images_per_s"])
    assert "| activator_tiny | attnlab | bf16 | 32 |" in to_markdown(rows)
