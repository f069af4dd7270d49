"""Repro echoatt (P14): the rule on hand-written figures (each outcome and its edges); the quick run."""
from __future__ import annotations

import pytest

from attnlab.repro import echoatt as ea
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


def _f(teacher=1.5, kd=1.55, no_kd=1.6, scratch=1.7, inner=0.9, outer=0.7, ratio=0.9):
    return {ea.LOSS.format("teacher"): teacher, ea.LOSS.format(ea.STUDENTS[0]): kd,
            ea.LOSS.format(ea.STUDENTS[1]): no_kd, ea.LOSS.format(ea.STUDENTS[2]): scratch,
            ea.INNER: inner, ea.OUTER: outer, ea.TIME_RATIO: ratio}


@pytest.mark.parametrize("figures, verdict", [
    (_f(), HOLDS),
    (_f(kd=1.575), HOLDS),                       # exactly 5 % above the teacher
    (_f(kd=1.5751, no_kd=1.6), DOES_NOT_HOLD),   # (B) fails
    (_f(no_kd=1.55), DOES_NOT_HOLD),             # (C): a tie with the no-KD student is not beating it
    (_f(scratch=1.5), DOES_NOT_HOLD),            # (C) fails against scratch
    (_f(inner=0.7), INCONCLUSIVE),               # (A) fails: inner not more similar
    (_f(ratio=1.0), INCONCLUSIVE),               # (D) fails: not faster
    (_f(teacher=3.7, kd=3.7, no_kd=3.8, scratch=3.9), INCONCLUSIVE),  # guard: the teacher learned nothing
])
def test_rule(figures, verdict):
    assert ea.judge(figures) == verdict


def test_quick_run(quick_run):
    m = quick_run("echoatt").measured
    assert len(m["shared_group"]) == ea.QUICK["group"] and m["params"]["student"] < m["params"]["teacher"]
    sim = m["similarity"]
    assert len(sim) == ea.QUICK["depth"] and all(abs(sim[i][i] - 1) < 1e-6 for i in range(len(sim)))
    assert 0 < m["flops_removed_fraction"]["qk"] < m["flops_removed_fraction"]["map"] < 0.5
    assert m[ea.TIME_RATIO] == min(m["time_ratio_by_sharing"].values()) > 0
