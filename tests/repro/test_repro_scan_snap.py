"""Repro scan_snap (P05): the rule on hand-written figures (each outcome, the edges); the quick run."""
from __future__ import annotations

import math

import pytest

from attnlab.repro import scan_snap as ss
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


OK_D, OK_O, OK_T = (0.92, 0.97), (0.85, 0.95), (0.9, 1.0)
NAN = (math.nan, math.nan)


@pytest.mark.parametrize("distinct, order, trend, verdict", [
    (OK_D, OK_O, OK_T, HOLDS),
    ((ss.DISTINCT_MIN + 1e-9, 1), (ss.ORDER_MIN + 1e-9, 1), (ss.TREND_MIN + 1e-9, 1), HOLDS),   # just clear
    ((ss.DISTINCT_MIN, 0.97), OK_O, OK_T, INCONCLUSIVE),          # touching a margin is undecided
    (OK_D, (ss.ORDER_MIN, 0.95), OK_T, INCONCLUSIVE),
    (OK_D, OK_O, (ss.TREND_MIN, 1.0), INCONCLUSIVE),
    (OK_D, OK_O, (0.5, 1.0), INCONCLUSIVE),                       # the trend interval contains 0.8
    ((0.4, 0.6), OK_O, (0.2, 0.5), DOES_NOT_HOLD),                 # a scan part below, the snap below
    (OK_D, (-1.0, -0.5), (-1.0, ss.TREND_MIN - 1e-9), DOES_NOT_HOLD),
    ((0.4, 0.6), OK_O, OK_T, INCONCLUSIVE),                       # one part each way
    (OK_D, NAN, OK_T, INCONCLUSIVE), (OK_D, NAN, NAN, INCONCLUSIVE),
])
def test_rule(iv, distinct, order, trend, verdict):
    assert ss.judge({ss.DISTINCT: iv(*distinct), ss.ORDER: iv(*order), ss.TREND: iv(*trend)}) == verdict


def test_quick_run(quick_run):
    result = quick_run("scan_snap")
    m = result.measured
    assert m["attention on distinct tokens at initialisation"] == pytest.approx(5.5 / 15.5)
    assert m[ss.DISTINCT].mean == pytest.approx(m["attention on distinct tokens at ratio 1 (seed mean)"])
    assert m[ss.DISTINCT].n == m[ss.TREND].n == ss.QUICK["seeds"]
    assert len(result.per_seed["final entropy at ratio 10 (seed mean, nats)"]) == ss.QUICK["seeds"]
    assert 0 <= m["SequenceModel (1 softmax layer, AdamW): distinct_mass"] <= 1
    assert m["initial entropy (uniform logits, nats)"] > m["final entropy at ratio 1 (seed mean, nats)"]
