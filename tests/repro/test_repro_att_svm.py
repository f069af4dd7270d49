"""Repro att_svm (P22): the rule on hand-written figures (each outcome, the edges, the skipped nuclear check);
the quick run."""
from __future__ import annotations

import math

import pytest

from attnlab.repro import att_svm as sv
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


NAN = (math.nan, math.nan)


@pytest.mark.parametrize("w, kq, ran, verdict", [
    ((0.992, 0.999), (0.96, 0.99), True, HOLDS),
    ((sv.W_MIN, 0.999), (0.96, 0.99), True, INCONCLUSIVE),                      # touching the margin: undecided
    ((0.992, 0.999), (sv.KQ_MIN, 0.99), True, INCONCLUSIVE),
    ((sv.W_MIN + 1e-9, 1.0), (sv.KQ_MIN + 1e-9, 1.0), True, HOLDS),
    ((0.95, 0.999), (0.96, 0.99), True, INCONCLUSIVE),                          # W interval contains 0.99
    ((0.9, sv.W_MIN - 1e-9), (0.8, sv.KQ_MIN - 1e-9), True, DOES_NOT_HOLD),
    ((0.9, 0.95), (0.96, 0.99), True, INCONCLUSIVE),                            # one part each way
    ((0.992, 0.999), NAN, False, INCONCLUSIVE),                                  # skipped, never passed
    ((0.9, 0.95), NAN, False, DOES_NOT_HOLD),
    ((0.95, 0.999), NAN, False, INCONCLUSIVE),
    ((0.992, 0.999), NAN, True, INCONCLUSIVE),                                   # a NaN interval is undecided
])
def test_rule(iv, w, kq, ran, verdict):
    assert sv.judge({sv.CORR_W: iv(*w), sv.CORR_KQ: iv(*kq), sv.NUC_RUN: ran}) == verdict


def test_quick_run(quick_run):
    result = quick_run("att_svm")
    m = result.measured
    assert -1 <= m[sv.CORR_W].mean <= 1 and m["corr(W, Frobenius SVM), min over seeds"] <= m[sv.CORR_W].mean
    assert m[sv.CORR_W].values == pytest.approx(result.per_seed[sv.CORR_W])
    assert len(result.per_seed[sv.CORR_W]) == sv.QUICK["seeds"]
    if m[sv.NUC_RUN]:
        assert -1 <= m[sv.CORR_KQ].mean <= 1
    else:
        assert math.isnan(m[sv.CORR_KQ].mean) and "skipped" in result.summary
