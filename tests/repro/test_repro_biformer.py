"""Repro biformer (P10): its MAC count and the quick run (its rule: tests/repro/harness/test_harness_dense.py)."""
from __future__ import annotations

from attnlab.repro import biformer
from attnlab.repro.harness.dense import DENSE, MACS_RATIO


def test_attention_macs_count_the_routed_quarter():
    bra, dense = biformer.attn_macs(256, 48, (16, 16))
    # each query attends to one region of 64 tokens (a quarter), plus routing (4 x 4 regions) and the 5x5 LCE
    assert bra == 2 * 256 * 64 * 48 + 16 * 48 + 256 * 48 * 25 and dense == 2 * 256 * 256 * 48


def test_quick_run_is_cheaper_in_macs_and_timed_per_seed(quick_run):
    m = quick_run("biformer").measured
    assert m[MACS_RATIO] < 0.5 and m[f"digits/{DENSE} images_per_s"] > 0 and m["digits/BRA ViT images_per_s"] > 0
