"""attnlab.layers.weight_init: trunc_normal_init_ draws the listed tensors, then every Linear, in order."""
from __future__ import annotations

import torch
from torch import nn

from attnlab.layers.weight_init import trunc_normal_init_


def test_draws_in_the_documented_order_with_zero_biases():
    net = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2, bias=False))
    pos = nn.Parameter(torch.empty(1, 5, 4))
    torch.manual_seed(7)
    trunc_normal_init_(net, [pos], std=0.5)
    torch.manual_seed(7)
    want_pos, want_w0, want_w2 = (nn.init.trunc_normal_(torch.empty(s), std=0.5) for s in ((1, 5, 4), (3, 4), (2, 3)))
    assert torch.equal(pos.data, want_pos) and torch.equal(net[0].weight.data, want_w0)
    assert torch.equal(net[2].weight.data, want_w2) and torch.equal(net[0].bias.data, torch.zeros(3))
    assert torch.equal(net[1].weight.data, torch.ones(3))  # not a Linear: untouched
    assert (pos.abs() <= 2.0).all()  # torch truncates at the absolute bounds [-2, 2], not at 2 std
