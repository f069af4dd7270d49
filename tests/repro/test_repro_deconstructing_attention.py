"""Repro deconstructing_attention (P08): the rule on hand-written figures (each outcome and its edges); the quick run."""
from __future__ import annotations

import pytest

from attnlab.repro import deconstructing_attention as da
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


def _f(h=1.0, std=0.3, nomix=0.95, alone=(0.9, 0.8), hybrid=(0.35, 0.4)):
    f = {da.ENTROPY: h, da.STANDARD: std, da.NO_MIX: nomix}
    f.update({da.UNIFORM[v]: x for v, x in zip(da.INPUT_INDEPENDENT, alone)})
    f.update({da.HYBRID[v]: x for v, x in zip(da.INPUT_INDEPENDENT, hybrid)})
    return f


@pytest.mark.parametrize("figures, verdict", [
    (_f(), HOLDS),
    (_f(std=0.51), INCONCLUSIVE),                  # standard did not learn to copy: nothing to compare
    (_f(std=0.5, alone=(0.8, 0.8), hybrid=(0.6, 0.6)), HOLDS),   # edges: 0.5 H, +0.3, +0.1 are inclusive
    (_f(nomix=0.89), DOES_NOT_HOLD),               # no mixing copies: the premise fails
    (_f(alone=(0.59, 0.9)), INCONCLUSIVE),         # (B) fails for one variant, (C) holds
    (_f(hybrid=(0.41, 0.35)), INCONCLUSIVE),       # (C) fails for one, (B) holds
    (_f(alone=(0.4, 0.4), hybrid=(0.6, 0.6)), DOES_NOT_HOLD),  # neither (B) nor (C)
])
def test_rule(figures, verdict):
    assert da.judge(figures) == verdict


def test_quick_run(quick_run):
    m = quick_run("deconstructing_attention").measured
    names = {"standard", "no mixing", "standard layers alone"} | {f"{k} {v}" for k in ("uniform", "hybrid")
                                                                   for v in da.VARIANTS}
    assert set(m["table"]) == names
    assert m[da.ENTROPY] > 0 and all(0 <= row["copy_accuracy"] <= 1 for row in m["table"].values())
    # the gated MLP has attention's parameter count (hidden = round(4 C / 3)), to within 2 %
    assert abs(m["params"]["no mixing"] / m["params"]["standard"] - 1) < 0.02
