"""Repro icl_regression (P24): the rule on hand-written figures (each check, its edges, the count); the quick run."""
from __future__ import annotations

import pytest

import attnlab.repro.icl_regression as icl
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

PASSING = {icl.KQ_OFF: 0.01, icl.KQ_LAB: 0.01, icl.KQ_VAR: 0.01, icl.OV_COVARIATE: 0.01, icl.OV_SUM: 0.01,
           icl.R2: 0.99, icl.MSE_H4: 0.5, icl.MSE_H1: 1.0, icl.RATIO_SOFTMAX: 0.5, icl.RATIO_LINEAR: 10.0}
#: one change that fails each check (A-E)
FAIL = {"A": {icl.KQ_OFF: 0.2}, "B": {icl.OV_SUM: 0.2}, "C": {icl.R2: 0.5}, "D": {icl.MSE_H4: 2.0},
        "E": {icl.RATIO_LINEAR: 1.0}}


def test_every_check_reads_its_figures():
    for letter, change in FAIL.items():
        failed = [k for k, ok in icl.checks(PASSING | change).items() if not ok]
        assert [k[0] for k in failed] == [letter]


@pytest.mark.parametrize("failing, verdict", [
    ("", HOLDS), ("A", INCONCLUSIVE), ("E", INCONCLUSIVE), ("AB", INCONCLUSIVE), ("ABC", DOES_NOT_HOLD),
    ("CDE", DOES_NOT_HOLD), ("ABCDE", DOES_NOT_HOLD),
])
def test_rule_counts_the_checks(failing, verdict):
    figures = dict(PASSING)
    for letter in failing:
        figures |= FAIL[letter]
    assert icl.judge(figures) == verdict


@pytest.mark.parametrize("change, passes", [
    ({icl.KQ_OFF: icl.KQ_OFFDIAG}, False), ({icl.KQ_LAB: icl.KQ_LABEL}, False), ({icl.KQ_VAR: icl.KQ_CV}, False),
    ({icl.OV_COVARIATE: icl.OV_COV}, False), ({icl.R2: icl.R2_MIN}, False), ({icl.MSE_H4: 1.0}, False),
    ({icl.RATIO_SOFTMAX: icl.LEN_FLAT}, True), ({icl.RATIO_LINEAR: icl.LEN_LINEAR_RISE}, True),
])
def test_check_edges(change, passes):
    assert (icl.judge(PASSING | change) == HOLDS) == passes


@pytest.mark.slow
def test_quick_mode_measures_everything(quick_run):
    r = quick_run("icl_regression")
    m = r.measured
    n = len(icl.QUICK["lengths"])
    for arm in ("softmax H=4", "softmax H=1", "linear H=4", "OLS", "debiased GD (best scale)"):
        assert len(m[f"test MSE, {arm}"]) == n
    assert m[icl.MSE_H4] == m["test MSE, softmax H=4"][icl.QUICK["lengths"].index(icl.TRAIN_LEN)]
    # with a noise of 0.01 least squares is nearly exact; the trained models are not
    assert max(m["test MSE, OLS"]) < 1e-3 < min(m["test MSE, softmax H=4"])
    # the fixed-scale linear attention extrapolates badly: its output grows with the length
    assert m[icl.RATIO_LINEAR] > 2 * m["MSE ratio L=160/L=40, linear H=4 (1/L actual)"]
    assert {k for k in m if k.startswith("check ")} == {f"check {k}" for k in icl.checks(r.figures)}
