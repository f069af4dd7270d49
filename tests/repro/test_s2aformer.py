"""Repro s2aformer (P09): quick mode end to end (real ViT, task, training), verdict follows the stated rule."""
from __future__ import annotations

from test_biformer import check_mixer_vs_dense_outcome


def test_quick_run(tmp_path):
    check_mixer_vs_dense_outcome("s2aformer", tmp_path, macs_below=0.3)
