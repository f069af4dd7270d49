"""Repro att_svm (P22): the rule on hand-written figures (each outcome, the edges, the skipped nuclear check);
the quick run."""
from __future__ import annotations

import math

import pytest

from attnlab.repro import att_svm as sv
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


def _f(w=0.995, kq=0.97, ran=True):
    return {sv.CORR_W: w, sv.CORR_KQ: kq, sv.NUC_RUN: ran}


@pytest.mark.parametrize("figures, verdict", [
    (_f(), HOLDS),
    (_f(w=sv.W_MIN), INCONCLUSIVE), (_f(kq=sv.KQ_MIN), INCONCLUSIVE),           # strict thresholds
    (_f(w=sv.W_MIN + 1e-9, kq=sv.KQ_MIN + 1e-9), HOLDS),
    (_f(w=0.9, kq=0.9), DOES_NOT_HOLD),
    (_f(kq=math.nan, ran=False), INCONCLUSIVE),                                  # skipped, never passed
    (_f(w=0.9, kq=math.nan, ran=False), DOES_NOT_HOLD),
    (_f(kq=math.nan), INCONCLUSIVE),
])
def test_rule(figures, verdict):
    assert sv.judge(figures) == verdict


def test_quick_run(quick_run):
    result = quick_run("att_svm")
    m = result.measured
    assert -1 <= m[sv.CORR_W] <= 1 and m["corr(W, Frobenius SVM), min over seeds"] <= m[sv.CORR_W]
    assert len(result.per_seed[sv.CORR_W]) == sv.QUICK["seeds"]
    if m[sv.NUC_RUN]:
        assert -1 <= m[sv.CORR_KQ] <= 1
    else:
        assert math.isnan(m[sv.CORR_KQ]) and "skipped" in result.summary
