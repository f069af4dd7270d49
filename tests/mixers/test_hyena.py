"""The hyena mixer (the 1-D operator P15 builds on) beyond the registry contract: FFT equals direct
convolution, causal prefixes do not depend on the length, filters decay, directions."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers
from attnlab.mixers import hyena as hyena_mod
from attnlab.ops.fft_conv import fft_long_conv_reference

F64 = dict(atol=1e-10, rtol=1e-10)


def _make(name, dim=8, dtype=torch.float64, **kw):
    torch.manual_seed(0)
    return mixers.create(name, dim, **kw).to(dtype).eval()


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


def test_bidirectional_sees_the_future_causal_does_not(future_influence):
    m = _make("hyena", 8)
    assert future_influence(m, causal=True) < 1e-12  # FFT round-off ~1e-18
    assert future_influence(m, causal=False) > 1e-6
