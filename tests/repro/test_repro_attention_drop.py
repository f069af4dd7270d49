"""Repro attention_drop (P17): the rule on hand-written figures (each outcome, the edges, the guard); the quick run."""
from __future__ import annotations

import math

import pytest

from attnlab.repro import attention_drop as ad
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


def _f(attn=0.1, random=0.5, mlp=2.0, rank=-0.8, base=2.0):
    return {ad.ATTN: attn, ad.RANDOM: random, ad.MLP: mlp, ad.RANK: rank, ad.BASE_LOSS: base}


@pytest.mark.parametrize("figures, verdict", [
    (_f(), HOLDS),
    (_f(rank=ad.RANK_MAX), HOLDS), (_f(rank=ad.RANK_MAX + 1e-9), INCONCLUSIVE),      # the rank edge
    (_f(attn=0.5), INCONCLUSIVE), (_f(random=2.0), INCONCLUSIVE),                     # ties break the ordering
    (_f(attn=0.6), INCONCLUSIVE), (_f(mlp=0.4), INCONCLUSIVE),                         # either inequality fails
    (_f(attn=0.6, rank=0.3), DOES_NOT_HOLD),
    (_f(base=ad.LEARNED_NATS), INCONCLUSIVE), (_f(base=ad.LEARNED_NATS - 1e-9), HOLDS),  # the guard
    (_f(attn=0.6, rank=0.3, base=3.5), INCONCLUSIVE),
    (_f(rank=math.nan), INCONCLUSIVE), (_f(attn=math.nan, rank=math.nan), DOES_NOT_HOLD),
])
def test_rule(figures, verdict):
    assert ad.judge(figures) == verdict


def test_quick_run(quick_run):
    m = quick_run("attention_drop").measured
    depth, n = ad.QUICK["depth"], m["modules dropped (L/4 of each kind)"]
    assert n == 1 and len(m["importance of attention modules (1 - cos)"]) == depth
    assert all(0 < v < 2 for v in m["importance of blocks (1 - cos)"])
    assert len(m["single-drop loss increase, MLP (nats)"]) == depth and -1 <= m[ad.RANK] <= 1
    lo, hi = m["dPPL attention at random, min / max over draws"]
    assert lo <= m[ad.RANDOM] <= hi
    assert m["perplexity of the full model (per char)"] == pytest.approx(math.exp(m[ad.BASE_LOSS]))
