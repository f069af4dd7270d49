"""Repro random_features (P01): the rule on hand-written intervals (each outcome, every edge); data and ridge fit."""
from __future__ import annotations

import pytest
import torch

from attnlab.repro import random_features as rf
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


@pytest.mark.parametrize("gain, ratio, verdict", [
    ((0.3, 0.6), (2.5, 3.0), HOLDS), ((0.001, 0.6), (2.001, 3.0), HOLDS),
    ((0.0, 0.6), (2.5, 3.0), INCONCLUSIVE), ((0.3, 0.6), (2.0, 3.0), INCONCLUSIVE),    # both margins are strict
    ((-0.2, -0.01), (2.5, 3.0), DOES_NOT_HOLD),                                       # biased sampling is worse
    ((0.3, 0.6), (1.0, 1.99), DOES_NOT_HOLD),                                         # the MLP not 2x worse
    ((-0.1, 0.2), (1.5, 2.5), INCONCLUSIVE),
])
def test_rule(iv, gain, ratio, verdict):
    assert rf.judge({rf.BIAS_GAIN: iv(*gain), rf.MLP_RATIO: iv(*ratio)}) == verdict


def test_target_is_the_cubic_mean():
    g = torch.Generator().manual_seed(0)
    x0, keys, y = rf.make_data(5, 4, 3, g)
    torch.testing.assert_close(x0.norm(dim=-1), torch.full((5,), 2.0))
    want = torch.stack([sum((x0[b] @ keys[b, i]) ** 3 for i in range(3)) / 3 / 8 for b in range(5)])
    torch.testing.assert_close(y, want)


def test_ridge_path_fits_a_linear_target_and_picks_small_lambda():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(10, generator=g)
    f = [torch.randn(n, 10, generator=g) for n in (200, 100, 100)]
    err, lam, vals = rf.ridge_path(f[0], f[0] @ w + 1.0, f[1], f[1] @ w + 1.0, f[2], f[2] @ w + 1.0)
    assert err < 1e-6 and lam <= 1e-4 and len(vals) == len(rf.LAMBDAS) and min(vals) == vals[rf.LAMBDAS.index(lam)]


def test_quick_run_judges_at_its_largest_n(quick_run):
    r = quick_run("random_features")
    m = r.measured
    assert m["judged_at_n"] == max(rf.QUICK["sizes"])
    b, z, mlp = (r.per_seed[rf.NMSE.format(k)] for k in rf.MODELS)
    assert m[rf.BIAS_GAIN].values == pytest.approx([x - y for x, y in zip(z, b)])
    assert m[rf.MLP_RATIO].values == pytest.approx([x / y for x, y in zip(mlp, b)])
    assert r.protocol[0]["hyper"] == "ridge lambda" and set(r.protocol[0]["chosen"]) == set(rf.MODELS)
