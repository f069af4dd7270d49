"""Repro scan_snap (P05): the rule on hand-written figures (each outcome, the edges); the quick run."""
from __future__ import annotations

import math

import pytest

from attnlab.repro import scan_snap as ss
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


def _f(distinct=0.95, order=0.9, trend=1.0):
    return {ss.DISTINCT: distinct, ss.ORDER: order, ss.TREND: trend}


@pytest.mark.parametrize("figures, verdict", [
    (_f(), HOLDS),
    (_f(distinct=ss.DISTINCT_MIN, order=ss.ORDER_MIN, trend=ss.TREND_MIN), HOLDS),      # every edge is inclusive
    (_f(distinct=ss.DISTINCT_MIN - 1e-9), INCONCLUSIVE), (_f(order=ss.ORDER_MIN - 1e-9), INCONCLUSIVE),
    (_f(trend=ss.TREND_MIN - 1e-9), INCONCLUSIVE),
    (_f(distinct=0.5, trend=0.4), DOES_NOT_HOLD), (_f(order=-1.0, trend=-1.0), DOES_NOT_HOLD),
    (_f(order=math.nan), INCONCLUSIVE), (_f(order=math.nan, trend=math.nan), DOES_NOT_HOLD),
])
def test_rule(figures, verdict):
    assert ss.judge(figures) == verdict


def test_quick_run(quick_run):
    result = quick_run("scan_snap")
    m = result.measured
    assert m["attention on distinct tokens at initialisation"] == pytest.approx(5.5 / 15.5)
    assert m[ss.DISTINCT] == m["attention on distinct tokens at ratio 1 (seed mean)"]
    assert len(result.per_seed["final entropy at ratio 10 (seed mean, nats)"]) == ss.QUICK["seeds"]
    assert 0 <= m["SequenceModel (1 softmax layer, AdamW): distinct_mass"] <= 1
    assert m["initial entropy (uniform logits, nats)"] > m["final entropy at ratio 1 (seed mean, nats)"]
