"""The gated_mlp mixer (P08's MLP variant): the formula, no token mixing, attention's parameter count."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import attnlab.mixers as mixers


def test_formula_and_no_mixing_and_matched_parameters():
    torch.manual_seed(0)
    m = mixers.create("gated_mlp", 48).double()
    x = torch.randn(2, 5, 48, dtype=torch.float64)
    want = (F.silu(x @ m.gate.weight.T) * (x @ m.up.weight.T)) @ m.down.weight.T
    torch.testing.assert_close(m(x), want, atol=1e-12, rtol=1e-12)
    x2 = x.clone()
    x2[:, 0] += 1.0
    torch.testing.assert_close(m(x2)[:, 1:], m(x)[:, 1:], atol=0, rtol=0)
    attention = mixers.create("softmax", 48, num_heads=4, proj_bias=False)
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in attention.parameters()) == 4 * 48 * 48
