"""The s4d mixer (P23's LTI baseline) beyond the registry contract: its FFT kernel equals the time-invariant
scan, and the bidirectional form sees the future while the causal one does not."""
from __future__ import annotations

import torch

import attnlab.mixers as mixers
from attnlab.ops.selective_scan import selective_scan_reference

F64 = dict(atol=1e-10, rtol=1e-10)


def _make(name, dim=8, dtype=torch.float64, **kw):
    torch.manual_seed(0)
    return mixers.create(name, dim, **kw).to(dtype).eval()


def test_s4d_kernel_equals_the_time_invariant_scan():
    """The FFT-kernel SSM of s4d equals the token loop with constant delta and fixed B, C."""
    m = _make("s4d", 6, d_state=4)
    x = torch.randn(2, 21, m.d_inner, dtype=torch.float64)
    y = m.ssm(x, None)
    dt = torch.exp(m.log_dt).view(1, -1, 1).expand(2, -1, 21)
    ref = selective_scan_reference(x.transpose(1, 2), dt, -torch.exp(m.A_log), m.B, m.C, m.D).transpose(1, 2)
    torch.testing.assert_close(y, ref, **F64)


def test_bidirectional_sees_the_future_causal_does_not(future_influence):
    m = _make("s4d", 8)
    assert future_influence(m, causal=True) < 1e-12  # FFT round-off ~1e-18
    assert future_influence(m, causal=False) > 1e-6
