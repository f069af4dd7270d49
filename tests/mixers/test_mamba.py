"""The mamba mixer (P23) beyond the registry contract: the fast scan equals the reference scan (fp32,
forward and backward), decoding with a constant-size state equals the causal forward, directions."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers

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


def test_bidirectional_sees_the_future_causal_does_not(future_influence):
    m = _make("mamba", 8)
    assert future_influence(m, causal=True) < 1e-12  # FFT round-off ~1e-18
    assert future_influence(m, causal=False) > 1e-6
