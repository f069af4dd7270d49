"""Repro unified_long_sequence (P06): the rule on hand-written figures (each outcome and its boundaries), the
score-size arithmetic, the unified template on three ops, and (slow: it starts gloo ranks) the quick run."""
from __future__ import annotations

import math

import pytest

from attnlab.repro import unified_long_sequence as uls
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


def _f(error=1e-7, fraction=0.05, long_ran=True, dense_failed=True):
    return {uls.ERROR: error, uls.FRACTION: fraction, uls.LONG_RAN: long_ran, uls.DENSE_FAILED: dense_failed}


@pytest.mark.parametrize("figures, verdict", [
    (_f(), HOLDS),
    (_f(error=uls.EXACT_TOL * (1 - 1e-6)), HOLDS),
    (_f(error=uls.EXACT_TOL), DOES_NOT_HOLD),                     # not exact: nothing else matters
    (_f(fraction=uls.MEMORY_BOUND * (1 - 1e-6)), HOLDS),
    (_f(fraction=uls.MEMORY_BOUND), DOES_NOT_HOLD),               # the memory bound is strict
    (_f(fraction=0.5, dense_failed=False), DOES_NOT_HOLD),
    (_f(dense_failed=False), INCONCLUSIVE),                       # vanilla still fit at the long size (quick mode)
    (_f(long_ran=False), INCONCLUSIVE),
    (_f(error=math.nan), DOES_NOT_HOLD),                          # a failed measurement is not a success
    (_f(fraction=math.nan), DOES_NOT_HOLD),
])
def test_rule(figures, verdict):
    assert uls.judge(figures) == verdict


def test_dense_scores_are_the_papers_figures():
    assert uls.dense_scores_bytes(8192, 8) == 2 * 2**30      # N = 8192, H = 8, fp32: 2 GiB
    assert uls.dense_scores_bytes(32768, 8) == 32 * 2**30    # N = 32768: 32 GiB, more than this machine has


def test_unified_template_reproduces_three_mixer_families():
    errors = uls.unified_view(n=33, d=5, seed=3)
    assert set(errors) == {"softmax attention", "linear attention", "long convolution"}
    assert all(e < 1e-12 for e in errors.values()), errors


@pytest.mark.slow  # the quick run starts 2 gloo ranks: 10-40 s
def test_quick_run_measures_an_exact_op_far_below_the_dense_scores(quick_run):
    m = quick_run("unified_long_sequence").measured
    assert m[uls.ERROR] < 1e-5 and 0 < m[uls.FRACTION] < 0.2
    assert m["vanilla peak at mem_n (MiB)"] > m["dense scores at mem_n (MiB)"]  # vanilla holds at least the scores
    assert m["vanilla at long_n"] == "not attempted (quick mode)" and m[uls.DENSE_FAILED] is False
