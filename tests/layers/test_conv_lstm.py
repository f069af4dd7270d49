"""ConvLSTM: the equations step by step (a hand-written cell loop with the same weights), causality in time,
the layer-interactive input, gradients in fp64, bad input."""
from __future__ import annotations

import pytest
import torch

from attnlab.layers import ConvLSTM


def _by_hand(m, x, extra=None):
    b, t, _, h, w = x.shape
    hx = torch.zeros(b, m.hidden, h, w, dtype=x.dtype)
    cx = torch.zeros_like(hx)
    outs = []
    for s in range(t):
        inp = torch.cat([x[:, s], hx] + ([extra[:, s]] if extra is not None else []), 1)
        z = m.norm(m.gates(inp))
        n = m.hidden
        i, f, g, o = z[:, :n], z[:, n:2 * n], z[:, 2 * n:3 * n], z[:, 3 * n:]
        cx = torch.sigmoid(f) * cx + torch.sigmoid(i) * torch.tanh(g)
        hx = torch.sigmoid(o) * torch.tanh(cx)
        outs.append(hx)
    return torch.stack(outs, 1), cx


@pytest.mark.parametrize("interactive", [False, True])
def test_matches_the_cell_equations(assert_close, interactive):
    torch.manual_seed(0)
    m = ConvLSTM(3, 8, kernel_size=3, interactive=interactive).double()
    x = torch.randn(2, 4, 3, 5, 7, dtype=torch.float64, requires_grad=True)
    extra = torch.randn(2, 4, 8, 5, 7, dtype=torch.float64, requires_grad=True) if interactive else None
    wrt = [x] + ([extra] if interactive else []) + list(m.parameters())
    assert_close(m(x, extra), _by_hand(m, x, extra), atol=1e-12, rtol=1e-12, grads_of=wrt)


def test_a_step_depends_on_the_past_only():
    m = ConvLSTM(2, 4, kernel_size=5, interactive=True)
    x, e = torch.randn(1, 5, 2, 6, 6), torch.randn(1, 5, 4, 6, 6)
    y, _ = m(x, e)
    x2, e2 = x.clone(), e.clone()
    x2[:, 3:] += 1.0
    e2[:, 3:] -= 1.0
    y2, _ = m(x2, e2)
    torch.testing.assert_close(y2[:, :3], y[:, :3], atol=0, rtol=0)
    assert (y2[:, 3:] - y[:, 3:]).abs().max() > 1e-3


def test_gradcheck_float64():
    m = ConvLSTM(1, 4, kernel_size=3, interactive=True).double()
    x = torch.randn(1, 2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    e = torch.randn(1, 2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: m(a, b)[0], (x, e), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_groups_default_follows_p21_and_bad_input_is_named():
    assert ConvLSTM(3, 16).norm.num_groups == 2 and ConvLSTM(3, 4).norm.num_groups == 1
    with pytest.raises(ValueError, match="kernel_size: expected an odd int"):
        ConvLSTM(3, 4, kernel_size=4)
    with pytest.raises(ValueError, match="extra: expected the other layer's hidden states"):
        ConvLSTM(3, 4, interactive=True)(torch.randn(1, 2, 3, 4, 4))
    with pytest.raises(ValueError, match="extra: expected None"):
        ConvLSTM(3, 4)(torch.randn(1, 2, 3, 4, 4), torch.randn(1, 2, 4, 4, 4))
    with pytest.raises(ValueError, match=r"extra: expected shape \(1, 2, 4, 4, 4\)"):
        ConvLSTM(3, 4, interactive=True)(torch.randn(1, 2, 3, 4, 4), torch.randn(1, 2, 4, 3, 4))
