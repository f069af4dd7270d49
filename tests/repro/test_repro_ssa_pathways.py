"""Repro ssa_pathways (P28): the rule on hand-written intervals (each outcome, both edges); MACs; the quick run."""
from __future__ import annotations

import math

import pytest

from attnlab.repro import ssa_pathways as ssa
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

T = ssa.TOLERANCE


@pytest.mark.parametrize("speed, excess, at_chance, verdict", [
    ((1.2, 1.4), (-0.02, 0.005), [], HOLDS), ((1.0001, 1.4), (-0.02, T - 1e-9), [], HOLDS),  # edges just inside
    ((1.0, 1.4), (-0.02, 0.005), [], INCONCLUSIVE), ((1.2, 1.4), (-0.02, T), [], INCONCLUSIVE),
    ((0.8, 0.9999), (-0.02, 0.005), [], DOES_NOT_HOLD),                  # not faster
    ((1.2, 1.4), (T + 1e-9, 0.05), [], DOES_NOT_HOLD),                   # worse by more than 1 %
    ((1.2, 1.4), (-0.02, 0.005), ["SSA"], DOES_NOT_HOLD), ((1.2, 1.4), (-0.02, 0.005), ["SSA", "dense"], INCONCLUSIVE),
])
def test_rule(iv, speed, excess, at_chance, verdict):
    assert ssa.judge({ssa.SPEED: iv(*speed), ssa.EXCESS: iv(*excess), AT_CHANCE: at_chance}) == verdict


def test_attention_macs_count():
    s, dense = ssa.attn_macs(512, 1)
    assert dense == 512 * 513
    assert s == sum(2 * 32 * (32 + math.ceil(32 * i / 4)) for i in range(16))
    assert 2.5 < dense / s < 3.0


def test_quick_run(quick_run):
    r = quick_run("ssa_pathways")
    m = r.measured
    losses = {k: v for k, v in m.items() if k.startswith("test loss ")}
    assert len(losses) == 5 and all(0.0 < x < 10.0 for v in losses.values() for x in v.values)
    want = [min(s, t) / d - 1 for s, t, d in zip(m[ssa.SSA_LOSS].values, m[ssa.SSA_TUNED_LOSS].values,
                                                  m[ssa.DENSE_LOSS].values)]
    assert m[ssa.EXCESS].values == pytest.approx(want) and r.per_seed["excess"] == pytest.approx(want)
