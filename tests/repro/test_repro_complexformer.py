"""Repro complexformer (P18): the rule on hand-written intervals (each outcome and its edges); the quick run."""
from __future__ import annotations

import pytest

from attnlab.repro import complexformer as cf
from attnlab.repro.harness.protocol import AT_CHANCE
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

E = cf.EPS
AS_GOOD, WORSE, HELP, NO_HELP = (-0.05, 0.0), (0.05, 0.1), (0.1, 0.3), (-0.1, -0.02)


def _f(iv, cmha=AS_GOOD, nope=HELP, at_chance=()):
    return {cf.CMHA_VS_ROPE: iv(*cmha), cf.NOPE_VS_ROPE: iv(*nope), AT_CHANCE: list(at_chance)}


@pytest.mark.parametrize("kw, verdict", [
    ({}, HOLDS),
    ({"cmha": (-0.05, E - 1e-6)}, HOLDS),             # within EPS of RoPE counts as "at least as good"
    ({"cmha": (-0.05, E)}, INCONCLUSIVE),             # touching EPS: part (1) undecided
    ({"cmha": (E + 1e-6, 0.1)}, INCONCLUSIVE),        # (1) does not hold, (2) holds
    ({"nope": (E, 0.3)}, INCONCLUSIVE),               # (2) undecided
    ({"cmha": WORSE, "nope": NO_HELP}, DOES_NOT_HOLD),  # neither part
    ({"nope": NO_HELP}, INCONCLUSIVE),                # one of two
    ({"nope": (-0.1, E - 1e-6), "cmha": WORSE}, DOES_NOT_HOLD),
    ({"cmha": (float("nan"), float("nan"))}, INCONCLUSIVE),
    ({"at_chance": ["cmha"]}, DOES_NOT_HOLD),         # CMHA learned nothing while RoPE did
    ({"at_chance": ["nope"]}, HOLDS),                 # named in the verdict line; the intervals decide
    ({"at_chance": list(cf.ARMS)}, INCONCLUSIVE),
])
def test_rule(iv, kw, verdict):
    assert cf.judge(_f(iv, **kw)) == verdict


def test_quick_run(quick_run):
    r = quick_run("complexformer")
    m = r.measured
    for arm in cf.ARMS:
        assert 0 < m[f"test loss at N: {arm}"].mean < 6 and 0 < m[f"test loss at 2N: {arm}"].mean < 6
    assert m["params"]["cmha"] - m["params"]["rope"] == 2 * 32  # delta and b: 2 layers x H x d_h/2 x 2 = 64
    assert m["params"]["rope"] == m["params"]["nope"]
    assert m[cf.CMHA_VS_ROPE].values == pytest.approx(
        [x - y for x, y in zip(r.per_seed["test loss at N: cmha"], r.per_seed["test loss at N: rope"])])
