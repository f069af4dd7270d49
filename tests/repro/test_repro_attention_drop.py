"""Repro attention_drop (P17): the rule on hand-written figures (each outcome, the edges, the guard); the quick run."""
from __future__ import annotations

import math

import pytest

from attnlab.repro import attention_drop as ad
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


from attnlab.repro.harness.protocol import AT_CHANCE

GOOD = dict(below_random=(0.1, 0.5), below_mlp=(0.5, 1.5), rank=(-0.9, -0.6), at_chance=())
NAN = (math.nan, math.nan)


def _f(iv, **kw):
    v = GOOD | kw
    return {ad.BELOW_RANDOM: iv(*v["below_random"]), ad.BELOW_MLP: iv(*v["below_mlp"]), ad.RANK: iv(*v["rank"]),
            AT_CHANCE: list(v["at_chance"])}


@pytest.mark.parametrize("kw, verdict", [
    ({}, HOLDS),
    (dict(rank=(-0.9, ad.RANK_MAX)), INCONCLUSIVE), (dict(rank=(-0.9, ad.RANK_MAX - 1e-9)), HOLDS),  # the rank edge
    (dict(below_random=(0.0, 0.5)), INCONCLUSIVE), (dict(below_mlp=(1e-9, 0.5)), HOLDS),             # the order edges
    (dict(below_random=(-0.2, 0.5)), INCONCLUSIVE),                                                   # contains 0
    (dict(below_random=(-0.5, -0.1)), INCONCLUSIVE),                                                  # one part each way
    (dict(below_mlp=(-0.5, -1e-9), rank=(ad.RANK_MAX + 1e-9, 0.3)), DOES_NOT_HOLD),
    (dict(below_random=(-0.5, -0.1), rank=(-0.2, 0.3)), DOES_NOT_HOLD),
    (dict(at_chance=("lm",)), INCONCLUSIVE),                                                          # the LM learned nothing
    (dict(below_random=(-0.5, -0.1), rank=(-0.2, 0.3), at_chance=("lm",)), INCONCLUSIVE),
    (dict(rank=NAN), INCONCLUSIVE), (dict(below_random=NAN, rank=(-0.2, 0.3)), INCONCLUSIVE),
])
def test_rule(iv, kw, verdict):
    assert ad.judge(_f(iv, **kw)) == verdict


def test_quick_run(quick_run):
    r = quick_run("attention_drop")
    m, seeds = r.measured, len(ad.QUICK["protocol"].seeds)
    depth, n = ad.QUICK["depth"], m["modules dropped (L/4 of each kind)"]
    assert n == 1 and len(m["seed 0: importance of attention modules (1 - cos)"]) == depth
    assert all(0 < v < 2 for v in m["seed 0: importance of blocks (1 - cos)"])
    assert len(m["seed 0: single-drop loss increase, MLP (nats)"]) == depth and -1 <= m[ad.RANK].mean <= 1
    assert m[ad.BELOW_RANDOM].values == pytest.approx([x - y for x, y in zip(r.per_seed[ad.RANDOM], r.per_seed[ad.ATTN])])
    assert m[ad.RANK].n == seeds and m["LR chosen for the LM"] in ad.QUICK["protocol"].lrs
    assert r.protocol[0]["chosen"] == {"lm": m["LR chosen for the LM"]}
