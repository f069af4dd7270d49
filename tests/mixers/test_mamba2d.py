"""The mamba2d mixer (P23, VMamba SS2D) beyond the registry contract: the four scan orders cover the grid,
every output sees every token, the reference scan gives the same output, a transposed image swaps the scans."""
from __future__ import annotations

import torch

import attnlab.mixers as mixers
from attnlab.mixers import mamba2d as mamba2d_mod
from attnlab.ops.selective_scan import selective_scan_reference

F64 = dict(atol=1e-10, rtol=1e-10)


def test_scan_orders_cover_the_grid():
    h, w = 3, 5
    orders = mamba2d_mod.scan_orders((h, w))
    assert orders.shape == (4, h * w)
    for row in orders:
        assert sorted(row.tolist()) == list(range(h * w))  # a permutation: every token exactly once
    grid = torch.arange(h * w).view(h, w)
    assert orders[1].tolist() == grid.t().reshape(-1).tolist()  # column-major
    assert orders[2].tolist() == orders[0].flip(0).tolist() and orders[3].tolist() == orders[1].flip(0).tolist()
    # consecutive positions are neighbours on the grid in the row order (within a row) and column order
    r, c = orders[1] // w, orders[1] % w
    assert ((r[1:] - r[:-1] == 1) | (c[1:] - c[:-1] == 1)).all()


def _make(name, dim=8, dtype=torch.float64, **kw):
    torch.manual_seed(0)
    return mixers.create(name, dim, **kw).to(dtype).eval()


def test_mamba2d_every_output_sees_every_token_and_matches_reference_scan(monkeypatch):
    m = _make("mamba2d", 8, d_state=3, expand=1)
    grid = (4, 5)
    x = torch.randn(2, 20, 8, dtype=torch.float64, requires_grad=True)
    y = m(x, grid=grid)
    for tok in (0, 7, 19):
        (g,) = torch.autograd.grad(y[0, tok].sum(), x, retain_graph=True)
        assert (g[0].abs().sum(-1) > 0).all(), f"output {tok} misses some token"
        assert g[1].abs().sum() == 0
    monkeypatch.setattr(mamba2d_mod, "selective_scan", lambda *a, chunk_size=None, **k: selective_scan_reference(*a, **k))
    torch.testing.assert_close(m(x, grid=grid), y, **F64)


def test_mamba2d_one_direction_is_a_transposed_scan():
    """Transposing the image swaps the row- and column-major scans: with their parameters swapped, same output."""
    m = _make("mamba2d", 8, d_state=3, expand=1, d_conv=1)
    m2 = _make("mamba2d", 8, d_state=3, expand=1, d_conv=1)
    sd = m.state_dict()
    e = m.d_inner
    perm = [1, 0, 3, 2]
    for k in ("x_proj_weight", "dt_proj_weight", "dt_proj_bias"):
        sd[k] = sd[k][perm]
    for k in ("A_log", "D"):
        sd[k] = sd[k].view(4, e, *sd[k].shape[1:])[perm].reshape(sd[k].shape)
    m2.load_state_dict(sd)
    x = torch.randn(1, 12, 8, dtype=torch.float64)
    xt = x.view(1, 3, 4, 8).transpose(1, 2).reshape(1, 12, 8)
    y = m(x, grid=(3, 4))
    yt = m2(xt, grid=(4, 3)).view(1, 4, 3, 8).transpose(1, 2).reshape(1, 12, 8)
    torch.testing.assert_close(yt, y, **F64)
