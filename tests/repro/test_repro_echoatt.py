"""Repro echoatt (P14): the rule on hand-written intervals and figures (each outcome and its edges); the quick run."""
from __future__ import annotations

import math

import pytest

from attnlab.repro import echoatt as ea
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

W = ea.WITHIN
LEARNED = math.log(ea.VOCAB) - ea.LEARNED_MARGIN


def _f(iv, ratio=(0.0, 0.04), vs_no_kd=(-0.1, -0.01), vs_scratch=(-0.2, -0.05), teacher=(1.4, 1.6), inner=0.9,
       outer=0.7, time=0.9, at_chance=()):
    return {ea.KD_OVER_TEACHER: iv(*ratio), ea.KD_MINUS.format(ea.STUDENTS[1]): iv(*vs_no_kd),
            ea.KD_MINUS.format(ea.STUDENTS[2]): iv(*vs_scratch), ea.TEACHER: iv(*teacher), ea.INNER: inner,
            ea.OUTER: outer, ea.TIME_RATIO: time, AT_CHANCE: list(at_chance)}


@pytest.mark.parametrize("kw, verdict", [
    ({}, HOLDS),
    ({"ratio": (0.0, W - 1e-6)}, HOLDS),              # the interval just below 5 % above the teacher
    ({"ratio": (0.0, W)}, INCONCLUSIVE),              # touching 5 %: (B) undecided
    ({"ratio": (W + 1e-6, 0.2)}, DOES_NOT_HOLD),      # (B) does not hold
    ({"vs_no_kd": (-0.05, 0.0)}, INCONCLUSIVE),       # a tie with the no-KD student is not beating it
    ({"vs_no_kd": (0.0 + 1e-6, 0.1)}, DOES_NOT_HOLD),  # (C) fails against no KD
    ({"vs_scratch": (0.01, 0.1)}, DOES_NOT_HOLD),     # (C) fails against scratch
    ({"inner": 0.7}, INCONCLUSIVE),                   # (A) fails: inner not more similar
    ({"time": 1.0}, INCONCLUSIVE),                    # (D) fails: not faster
    ({"teacher": (LEARNED - 0.1, LEARNED)}, INCONCLUSIVE),      # guard: the teacher not clearly learned
    ({"teacher": (LEARNED - 0.1, LEARNED - 1e-6)}, HOLDS),
    ({"at_chance": [ea.KD]}, DOES_NOT_HOLD),          # the KD student learned nothing while another did
    ({"at_chance": [ea.STUDENTS[2]]}, HOLDS),         # named; the intervals decide
    ({"at_chance": list(ea.STUDENTS)}, INCONCLUSIVE),
])
def test_rule(iv, kw, verdict):
    assert ea.judge(_f(iv, **kw)) == verdict


def test_quick_run(quick_run):
    r = quick_run("echoatt")
    m = r.measured
    assert len(m["shared_group"]) == ea.QUICK["group"] and m["params"]["student"] < m["params"]["teacher"]
    sim = m["similarity"]
    assert len(sim) == ea.QUICK["depth"] and all(abs(sim[i][i] - 1) < 1e-6 for i in range(len(sim)))
    assert 0 < m["flops_removed_fraction"]["qk"] < m["flops_removed_fraction"]["map"] < 0.5
    assert m[ea.TIME_RATIO] == min(m["time_ratio_by_sharing"].values()) > 0
    kd, no_kd = r.per_seed["test loss: student + KD"], r.per_seed["test loss: student, no KD"]
    assert m[ea.KD_MINUS.format(ea.STUDENTS[1])].values == pytest.approx([a - b for a, b in zip(kd, no_kd)])
