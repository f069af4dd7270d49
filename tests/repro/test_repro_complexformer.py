"""Repro complexformer (P18): the rule on hand-written figures (each outcome and its edges); the quick run."""
from __future__ import annotations

import math

import pytest

from attnlab.repro import complexformer as cf
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


def _f(cmha=2.0, rope=2.05, nope=2.3):
    return {cf.LOSS.format("cmha"): cmha, cf.LOSS.format("rope"): rope, cf.LOSS.format("nope"): nope}


@pytest.mark.parametrize("figures, verdict", [
    (_f(), HOLDS),
    (_f(cmha=2.05 + cf.EPS), HOLDS),              # within EPS of RoPE counts as "at least as good"
    (_f(cmha=2.05 + cf.EPS + 1e-4), INCONCLUSIVE),  # just past EPS: part (1) fails
    (_f(nope=2.05 + cf.EPS), INCONCLUSIVE),       # RoPE not strictly EPS below NoPE: part (2) fails
    (_f(cmha=2.2, nope=2.05), DOES_NOT_HOLD),     # neither
    (_f(rope=math.log(98) - 0.49, cmha=1.0, nope=9.0), INCONCLUSIVE),  # guard: nothing learned
    (_f(cmha=float("nan")), INCONCLUSIVE),        # NaN fails its part
])
def test_rule(figures, verdict):
    assert cf.judge(figures) == verdict


def test_quick_run(quick_run):
    m = quick_run("complexformer").measured
    for arm in cf.ARMS:
        assert 0 < m[cf.LOSS.format(arm)] < 6 and 0 < m[cf.LOSS_2N.format(arm)] < 6
    assert m["params"]["cmha"] - m["params"]["rope"] == 2 * 32  # delta and b: 2 layers x H x d_h/2 x 2 = 64
    assert m["params"]["rope"] == m["params"]["nope"]
