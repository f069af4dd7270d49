"""attnlab.layers.norm: RMSNorm against a hand-computed case, ChannelLayerNorm against LayerNorm over C, make_norm."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnlab.layers.norm import ChannelLayerNorm, RMSNorm, make_norm


def test_rmsnorm_hand_computed_and_against_torch():
    norm = RMSNorm(2, eps=0.0)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0]))
    # rms of (3, 4) is sqrt(12.5)
    torch.testing.assert_close(norm(torch.tensor([[3.0, 4.0]])), torch.tensor([[3.0, 8.0]]) / 12.5 ** 0.5)
    torch.manual_seed(0)
    x = torch.randn(3, 7, 5, dtype=torch.float64, requires_grad=True)
    ours = RMSNorm(5, eps=1e-5).double()
    with torch.no_grad():
        ours.weight.normal_()
    ref = F.rms_norm(x, (5,), ours.weight, eps=1e-5)
    torch.testing.assert_close(ours(x), ref, atol=1e-12, rtol=1e-12)
    assert torch.autograd.gradcheck(ours, (x,))


def test_channel_layernorm_normalises_over_channels_of_a_map():
    torch.manual_seed(0)
    norm = ChannelLayerNorm(4).double()
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    want = F.layer_norm(x.permute(0, 2, 3, 1), (4,), norm.weight, norm.bias, norm.eps).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), want, atol=1e-12, rtol=1e-12)


def test_make_norm_choices():
    assert isinstance(make_norm("layernorm", 8), torch.nn.LayerNorm)
    assert isinstance(make_norm("rmsnorm", 8), torch.nn.RMSNorm)
    with pytest.raises(ValueError, match=r"norm: expected one of"):
        make_norm("batchnorm", 8)
