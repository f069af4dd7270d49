"""Repro isomer (P30): the rule on hand-written figures (each outcome, every edge); the quick run's figures."""
from __future__ import annotations

import pytest

from attnlab.repro import isomer
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


def _figures(js_low=0.05, js_high=0.2, j_van=0.8, j_iso=0.79, flops=8.0):
    return {isomer.JS_LOW: js_low, isomer.JS_HIGH: js_high, isomer.J_VANILLA: j_van, isomer.J_ISOMER: j_iso,
            isomer.FLOP_RATIO: flops}


@pytest.mark.parametrize("kw, verdict", [
    ({}, HOLDS),
    ({"js_high": 0.1}, HOLDS), ({"js_high": 0.0999}, INCONCLUSIVE),            # A: stage 4 >= 2x stage 1
    ({"j_iso": 0.78}, HOLDS), ({"j_iso": 0.7799}, INCONCLUSIVE),              # B: at most 2 points below
    ({"flops": 5.0}, HOLDS), ({"flops": 4.99}, INCONCLUSIVE),                 # B: >= 5x fewer FLOPs
    ({"j_iso": 0.95}, HOLDS),                                                 # better than vanilla is fine
    ({"js_high": 0.05, "j_iso": 0.5}, DOES_NOT_HOLD),                         # neither part
    ({"js_high": 0.05, "flops": 2.0}, DOES_NOT_HOLD),
    ({"j_van": 0.4999, "j_iso": 0.49}, INCONCLUSIVE),                         # guard: vanilla did not learn
    ({"j_van": 0.5, "j_iso": 0.49}, HOLDS),
    ({"j_van": 0.3, "js_high": 0.05, "j_iso": 0.0}, INCONCLUSIVE),            # the guard wins over "does not hold"
])
def test_rule(kw, verdict):
    assert isomer.judge(_figures(**kw)) == verdict


def test_quick_run(quick_run):
    r = quick_run("isomer")
    m = r.measured
    assert m[isomer.FLOP_RATIO] == pytest.approx(m["fusion FLOPs per frame vanilla"] / m["fusion FLOPs per frame Isomer"])
    assert m[isomer.FLOP_RATIO] > 5  # counted, attention included: by construction at 32 px
    assert len(m["query dependence per stage, trained vanilla (bits)"]) == 4
    assert all(0 <= v <= 1 for v in m["query dependence per stage, vanilla at init (bits)"])
    assert 0 <= m[isomer.J_VANILLA] <= 1 and 0 <= m[isomer.J_ISOMER] <= 1
    assert r.per_seed[isomer.J_VANILLA] == [m[isomer.J_VANILLA]] and r.per_seed[isomer.JS_LOW] == [m[isomer.JS_LOW]]
    assert isomer.FULL.seeds == (0, 1, 2) and m["seeds"] == 1
