"""The strip_attention mixer (P09) beyond the registry contract: without reduction or compression it is
multi-head attention, it equals an explicit patch loop, a ViT with it trains, bad kwargs are named."""
from __future__ import annotations

import pytest
import torch

import attnlab.mixers as mixers
from attnlab.ops.attention import attention_reference


def test_strip_without_reduction_or_compression_is_multi_head_attention(softmax_like):
    torch.manual_seed(2)
    m = mixers.create("strip_attention", 12, num_heads=3, sr_ratio=1, qk_dim=12).double()
    w = torch.cat([m.q.weight, m.k.weight, m.v.weight])
    bias = torch.cat([m.q.bias, m.k.bias, m.v.bias])
    ref = softmax_like(12, 3, w, bias, m.proj)
    x = torch.randn(2, 15, 12, dtype=torch.float64)
    torch.testing.assert_close(m(x, grid=(3, 5)), ref(x), atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("grid", [(6, 4), (5, 7)])
def test_strip_matches_an_explicit_patch_loop(grid):
    torch.manual_seed(3)
    h, w = grid
    c, r, heads, dq = 8, 2, 2, 4
    m = mixers.create("strip_attention", c, num_heads=heads, sr_ratio=r, qk_dim=dq).double()
    x = torch.randn(2, h * w, c, dtype=torch.float64)
    img = x.reshape(2, h, w, c)
    reduced = []
    for i in range(0, h, r):  # each output token: the depthwise-weighted sum of its r x r patch (zeros outside)
        for j in range(0, w, r):
            acc = m.sr.bias.clone().expand(2, c)
            for a in range(r):
                for b in range(r):
                    if i + a < h and j + b < w:
                        acc = acc + img[:, i + a, j + b] * m.sr.weight[:, 0, a, b]
            reduced.append(acc)
    xr = m.sr_norm(torch.stack(reduced, 1))
    q = m.q(x).reshape(2, h * w, heads, dq // heads).transpose(1, 2)
    k = m.k(xr).reshape(2, -1, heads, dq // heads).transpose(1, 2)
    v = m.v(xr).reshape(2, -1, heads, c // heads).transpose(1, 2)
    want = m.proj(attention_reference(q, k, v).transpose(1, 2).reshape(2, h * w, c))
    torch.testing.assert_close(m(x, grid=grid), want, atol=1e-12, rtol=1e-10)


def test_strip_kwargs_are_checked():
    with pytest.raises(ValueError, match="qk_dim: expected a multiple of num_heads=2"):
        mixers.create("strip_attention", 8, num_heads=2, qk_dim=3)
    assert mixers.create("strip_attention", 64, num_heads=2).qk_dim == 8


def test_vit_with_strip_attention_trains_a_step(vit_gradients):
    grads = vit_gradients("strip_attention", {"sr_ratio": 2})
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
