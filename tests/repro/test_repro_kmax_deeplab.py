"""Repro kmax_deeplab (P25): the rule on hand-written figures (each outcome, every edge); the quick run's figures."""
from __future__ import annotations

import pytest

from attnlab.repro import kmax_deeplab as km
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


def _f(pq=0.0, miou=0.0, curve=2.0, best=50.0):
    return {km.PQ_GAP: pq, km.MIOU_GAP: miou, km.CURVE_GAP: curve, km.BEST_PQ: best}


@pytest.mark.parametrize("figures, verdict", [
    (_f(), HOLDS),
    (_f(pq=-km.BAND, miou=-km.BAND, curve=km.FASTER), HOLDS),                 # every edge inside
    (_f(curve=km.FASTER - 1e-9), INCONCLUSIVE),                               # same quality, not faster
    (_f(curve=-km.BAND), INCONCLUSIVE), (_f(curve=-km.BAND - 1e-9), DOES_NOT_HOLD),  # clearly slower
    (_f(pq=-km.BAND - 1e-9), DOES_NOT_HOLD), (_f(miou=-km.BAND - 1e-9), DOES_NOT_HOLD),  # clearly worse
    (_f(pq=5.0, miou=5.0, curve=0.5), INCONCLUSIVE),                          # better at the end, not faster
    (_f(best=km.LEARNED_PQ - 1e-9), INCONCLUSIVE), (_f(pq=-20, best=km.LEARNED_PQ - 1), INCONCLUSIVE),  # not learned
    (_f(best=km.LEARNED_PQ), HOLDS), (_f(best=float("nan")), INCONCLUSIVE),
])
def test_rule(figures, verdict):
    assert km.judge(figures) == verdict


def test_quick_run_records_both_arms(quick_run):
    r = quick_run("kmax_deeplab")
    m = r.measured
    final = m["final (pooled validation, points)"]
    assert set(final) == set(km.ARMS) and all(0 <= f["pq"] <= 100 and 0 <= f["miou"] <= 100 for f in final.values())
    km_name, sm_name = km.ARMS
    assert m[km.PQ_GAP] == pytest.approx(final[km_name]["pq"] - final[sm_name]["pq"], abs=0.01)
    assert all(len(c["pq"]) >= 2 for c in m["curves (points)"].values())
    assert m["step time k-means / softmax"] > 0
