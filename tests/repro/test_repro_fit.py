"""Repro fit (P27): the rule on hand-written figures (each outcome, every edge); the slope fit; the quick run."""
from __future__ import annotations

import pytest

from attnlab.repro import fit
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


def _f(acc_fit=0.95, full=0.97, local=0.5, s_fit=1.3, s_dense=1.9):
    return {fit.ACC_FIT: acc_fit, fit.ACC_FULL: full, fit.ACC_LOCAL: local, fit.SLOPE_FIT: s_fit,
            fit.SLOPE_DENSE: s_dense}


@pytest.mark.parametrize("figures, verdict", [
    (_f(), HOLDS),
    (_f(acc_fit=0.92, full=0.97, local=fit.CHANCE_BAND, s_fit=fit.SLOPE_FIT_MAX, s_dense=1.8), HOLDS),  # edges
    (_f(acc_fit=0.9199), INCONCLUSIVE),                                  # FIT short of full attention: A fails
    (_f(local=0.61), INCONCLUSIVE),                                      # local left chance: A fails
    (_f(s_fit=1.51, s_dense=2.0), INCONCLUSIVE), (_f(s_fit=1.3, s_dense=1.5999), INCONCLUSIVE),  # B fails
    (_f(acc_fit=0.6, s_fit=1.9), DOES_NOT_HOLD),                          # neither
    (_f(acc_fit=0.74, full=0.74), INCONCLUSIVE), (_f(acc_fit=0.5, full=0.5, s_fit=2.0), INCONCLUSIVE),  # not learned
    (_f(acc_fit=0.75, full=0.5), HOLDS),                                  # FIT learned where full attention did not
])
def test_rule(figures, verdict):
    assert fit.judge(figures) == verdict


def test_slope_of_power_laws():
    ns = [512, 1728, 4096, 8000]
    assert fit.slope(ns, [n ** (4 / 3) * 1e-6 for n in ns]) == pytest.approx(4 / 3)
    assert fit.slope(ns, [3e-9 * n**2 for n in ns]) == pytest.approx(2.0)


def test_quick_run_records_every_arm_and_the_timing(quick_run):
    m = quick_run("fit").measured
    assert set(m["curves (step, accuracy)"]) == {"FIT", "full attention", "local only"}
    t = m["timing (N, seconds)"]
    assert t["N"] == [k**3 for k in fit.QUICK["sizes"]] and all(s > 0 for s in t["FIT block"] + t["dense attention"])
    assert m[fit.SLOPE_FIT] == pytest.approx(fit.slope(t["N"], t["FIT block"]), abs=0.05)
