"""The bilevel_routing mixer (P10) beyond the registry contract: with every region routed and no LCE it is
multi-head attention, LCE is a depthwise conv of V added before the projection, a ViT with it trains."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import attnlab.mixers as mixers


def test_bilevel_all_regions_without_lce_is_multi_head_attention(softmax_like):
    torch.manual_seed(0)
    m = mixers.create("bilevel_routing", 16, num_heads=2, n_win=3, topk=9, lce_kernel=0).double()
    ref = softmax_like(16, 2, m.qkv.weight, m.qkv.bias, m.proj)
    x = torch.randn(2, 35, 16, dtype=torch.float64)
    torch.testing.assert_close(m(x, grid=(5, 7)), ref(x), atol=1e-12, rtol=1e-10)


def test_bilevel_lce_is_a_depthwise_conv_of_v_added_before_projection():
    torch.manual_seed(1)
    m = mixers.create("bilevel_routing", 8, num_heads=2, n_win=2, topk=4, lce_kernel=3).double()
    x = torch.randn(1, 20, 8, dtype=torch.float64)
    no_lce = mixers.create("bilevel_routing", 8, num_heads=2, n_win=2, topk=4, lce_kernel=0).double()
    no_lce.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("lce.")})
    v = F.linear(x, m.qkv.weight[16:], m.qkv.bias[16:])
    img = v.reshape(1, 4, 5, 8).permute(0, 3, 1, 2)
    lce = F.conv2d(img, m.lce.weight, m.lce.bias, padding=1, groups=8).permute(0, 2, 3, 1).reshape(1, 20, 8)
    want = no_lce(x, grid=(4, 5)) + F.linear(lce, m.proj.weight)
    torch.testing.assert_close(m(x, grid=(4, 5)), want, atol=1e-12, rtol=1e-10)


def test_bilevel_kwargs_are_checked():
    with pytest.raises(ValueError, match="lce_kernel: expected 0 \\(off\\) or an odd positive int"):
        mixers.create("bilevel_routing", 8, num_heads=2, lce_kernel=4)
    with pytest.raises(ValueError, match="num_heads: expected a divisor of dim=8"):
        mixers.create("bilevel_routing", 8, num_heads=3)


def test_vit_with_bilevel_routing_trains_a_step(vit_gradients):
    grads = vit_gradients("bilevel_routing", {"n_win": 2, "topk": 2})
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
