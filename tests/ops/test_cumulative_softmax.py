"""attnlab.ops.cumulative_softmax (P08's Non-approximate attention): the chunked form against the explicit (N, N)
reference, a hand-computed case, extreme scores, padding, the decoding step.

Tolerances: fp64 1e-12, fp32 1e-5 (weights <= 1, sums of N terms); gradients the same times 10.
"""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.ops.cumulative_softmax import (cumulative_softmax_attention, cumulative_softmax_attention_reference,
                                            cumulative_softmax_init, cumulative_softmax_step)

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n, chunk", [(1, 4), (7, 3), (33, 8), (64, 64), (50, 100)])
@pytest.mark.parametrize("padded", [False, True])
def test_chunked_form_matches_reference(assert_close, dtype, causal, n, chunk, padded):
    g = torch.Generator().manual_seed(n)
    s = (torch.randn(2, 3, n, dtype=dtype, generator=g) * 4).requires_grad_()
    v = torch.randn(2, 3, n, 5, dtype=dtype, generator=g, requires_grad=True)
    kpm = None
    if padded:
        kpm = torch.rand(2, n, generator=g) > 0.3
        kpm[0, : min(2, n)] = False  # leading padding: those rows see no key and give zeros
    tol = TOL[dtype]
    assert_close(cumulative_softmax_attention(s, v, causal=causal, key_padding_mask=kpm, chunk_size=chunk),
                 cumulative_softmax_attention_reference(s, v, causal=causal, key_padding_mask=kpm),
                 atol=tol, rtol=tol, grad_atol=10 * tol, grad_rtol=10 * tol, grads_of=[s, v])


def test_hand_computed_and_extreme_scores():
    s = torch.tensor([[[0.0, math.log(3.0), 500.0, -500.0]]], dtype=torch.float64)
    v = torch.tensor([[[[1.0], [5.0], [2.0], [7.0]]]], dtype=torch.float64)
    o = cumulative_softmax_attention(s, v, chunk_size=2)[0, 0, :, 0]
    assert abs(o[0] - 1.0) < 1e-12 and abs(o[1] - (1 + 3 * 5) / 4) < 1e-12  # weights 1 : 3
    assert abs(o[2] - 2.0) < 1e-12 and abs(o[3] - 2.0) < 1e-12  # exp(500) dominates, exp(-500) vanishes
    s32 = s.float().requires_grad_()
    out = cumulative_softmax_attention(s32, v.float(), chunk_size=2)
    (g,) = torch.autograd.grad(out.sum(), s32)
    assert torch.isfinite(out).all() and torch.isfinite(g).all()


def test_decoding_steps_equal_the_causal_form():
    g = torch.Generator().manual_seed(0)
    s, v = torch.randn(2, 3, 11, dtype=torch.float64, generator=g), torch.randn(2, 3, 11, 4, dtype=torch.float64, generator=g)
    state = cumulative_softmax_init(2, 3, 4, dtype=torch.float64)
    steps = []
    for t in range(11):
        o, state = cumulative_softmax_step(s[:, :, t], v[:, :, t], state)
        steps.append(o)
    torch.testing.assert_close(torch.stack(steps, 2), cumulative_softmax_attention_reference(s, v), atol=1e-12, rtol=0)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"v: expected shape \(B, H, N, Dv\) with \(B, H, N\) = \(1, 2, 3\)"):
        cumulative_softmax_attention(torch.randn(1, 2, 3), torch.randn(1, 2, 4, 5))
    with pytest.raises(ValueError, match=r"s: expected a tensor of rank 3"):
        cumulative_softmax_attention(torch.randn(1, 3), torch.randn(1, 2, 3, 5))
    with pytest.raises(ValueError, match=r"key_padding_mask: expected shape \(B, N\)"):
        cumulative_softmax_attention(torch.randn(1, 2, 3), torch.randn(1, 2, 3, 5), key_padding_mask=torch.ones(1, 4, dtype=torch.bool))
