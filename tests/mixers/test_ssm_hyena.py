"""Mixers mamba, mamba2d, s4d (P23) and hyena, hyena_nd (P15): fast paths vs references, decoding, geometry.

(The registry-wide contract — gradcheck, causality, padding, errors — runs in test_contract.py.)
Tolerances: fp64 1e-10 unless stated; fp32 fast vs reference 1e-5.
"""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers
from attnlab.mixers import hyena as hyena_mod
from attnlab.mixers import hyena_nd as hyena_nd_mod
from attnlab.mixers import mamba2d as ssm_mod
from attnlab.ops.fft_conv import fft_long_conv_nd_reference, fft_long_conv_reference
from attnlab.ops.selective_scan import selective_scan_reference

F64 = dict(atol=1e-10, rtol=1e-10)


def _make(name, dim=8, dtype=torch.float64, **kw):
    torch.manual_seed(0)
    return mixers.create(name, dim, **kw).to(dtype).eval()


@pytest.mark.parametrize("causal", [True, False])
def test_mamba_fast_scan_equals_reference_scan_fp32(causal):
    m = _make("mamba", 16, torch.float32, d_state=4)
    ref = _make("mamba", 16, torch.float32, d_state=4, use_reference=True)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(2, 37, 16, requires_grad=True)
    y1, y2 = m(x, causal=causal), ref(x, causal=causal)
    torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(y1)
    g1 = torch.autograd.grad((y1 * g).sum(), [x, *m.parameters()])
    g2 = torch.autograd.grad((y2 * g).sum(), [x, *ref.parameters()])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_mamba_decoding_equals_causal_forward_with_constant_state():
    m = _make("mamba", 8, d_state=3)
    x = torch.randn(2, 13, 8, dtype=torch.float64)
    y = m(x, causal=True)
    state = m.init_state(2, dtype=torch.float64)
    sizes = {k: v.shape for k, v in state.items()}
    outs = []
    with torch.no_grad():
        for t in range(13):
            o, state = m.step(x[:, t], state)
            assert {k: v.shape for k, v in state.items()} == sizes
            outs.append(o)
    torch.testing.assert_close(torch.stack(outs, 1), y, **F64)


@pytest.mark.parametrize("name", ["mamba", "s4d", "hyena"])
def test_bidirectional_sees_the_future_causal_does_not(name):
    m = _make(name, 8)
    x = torch.randn(1, 10, 8, dtype=torch.float64, requires_grad=True)
    for causal in (True, False):
        (g,) = torch.autograd.grad(m(x, causal=causal)[0, 0].sum(), x)
        future = g[0, 1:].abs().sum()
        assert (future < 1e-12) if causal else (future > 1e-6)  # FFT round-off ~1e-18


def test_s4d_kernel_equals_the_time_invariant_scan():
    """The FFT-kernel SSM of s4d equals the token loop with constant delta and fixed B, C."""
    m = _make("s4d", 6, d_state=4)
    x = torch.randn(2, 21, m.d_inner, dtype=torch.float64)
    y = m.ssm(x, None)
    dt = torch.exp(m.log_dt).view(1, -1, 1).expand(2, -1, 21)
    ref = selective_scan_reference(x.transpose(1, 2), dt, -torch.exp(m.A_log), m.B, m.C, m.D).transpose(1, 2)
    torch.testing.assert_close(y, ref, **F64)


def test_scan_orders_cover_the_grid():
    h, w = 3, 5
    orders = ssm_mod.scan_orders((h, w))
    assert orders.shape == (4, h * w)
    for row in orders:
        assert sorted(row.tolist()) == list(range(h * w))  # a permutation: every token exactly once
    grid = torch.arange(h * w).view(h, w)
    assert orders[1].tolist() == grid.t().reshape(-1).tolist()  # column-major
    assert orders[2].tolist() == orders[0].flip(0).tolist() and orders[3].tolist() == orders[1].flip(0).tolist()
    # consecutive positions are neighbours on the grid in the row order (within a row) and column order
    r, c = orders[1] // w, orders[1] % w
    assert ((r[1:] - r[:-1] == 1) | (c[1:] - c[:-1] == 1)).all()


