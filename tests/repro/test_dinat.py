"""Repro dinat (P26): quick mode end to end (real NA / DiNA ViT patch labellers, far_cue task, training), verdict by the stated rule."""
from __future__ import annotations

from attnlab.repro import REPROS, run_repro
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from attnlab.repro.dinat import judge


def test_judge_rule():
    assert judge(20.0, 3.0, 1.02) == HOLDS
    assert judge(20.0, 3.0, 1.3) == INCONCLUSIVE  # better, but not at the same cost
    assert judge(20.0, 3.0, 1.6) == DOES_NOT_HOLD  # far costlier
    assert judge(3.0, 1.0, 1.0) == INCONCLUSIVE  # below the 5-point bar
    assert judge(6.0, 8.0, 1.0) == INCONCLUSIVE  # within seed noise
    assert judge(-1.0, 1.0, 1.0) == DOES_NOT_HOLD


def test_quick_run(tmp_path):
    assert "dinat" in REPROS
    res = run_repro("dinat", quick=True, out_dir=tmp_path, progress=False)
    m = res.measured
    assert 0.0 <= m["NA accuracy"] <= 1.0 and 0.0 <= m["DiNA+NA accuracy"] <= 1.0
    assert m["NA step seconds"] > 0 and m["DiNA+NA step seconds"] > 0
    assert res.verdict == judge(m["accuracy gain DiNA+NA - NA (points)"], m["seed noise (points)"], m["step time DiNA+NA / NA"])
    assert [r["arm"] for r in m["per-seed"]] == ["NA", "DiNA+NA"]
    assert (tmp_path / "result.json").exists() and (tmp_path / "report.md").exists() and res.plots
