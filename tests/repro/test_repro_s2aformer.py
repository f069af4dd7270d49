"""Repro s2aformer (P09): its MAC count and the quick run (its rule: tests/repro/harness/test_harness_dense.py)."""
from __future__ import annotations

from attnlab.repro import s2aformer
from attnlab.repro.harness.dense import MACS_RATIO


def test_attention_macs_of_the_reduced_keys():
    strip, dense = s2aformer.attn_macs(256, 48, (16, 16))
    assert strip == 256 * 64 * (6 + 48) + 256 * 48 and dense == 2 * 256 * 256 * 48  # 64 keys, d' = 48 / 8


def test_quick_run_is_cheaper_in_macs(quick_run):
    assert quick_run("s2aformer").measured[MACS_RATIO] < 0.3
