"""Repro kmax_deeplab (P25): the rule on hand-written intervals (each outcome, every edge); the quick run's figures."""
from __future__ import annotations

import pytest

from attnlab.repro import kmax_deeplab as km
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

B, F = km.BAND, km.FASTER
KM, SM = km.ARMS


def _f(iv, pq=(-1.0, 1.0), miou=(-1.0, 1.0), curve=(1.5, 3.0), at_chance=()):
    return {km.PQ_GAP: iv(*pq), km.MIOU_GAP: iv(*miou), km.CURVE_GAP: iv(*curve), AT_CHANCE: list(at_chance)}


@pytest.mark.parametrize("kw, verdict", [
    ({}, HOLDS),
    ({"pq": (-B + 1e-9, 0), "miou": (-B + 1e-9, 0), "curve": (F + 1e-9, 2)}, HOLDS),   # just clear every margin
    ({"pq": (-B, 0)}, INCONCLUSIVE), ({"miou": (-B, 0)}, INCONCLUSIVE), ({"curve": (F, 2)}, INCONCLUSIVE),  # touched
    ({"curve": (-0.5, F - 1e-9)}, DOES_NOT_HOLD),                        # not faster by the margin
    ({"pq": (-5, -B - 1e-9)}, DOES_NOT_HOLD), ({"miou": (-5, -B - 1e-9)}, DOES_NOT_HOLD),  # clearly worse
    ({"curve": (0.0, 2.0)}, INCONCLUSIVE),                               # interval contains the margin
    ({"pq": (float("nan"), float("nan"))}, INCONCLUSIVE),
    ({"at_chance": [KM]}, DOES_NOT_HOLD), ({"at_chance": [SM]}, HOLDS), ({"at_chance": [KM, SM]}, INCONCLUSIVE),
])
def test_rule(iv, kw, verdict):
    assert km.judge(_f(iv, **kw)) == verdict


def test_quick_run_records_both_arms(quick_run):
    r = quick_run("kmax_deeplab")
    m = r.measured
    assert set(m["lr"]) == set(km.ARMS)
    per = r.per_seed
    assert m[km.PQ_GAP].values == pytest.approx(
        [x - y for x, y in zip(per[f"test PQ {KM} (points)"], per[f"test PQ {SM} (points)"])])
    assert all(0 <= v <= 100 for k, vals in per.items() for v in vals)
    assert all(len(c) >= 2 for c in m["validation PQ curves, seed 0 (points)"].values())
    assert m["step time k-means / softmax"] > 0
