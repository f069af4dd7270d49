"""Repro axial (P19): quick mode end to end (real axial and dense ViTs, shapes task, training), verdict by the stated rule."""
from __future__ import annotations

from test_biformer import check_mixer_vs_dense_outcome

from attnlab.repro.axial import attn_macs


def test_attention_macs_of_the_two_passes():
    axial, dense = attn_macs(256, 48, (16, 16))
    assert axial == 2 * 256 * 32 * 48 and dense == 2 * 256 * 256 * 48  # (H + W) / N = 1/8


def test_quick_run(tmp_path):
    check_mixer_vs_dense_outcome("axial", tmp_path, macs_below=0.2)
