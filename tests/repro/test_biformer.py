"""Repro biformer (P10): quick mode end to end (real ViT, task, training), verdict follows the stated rule."""
from __future__ import annotations

from attnlab.repro import REPROS, run_repro
from attnlab.repro._mixer_vs_dense import judge
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


def check_mixer_vs_dense_outcome(slug, tmp_path, macs_below):
    assert slug in REPROS
    res = run_repro(slug, quick=True, out_dir=tmp_path, progress=False)
    m = res.measured
    accs = {k: v for k, v in m.items() if k.endswith(" accuracy")}
    assert len(accs) == 2 and all(0.0 <= v <= 1.0 for v in accs.values())
    assert all(v > 0 for k, v in m.items() if k.endswith("images_per_s"))
    assert m["attention MACs ratio efficient / dense"] < macs_below
    want = judge(m["mean accuracy gap (points)"], m["seed noise (points)"], m["slowest train speed ratio"], 1.0,
                 bool(m["tasks judged (dense ViT >= chance + 10 points)"]))
    assert res.verdict == want
    assert (tmp_path / "result.json").exists() and (tmp_path / "report.md").exists() and res.plots


def test_judge_rule():
    assert judge(-0.5, 2.0, 1.3, 1.0, True) == HOLDS
    assert judge(-0.5, 2.0, 0.9, 1.0, True) == DOES_NOT_HOLD  # not cheaper
    assert judge(-5.0, 2.0, 1.3, 1.0, True) == DOES_NOT_HOLD
    assert judge(-2.0, 2.0, 1.3, 1.0, True) == INCONCLUSIVE
    assert judge(float("nan"), float("nan"), 2.0, 1.0, False) == INCONCLUSIVE  # dense model learned no task


def test_quick_run(tmp_path):
    check_mixer_vs_dense_outcome("biformer", tmp_path, macs_below=0.5)
