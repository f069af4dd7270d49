"""Repro combiner (P03): the rule on hand-written figures (each outcome, every edge); the quick run's budget."""
from __future__ import annotations

import pytest

from attnlab.repro import combiner as cb
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

M = cb.MARGIN


def _f(full=2.0, local=2.2, fixed=2.05, axial=2.1):
    return {cb.FULL_ATTENTION: full, cb.LOCAL: local, cb.FIXED: fixed, cb.AXIAL: axial}


@pytest.mark.parametrize("figures, verdict", [
    (_f(), HOLDS),
    (_f(axial=2.195), INCONCLUSIVE),                    # one variant not closer by the margin
    (_f(fixed=2.3, axial=2.2), DOES_NOT_HOLD),
    (_f(fixed=1.9, axial=1.95), HOLDS),                 # signed gaps: beating full attention counts as reaching it
    (_f(local=1.9, fixed=1.8, axial=1.8), INCONCLUSIVE),  # full attention not ahead of local: nothing to reach
    (_f(local=2.0 + M * (1 - 1e-6), fixed=1.0, axial=1.0), INCONCLUSIVE),  # ... by less than the margin
    (_f(local=2.0 + M * (1 + 1e-6), fixed=1.0, axial=1.0), HOLDS),
    (_f(fixed=2.2 - M * (1 - 1e-6), axial=2.2 - M * (1 - 1e-6)), DOES_NOT_HOLD),  # closer, by less than the margin
])
def test_rule(figures, verdict):
    assert cb.judge(figures) == verdict


def test_quick_run_gives_local_and_combiner_the_same_budget(quick_run):
    m = quick_run("combiner").measured
    assert m["logits_per_token"]["combiner_fixed"] == m["logits_per_token"]["local"] == 16
    assert all(0.0 < m[k] < 8.0 for k in cb.FIGURES) and m["local_implementation"] == "sliding_window"
