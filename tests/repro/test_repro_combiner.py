"""Repro combiner (P03): the rule on hand-written intervals (each outcome, every edge); the quick run's budget."""
from __future__ import annotations

import pytest

from attnlab.repro import combiner as cb
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

M = cb.MARGIN
AHEAD, CLOSE, FAR = (0.1, 0.3), (0.05, 0.2), (-0.2, 0.0)


def _f(iv, full_ahead=AHEAD, fixed=CLOSE, axial=CLOSE, at_chance=()):
    return {cb.FULL_AHEAD: iv(*full_ahead), cb.CLOSER.format("combiner_fixed"): iv(*fixed),
            cb.CLOSER.format("combiner_axial"): iv(*axial), AT_CHANCE: list(at_chance)}


@pytest.mark.parametrize("kw, verdict", [
    ({}, HOLDS),
    ({"axial": (0.0, 0.2)}, INCONCLUSIVE),                    # one variant's interval contains the margin
    ({"axial": FAR}, INCONCLUSIVE),                           # one variant closer, the other not
    ({"fixed": FAR, "axial": FAR}, DOES_NOT_HOLD),            # neither closer than local by the margin
    ({"fixed": (M + 1e-6, 0.2), "axial": (M + 1e-6, 0.2)}, HOLDS), ({"fixed": (M, 0.2)}, INCONCLUSIVE),
    ({"fixed": (-0.1, M - 1e-6), "axial": (-0.1, M - 1e-6)}, DOES_NOT_HOLD),
    ({"full_ahead": (-0.3, -0.1)}, INCONCLUSIVE),             # local beats full attention: nothing to reach
    ({"full_ahead": (M, 0.3)}, INCONCLUSIVE),                 # ... or is not clearly behind it
    ({"full_ahead": (M + 1e-6, 0.3)}, HOLDS),
    ({"at_chance": ["combiner_fixed"]}, DOES_NOT_HOLD), ({"at_chance": cb.ARMS}, INCONCLUSIVE),
])
def test_rule(iv, kw, verdict):
    assert cb.judge(_f(iv, **kw)) == verdict


def test_quick_run_gives_local_and_combiner_the_same_budget(quick_run):
    r = quick_run("combiner")
    m = r.measured
    assert m["logits_per_token"]["combiner_fixed"] == m["logits_per_token"]["local"] == 16
    assert all(0.0 < m[f"test bpc: {a}"].mean < 8.0 for a in cb.ARMS) and m["local_implementation"] == "sliding_window"
    assert m[cb.FULL_AHEAD].values == pytest.approx(
        [x - y for x, y in zip(r.per_seed["test bpc: local"], r.per_seed["test bpc: full attention"])])
