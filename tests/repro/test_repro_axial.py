"""Repro axial (P19): its MAC count and the quick run (its rule: tests/repro/harness/test_harness_dense.py)."""
from __future__ import annotations

import pytest

from attnlab.repro import axial
from attnlab.repro.harness.dense import MACS_RATIO


def test_attention_macs_of_the_two_passes():
    ax, dense = axial.attn_macs(256, 48, (16, 16))
    assert ax == 2 * 256 * 32 * 48 and dense == 2 * 256 * 256 * 48  # (H + W) / N = 1/8


def test_quick_run_is_cheaper_in_macs(quick_run):
    assert quick_run("axial").measured[MACS_RATIO] == pytest.approx(0.125)
