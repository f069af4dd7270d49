"""attnlab.ops.taylor_attention (P08's Approximate attention): the linear-time form against the explicit polynomial
weights, the feature identity, positivity, decoding.

Tolerances: fp64 1e-10 (chunk sums of (1 + D + D^2)-dim products), fp32 2e-4 relative; gradients the same x 10.
"""
from __future__ import annotations

import pytest
import torch

from attnlab.ops.taylor_attention import (taylor_attention, taylor_attention_init, taylor_attention_reference,
                                          taylor_attention_step, taylor_features)

TOL = {torch.float64: 1e-10, torch.float32: 2e-4}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("shape, chunk", [((1, 1, 1, 2), 4), ((2, 3, 13, 4), 4), ((1, 2, 40, 8), 16)])
def test_linear_form_matches_reference(assert_close, dtype, causal, shape, chunk):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*shape, dtype=dtype, generator=g, requires_grad=True) for _ in range(3))
    kpm = torch.ones(shape[0], shape[2], dtype=torch.bool)
    kpm[0, -1] = shape[2] == 1
    tol = TOL[dtype]
    assert_close(taylor_attention(q, k, v, causal=causal, key_padding_mask=kpm, chunk_size=chunk, method="linear"),
                 taylor_attention_reference(q, k, v, causal=causal, key_padding_mask=kpm),
                 atol=tol, rtol=tol, grad_atol=10 * tol, grad_rtol=10 * tol, grads_of=[q, k, v])


def test_features_give_the_taylor_polynomial_and_weights_are_positive():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 5, 6, dtype=torch.float64, generator=g)
    x = (q * k).sum(-1) / 6 ** 0.5
    torch.testing.assert_close((taylor_features(q) * taylor_features(k)).sum(-1), 1 + x + x * x / 2)
    assert taylor_features(q).shape[-1] == 1 + 6 + 36
    # 1 + x + x^2/2 >= 1/2: with opposite q, k of any size the output stays a weighted average of v
    q = torch.full((1, 1, 2, 2), 10.0, dtype=torch.float64)
    k = torch.tensor([[[[-10.0, -10.0], [10.0, 10.0]]]], dtype=torch.float64)
    v = torch.tensor([[[[0.0], [1.0]]]], dtype=torch.float64)
    out = taylor_attention(q, k, v, causal=False)
    assert (out >= 0).all() and (out <= 1).all()


def test_decoding_steps_equal_the_causal_form():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 2, 9, 4, dtype=torch.float64, generator=g) for _ in range(3))
    state = taylor_attention_init(2, 2, 4, 4, dtype=torch.float64)
    steps = []
    for t in range(9):
        o, state = taylor_attention_step(q[:, :, t], k[:, :, t], v[:, :, t], state)
        steps.append(o)
    torch.testing.assert_close(torch.stack(steps, 2), taylor_attention_reference(q, k, v), atol=1e-10, rtol=1e-10)


def test_auto_picks_the_cheaper_form_with_the_same_result():
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, 20, 8, dtype=torch.float64, generator=g) for _ in range(3))
    lin = taylor_attention(q, k, v, method="linear", chunk_size=8)
    torch.testing.assert_close(taylor_attention(q, k, v), lin, atol=1e-10, rtol=1e-10)  # short: quadratic
    torch.testing.assert_close(taylor_attention(q, k, v, method="quadratic"), lin, atol=1e-10, rtol=1e-10)
    with pytest.raises(ValueError, match=r"method: expected one of \['auto', 'linear', 'quadratic'\]"):
        taylor_attention(q, k, v, method="fast")
