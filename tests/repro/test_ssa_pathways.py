"""Repro ssa_pathways (P28): quick mode end to end (real char_lm, SequenceModel, training), rule re-derived."""
from __future__ import annotations

import math

from attnlab.repro import REPROS, run_repro
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS
from attnlab.repro.ssa_pathways import TOLERANCE, attn_macs


def test_attention_macs_count():
    ssa, dense = attn_macs(512, 1)
    assert dense == 512 * 513
    assert ssa == sum(2 * 32 * (32 + math.ceil(32 * i / 4)) for i in range(16))
    assert 2.5 < dense / ssa < 3.0


def test_quick_run(tmp_path):
    assert "ssa_pathways" in REPROS
    res = run_repro("ssa_pathways", quick=True, out_dir=tmp_path, progress=False)
    m = res.measured
    losses = {k: v for k, v in m.items() if k.startswith("val loss")}
    assert len(losses) == 5 and all(0.0 < v < 10.0 for v in losses.values())
    best = min(m["val loss SSA, dense inference (after S steps)"], m["val loss SSA + dense fine-tune, dense inference"])
    ok = m["train step speed SSA / dense"] > 1.0 and best <= m["val loss dense (after S + F steps)"] * (1 + TOLERANCE)
    assert res.verdict == (HOLDS if ok else DOES_NOT_HOLD)
    assert res.plots and (tmp_path / "report.md").exists()
