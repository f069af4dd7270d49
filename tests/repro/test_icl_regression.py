"""Reproduction icl_regression (P24): the verdict rule and the real quick mode."""
from __future__ import annotations

import pytest
import torch

import attnlab.repro.icl_regression as icl
from attnlab.repro import REPROS, run_repro
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


@pytest.mark.parametrize("passed, verdict", [(5, HOLDS), (4, INCONCLUSIVE), (3, INCONCLUSIVE), (2, DOES_NOT_HOLD),
                                             (0, DOES_NOT_HOLD)])
def test_verdict_rule(passed, verdict):
    checks = {k: i < passed for i, k in enumerate("ABCDE")}
    assert icl.decide(checks) == verdict


def test_quick_mode_measures_everything_and_follows_its_rule(tmp_path):
    assert REPROS["icl_regression"] == "attnlab.repro.icl_regression"
    threads = torch.get_num_threads()
    r = run_repro("icl_regression", quick=True, out_dir=tmp_path, progress=False)
    m = r.measured
    checks = {k: v for k, v in m.items() if k.startswith("check ")}
    assert len(checks) == 5 and r.verdict == icl.decide(checks)
    n = len(icl.QUICK["lengths"])
    for arm in ("softmax H=4", "softmax H=1", "linear H=4", "OLS", "debiased GD (best scale)"):
        assert len(m[f"test MSE, {arm}"]) == n
    # with a noise of 0.01 least squares is nearly exact; the trained models are not
    assert max(m["test MSE, OLS"]) < 1e-3 < min(m["test MSE, softmax H=4"])
    # the fixed-scale linear attention extrapolates badly: its output grows with the length
    assert m["MSE ratio L=160/L=40, linear H=4"] > 2 * m["MSE ratio L=160/L=40, linear H=4 (1/L actual)"]
    assert (tmp_path / "icl_regression.png").stat().st_size > 10_000 and (tmp_path / "report.md").exists()
    assert r.seconds < 60 and torch.get_num_threads() == threads
