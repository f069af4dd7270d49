"""Repro unified_long_sequence (P06): the rule on hand-written figures (each outcome and its boundaries), the
score-size arithmetic, the unified template on three ops, and the quick run (2 gloo ranks, tiny sizes)."""
from __future__ import annotations

import math

import pytest

from attnlab.repro import unified_long_sequence as uls
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


def _f(iv, error=(1e-8, 1e-7), fraction=(0.03, 0.05), long_ran=True, dense_failed=True):
    return {uls.ERROR: iv(*error), uls.FRACTION: iv(*fraction), uls.LONG_RAN: long_ran, uls.DENSE_FAILED: dense_failed}


E, M, NAN = uls.EXACT_TOL, uls.MEMORY_BOUND, math.nan


@pytest.mark.parametrize("kw, verdict", [
    ({}, HOLDS),
    ({"error": (1e-8, E - 1e-12)}, HOLDS),                      # just below the tolerance
    ({"error": (1e-8, E)}, INCONCLUSIVE),                       # touching it is undecided
    ({"error": (1e-8, 2 * E)}, INCONCLUSIVE),                   # straddling it
    ({"error": (E + 1e-12, 2 * E)}, DOES_NOT_HOLD),             # not exact: nothing else matters
    ({"error": (2 * E, 3 * E), "dense_failed": False}, DOES_NOT_HOLD),
    ({"fraction": (0.01, M - 1e-9)}, HOLDS),
    ({"fraction": (0.01, M)}, INCONCLUSIVE),
    ({"fraction": (M + 1e-9, 0.5)}, DOES_NOT_HOLD),             # over the memory bound
    ({"fraction": (M + 1e-9, 0.5), "long_ran": False}, DOES_NOT_HOLD),
    ({"dense_failed": False}, INCONCLUSIVE),                    # vanilla still fit at the long size (quick mode)
    ({"long_ran": False}, INCONCLUSIVE),
    ({"error": (NAN, NAN)}, INCONCLUSIVE),                      # a NaN interval is undecided
    ({"fraction": (NAN, NAN)}, INCONCLUSIVE),
])
def test_rule(iv, kw, verdict):
    assert uls.judge(_f(iv, **kw)) == verdict


def test_dense_scores_are_the_papers_figures():
    assert uls.dense_scores_bytes(8192, 8) == 2 * 2**30      # N = 8192, H = 8, fp32: 2 GiB
    assert uls.dense_scores_bytes(32768, 8) == 32 * 2**30    # N = 32768: 32 GiB, more than this machine has


def test_unified_template_reproduces_three_mixer_families():
    errors = uls.unified_view(n=33, d=5, seed=3)
    assert set(errors) == {"softmax attention", "linear attention", "long convolution"}
    assert all(e < 1e-12 for e in errors.values()), errors


def test_quick_run_measures_an_exact_op_far_below_the_dense_scores(quick_run):
    r = quick_run("unified_long_sequence")
    m = r.measured
    assert m[uls.ERROR].high < 1e-5 and 0 < m[uls.FRACTION].mean < 0.2
    # the judged figures are the seed means of the per-seed values stored beside them
    assert len(r.per_seed[uls.FRACTION]) == uls.QUICK["seeds"] == len(r.per_seed[uls.ERROR])
    assert m[uls.FRACTION].mean == pytest.approx(sum(r.per_seed[uls.FRACTION]) / uls.QUICK["seeds"], rel=1e-12)
    assert m["vanilla peak at mem_n (MiB)"] > m["dense scores at mem_n (MiB)"]  # vanilla holds at least the scores
    assert m["vanilla at long_n"] == "not attempted (quick mode)" and m[uls.DENSE_FAILED] is False
    (rec,) = r.protocol
    assert rec["chosen"] == {"head-sharded blocked": uls.QUICK["block"]} and rec["test"]["head-sharded blocked"] == \
        r.per_seed[uls.FRACTION]
