"""The hyena_nd mixer (P15) beyond the registry contract: FFT equals direct convolution for product and
joint filters, centred and quadrant kernels have the geometry they claim, 3-D grids, errors."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers
from attnlab.mixers import hyena_nd as hyena_nd_mod
from attnlab.ops.fft_conv import fft_long_conv_nd_reference

F64 = dict(atol=1e-10, rtol=1e-10)


def _make(name, dim=8, dtype=torch.float64, **kw):
    torch.manual_seed(0)
    return mixers.create(name, dim, **kw).to(dtype).eval()


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