def test_mamba2d_every_output_sees_every_token_and_matches_reference_scan(monkeypatch):
    m = _make("mamba2d", 8, d_state=3, expand=1)
    grid = (4, 5)
    x = torch.randn(2, 20, 8, dtype=torch.float64, requires_grad=True)
    y = m(x, grid=grid)
    for tok in (0, 7, 19):
        (g,) = torch.autograd.grad(y[0, tok].sum(), x, retain_graph=True)
        assert (g[0].abs().sum(-1) > 0).all(), f"output {tok} misses some token"
        assert g[1].abs().sum() == 0
    monkeypatch.setattr(ssm_mod, "selective_scan", lambda *a, chunk_size=None, **k: selective_scan_reference(*a, **k))
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


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("causal", [True, False])
def test_hyena_fft_equals_direct_convolution(order, causal, monkeypatch):
    m = _make("hyena", 8, order=order, filter_width=16, max_len=64)
    x = torch.randn(2, 19, 8, dtype=torch.float64)
    y = m(x, causal=causal)
    monkeypatch.setattr(hyena_mod, "fft_long_conv", fft_long_conv_reference)
    torch.testing.assert_close(m(x, causal=causal), y, **F64)


def test_hyena_causal_prefix_is_independent_of_length():
    """Filters depend on the offset / max_len only, so a prefix gives the same outputs as the whole sequence."""
    m = _make("hyena", 8, order=3, max_len=64)
    x = torch.randn(2, 30, 8, dtype=torch.float64)
    torch.testing.assert_close(m(x[:, :17], causal=True), m(x, causal=True)[:, :17], **F64)


def test_hyena_filters_decay_and_order3_differs():
    m = _make("hyena", 8, order=2, max_len=32)
    k = m.kernels(32, True)
    assert k.shape == (1, 8, 32)
    w = m.filter.window(torch.arange(32.0, dtype=torch.float64), 32.0)
    assert (w[1:] <= w[:-1]).all() and w[0].eq(1).all() and (w[-1] < 0.05).any()
    kb = m.kernels(5, False)
    assert kb.shape == (1, 8, 9)
    torch.testing.assert_close(kb[..., 4:], m.kernels(5, True), **F64)  # offsets 0..4 of the centred filter
    assert _make("hyena", 8, order=3).in_proj.out_features == 32


@pytest.mark.parametrize("mode", ["product", "joint"])
@pytest.mark.parametrize("kernel", ["centred", "quadrant"])
def test_hyena_nd_fft_equals_direct_and_geometry(mode, kernel, monkeypatch):
    m = _make("hyena_nd", 8, filter_mode=mode, kernel=kernel, filter_width=16)
    grid = (4, 5)
    x = torch.randn(2, 20, 8, dtype=torch.float64, requires_grad=True)
    y = m(x, grid=grid)
    k = m.kernels(grid)
    assert k.shape == ((1, 8, 7, 9) if kernel == "centred" else (1, 8, 4, 5))
    (g,) = torch.autograd.grad(y[0, 0].sum(), x)
    seen = g[0].abs().sum(-1).view(grid) > 1e-12  # FFT round-off ~1e-20
    if kernel == "centred":
        assert seen.all()  # the top-left token sees the whole grid
    else:
        # quadrant filters look up-left only; the 3x3 short conv adds one row/column below/right
        assert seen[:2, :2].all() and not seen[2:].any() and not seen[:, 2:].any()
    monkeypatch.setattr(hyena_nd_mod, "fft_long_conv_nd", fft_long_conv_nd_reference)
    torch.testing.assert_close(m(x, grid=grid), y, **F64)


def test_hyena_nd_3d_grid_and_errors():
    m = _make("hyena_nd", 8, max_dims=3, filter_width=8)
    x = torch.randn(1, 2 * 3 * 4, 8, dtype=torch.float64)
    assert torch.isfinite(m(x, grid=(2, 3, 4))).all()
    with pytest.raises(ValueError, match="grid"):
        _make("hyena_nd", 8)(x, grid=(2, 3, 4))
    with pytest.raises(ValueError, match="order"):
        mixers.create("hyena", 8, order=4)
    with pytest.raises(ValueError, match="filter_mode"):
        mixers.create("hyena_nd", 8, filter_mode="sum")
