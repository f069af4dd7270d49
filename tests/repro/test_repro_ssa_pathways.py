"""Repro ssa_pathways (P28): the rule on hand-written figures (each outcome, both edges); MACs; the quick run."""
from __future__ import annotations

import math

import pytest

from attnlab.repro import ssa_pathways as ssa
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS

DENSE = 2.0
EDGE = DENSE * (1 + ssa.TOLERANCE)


def _f(ssa_loss=2.5, tuned=2.5, speed=1.3):
    return {ssa.DENSE_LOSS: DENSE, ssa.SSA_LOSS: ssa_loss, ssa.SSA_TUNED_LOSS: tuned, ssa.SPEED: speed}


@pytest.mark.parametrize("figures, verdict", [
    (_f(tuned=EDGE), HOLDS), (_f(ssa_loss=EDGE), HOLDS), (_f(tuned=1.5), HOLDS),   # the better SSA loss counts
    (_f(tuned=EDGE + 1e-9), DOES_NOT_HOLD), (_f(tuned=1.5, speed=1.0), DOES_NOT_HOLD),  # not faster
    (_f(tuned=1.5, speed=1.0001), HOLDS),
])
def test_rule(figures, verdict):
    assert ssa.judge(figures) == verdict


def test_attention_macs_count():
    s, dense = ssa.attn_macs(512, 1)
    assert dense == 512 * 513
    assert s == sum(2 * 32 * (32 + math.ceil(32 * i / 4)) for i in range(16))
    assert 2.5 < dense / s < 3.0


def test_quick_run(quick_run):
    m = quick_run("ssa_pathways").measured
    losses = {k: v for k, v in m.items() if k.startswith("val loss")}
    assert len(losses) == 5 and all(0.0 < v < 10.0 for v in losses.values())
    assert m[ssa.SPEED] == pytest.approx(m["train step seconds dense"] / m["train step seconds SSA"])
