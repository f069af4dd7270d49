"""Repro random_features (P01): the quick mode runs, returns a verdict from its rule, and its pieces are right."""
from __future__ import annotations

import torch

from attnlab.repro.base import VERDICTS, ReproContext
from attnlab.repro.random_features import make_data, ridge_path, run


def test_target_is_the_cubic_mean():
    g = torch.Generator().manual_seed(0)
    x0, keys, y = make_data(5, 4, 3, g)
    torch.testing.assert_close(x0.norm(dim=-1), torch.full((5,), 2.0))
    want = torch.stack([sum((x0[b] @ keys[b, i]) ** 3 for i in range(3)) / 3 / 8 for b in range(5)])
    torch.testing.assert_close(y, want)


def test_ridge_path_fits_a_linear_target_and_picks_small_lambda():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(10, generator=g)
    f = [torch.randn(n, 10, generator=g) for n in (200, 100, 100)]
    err, lam = ridge_path(f[0], f[0] @ w + 1.0, f[1], f[1] @ w + 1.0, f[2], f[2] @ w + 1.0)
    assert err < 1e-6 and lam <= 1e-4


def test_quick_run(tmp_path):
    out = run(ReproContext(quick=True, out_dir=tmp_path, progress=False))
    assert out.verdict in VERDICTS
    nmse = out.measured["test_nmse"]
    assert set(nmse) == {"rfa_biased", "rfa_zero_mean", "rf_mlp"}
    assert all(v > 0 for c in nmse.values() for v in c.values())
    assert all(p.endswith(".png") for p in out.plots)
