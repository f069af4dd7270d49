"""Repro fit (P27): the rule on hand-written intervals (each outcome, every edge); the slope fit; the quick run."""
from __future__ import annotations

import pytest

from attnlab.repro import fit
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

M, BAND = fit.MATCH, fit.CHANCE_BAND


def _f(iv, reach=(-0.02, 0.01), local=(0.48, 0.52), s_fit=(1.25, 1.4), gap=(0.5, 0.7), at_chance=("local only",)):
    return {fit.REACH: iv(*reach), fit.ACC_LOCAL: iv(*local), fit.SLOPE_FIT: iv(*s_fit),
            fit.SLOPE_GAP_FIG: iv(*gap), AT_CHANCE: list(at_chance)}


@pytest.mark.parametrize("kw, verdict", [
    ({}, HOLDS),
    ({"reach": (-M + 1e-9, 0.0), "s_fit": (1.0, fit.SLOPE_FIT_MAX - 1e-9), "gap": (fit.SLOPE_GAP + 1e-9, 1)}, HOLDS),
    ({"reach": (-M, 0.0)}, INCONCLUSIVE),                         # margin touched: A inconclusive
    ({"reach": (-0.3, -M - 1e-9)}, INCONCLUSIVE),                 # A does not hold, B holds
    ({"reach": (-0.3, -0.1), "s_fit": (1.8, 1.9), "gap": (-0.1, 0.1)}, DOES_NOT_HOLD),  # neither part
    ({"at_chance": (), "local": (0.45, BAND - 1e-9)}, HOLDS),     # local's interval below the band
    ({"at_chance": (), "local": (0.45, BAND)}, INCONCLUSIVE),     # ... touching it
    ({"at_chance": (), "local": (BAND + 1e-9, 0.9), "s_fit": (1.8, 1.9), "gap": (-0.1, 0.1)}, DOES_NOT_HOLD),  # local learned
    ({"s_fit": (1.4, 1.6)}, INCONCLUSIVE), ({"gap": (fit.SLOPE_GAP, 0.6)}, INCONCLUSIVE),  # B inconclusive
    ({"reach": (float("nan"), float("nan"))}, INCONCLUSIVE),
    ({"at_chance": ("FIT", "local only")}, INCONCLUSIVE),         # FIT at chance, full learned: A fails, B holds
    ({"at_chance": ("FIT", "local only"), "s_fit": (1.8, 1.9), "gap": (-0.1, 0.1)}, DOES_NOT_HOLD),
    ({"at_chance": ("FIT", "full attention", "local only")}, INCONCLUSIVE),  # nothing learned
])
def test_rule(iv, kw, verdict):
    assert fit.judge(_f(iv, **kw)) == verdict


def test_slope_of_power_laws():
    ns = [512, 1728, 4096, 8000]
    assert fit.slope(ns, [n ** (4 / 3) * 1e-6 for n in ns]) == pytest.approx(4 / 3)
    assert fit.slope(ns, [3e-9 * n**2 for n in ns]) == pytest.approx(2.0)


def test_quick_run_records_every_arm_and_the_timing(quick_run):
    r = quick_run("fit")
    m = r.measured
    assert set(m["lr"]) == set(fit.ARMS)
    assert m[fit.REACH].values == pytest.approx(
        [x - y for x, y in zip(r.per_seed["test accuracy FIT"], r.per_seed["test accuracy full attention"])])
    passes = m["timing passes (N, seconds)"]
    assert len(passes) == fit.QUICK["repeats"] and passes[0]["N"] == [k**3 for k in fit.QUICK["sizes"]]
    assert m[fit.SLOPE_FIT].values == pytest.approx([fit.slope(t["N"], t["FIT block"]) for t in passes], abs=0.05)
