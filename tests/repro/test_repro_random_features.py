"""Repro random_features (P01): the rule on hand-written figures (each outcome, every edge); data and ridge fit."""
from __future__ import annotations

import pytest
import torch

from attnlab.repro import random_features as rf
from attnlab.repro.harness.rules import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE


@pytest.mark.parametrize("biased, zero_mean, mlp, verdict", [
    (0.4, 0.9, 1.0, HOLDS), (0.4, 0.9, 0.8, HOLDS),        # the MLP exactly 2x worse is enough
    (0.4, 0.9, 0.79, INCONCLUSIVE), (0.4, 0.9, 0.41, INCONCLUSIVE),
    (0.5, 0.5, 2.0, DOES_NOT_HOLD), (0.6, 0.5, 2.0, DOES_NOT_HOLD),   # biased not better than zero-mean
    (0.4, 0.9, 0.4, DOES_NOT_HOLD),                        # the MLP no worse than biased RFA
])
def test_rule(biased, zero_mean, mlp, verdict):
    assert rf.judge({rf.BIASED: biased, rf.ZERO_MEAN: zero_mean, rf.MLP: mlp}) == verdict


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
    err, lam = rf.ridge_path(f[0], f[0] @ w + 1.0, f[1], f[1] @ w + 1.0, f[2], f[2] @ w + 1.0)
    assert err < 1e-6 and lam <= 1e-4


def test_quick_run_judges_at_its_largest_n(quick_run):
    m = quick_run("random_features").measured
    assert m["judged_at_n"] == max(rf.QUICK["sizes"])
    for model, key in zip(rf.MODELS, rf.FIGURES):
        assert m[key] == pytest.approx(m["test_nmse"][model][str(m["judged_at_n"])], abs=1e-5) and m[key] > 0
