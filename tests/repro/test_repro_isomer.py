"""Repro isomer (P30): the rule on hand-written intervals (each outcome, every edge); the quick run's figures."""
from __future__ import annotations

import pytest

from attnlab.repro import isomer
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

V, I = isomer.VANILLA, isomer.ISOMER


@pytest.mark.parametrize("ratio, gap, flops, at_chance, verdict", [
    ((2.5, 4.0), (-1.0, 3.0), 8.0, [], HOLDS),
    ((2.0, 4.0), (-1.0, 3.0), 8.0, [], INCONCLUSIVE),           # A: the ratio's interval must clear 2 strictly
    ((2.5, 4.0), (-2.0, 3.0), 8.0, [], INCONCLUSIVE),           # B: the J gap's interval must clear -2 points
    ((2.5, 4.0), (-1.9, 3.0), 5.0, [], HOLDS),                  # B: >= 5x fewer FLOPs
    ((2.5, 4.0), (-1.9, 3.0), 4.99, [], INCONCLUSIVE),          # A holds, B does not: parts disagree
    ((0.2, 1.99), (-1.0, 3.0), 8.0, [], INCONCLUSIVE),          # A does not hold, B holds
    ((0.2, 1.99), (-1.0, 3.0), 4.0, [], DOES_NOT_HOLD),         # neither
    ((0.2, 1.99), (-9.0, -2.01), 8.0, [], DOES_NOT_HOLD),       # neither (B by J)
    ((0.2, 1.99), (-9.0, -1.0), 8.0, [], INCONCLUSIVE),         # B undecided
    ((2.5, 4.0), (-1.0, 3.0), 8.0, [V], INCONCLUSIVE),          # vanilla at chance: its attention says nothing
    ((2.5, 4.0), (-1.0, 3.0), 8.0, [I, V], INCONCLUSIVE),
    ((2.5, 4.0), (-1.0, 3.0), 8.0, [I], DOES_NOT_HOLD),         # Isomer cannot learn what vanilla learns
])
def test_rule(iv, ratio, gap, flops, at_chance, verdict):
    figures = {isomer.JS_RATIO: iv(*ratio), isomer.J_GAP: iv(*gap), isomer.FLOP_RATIO: flops, AT_CHANCE: at_chance}
    assert isomer.judge(figures) == verdict


def test_chance_is_the_j_of_calling_everything_foreground():
    task = isomer.make_task(0)
    level = isomer.chance(task, 2, 4).level
    fg = sum(float(task.batch("val", i, 4).targets.float().mean()) for i in range(2)) / 2
    assert 0.01 < level < 0.3 and level == pytest.approx(fg, rel=0.3)  # J per frame = that frame's fg fraction


def test_quick_run(quick_run):
    r = quick_run("isomer")
    m = r.measured
    assert m[isomer.FLOP_RATIO] == pytest.approx(m["fusion FLOPs per frame vanilla"] / m["fusion FLOPs per frame Isomer"])
    assert m[isomer.FLOP_RATIO] > 5  # counted, attention included: by construction at 32 px
    assert len(m["query dependence per stage, trained vanilla (bits, seed mean)"]) == 4
    assert all(0 <= v <= 1 for v in m["query dependence per stage, vanilla at init (bits, seed mean)"])
    lo, hi = r.per_seed[isomer.JS_LOW], r.per_seed[isomer.JS_HIGH]
    assert m[isomer.JS_RATIO].values == pytest.approx([h / low for h, low in zip(hi, lo)])
    j = {a: r.protocol[0]["test"][a] for a in isomer.ARMS}
    assert m[isomer.J_GAP].values == pytest.approx([100 * (i - v) for i, v in zip(j[I], j[V])])
    assert set(r.protocol[0]["chosen"]) == set(isomer.ARMS) and len(lo) == len(isomer.QUICK.protocol.seeds)
