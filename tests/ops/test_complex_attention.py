"""attnlab.ops.complex_attention (CMHA, P18): the SDPA path against the literal formula, hand-computed scores,
RoPE at delta = 1, safety at the origin, the branch cut, positions for decoding, bad input named.

Tolerances: fp64 1e-11 (outputs and gradients; the literal sum and the dot product round differently),
fp32 5e-5 (scores of unit-size vectors summed over D/2 pairs, then softmax), gradients 2e-4 in fp32.
"""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.ops.complex_attention import (complex_attention, complex_attention_reference, complex_rotate,
                                           complex_scores_reference, polar)
from attnlab.ops.rope import apply_rope

TOL = {torch.float64: (1e-11, 1e-11), torch.float32: (5e-5, 2e-4)}


def _inputs(b, h, n, m, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n, d, dtype=dtype, generator=g, requires_grad=True)
    k, v = (torch.randn(b, h, m, d, dtype=dtype, generator=g, requires_grad=True) for _ in range(2))
    delta = torch.randn(h, d // 2, dtype=dtype, generator=g).requires_grad_()
    bias = torch.randn(h, d // 2, dtype=dtype, generator=g).requires_grad_()
    return q, k, v, delta, bias


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 2), (2, 3, 7, 7, 8), (1, 2, 33, 33, 16), (2, 2, 5, 9, 4)])
def test_sdpa_path_matches_the_literal_formula(assert_close, dtype, causal, shape):
    b, h, n, m, d = shape
    q, k, v, delta, bias = _inputs(b, h, n, m, d, dtype)
    kpm = torch.ones(b, m, dtype=torch.bool)
    kpm[-1, -2:] = m <= 2  # pad the last two keys of the last sequence (when there are more than two)
    atol, gtol = TOL[dtype]
    assert_close(complex_attention(q, k, v, delta, bias, causal=causal, key_padding_mask=kpm),
                 complex_attention_reference(q, k, v, delta, bias, causal=causal, key_padding_mask=kpm),
                 atol=atol, rtol=atol, grad_atol=gtol, grad_rtol=gtol, grads_of=[q, k, v, delta, bias])


def test_gradcheck_float64():
    q, k, v, delta, bias = _inputs(1, 2, 5, 5, 4, torch.float64, seed=3)
    assert torch.autograd.gradcheck(lambda *t: complex_attention(*t, causal=True), (q, k, v, delta, bias))


def test_hand_computed_score():
    # one head, D = 2: q = 1 + i (r = sqrt 2, theta = pi/4), k = -1 (r = 1, theta = pi); delta 0.5, b 0.25;
    # positions m = 3, n = 1, g_0 = 1: S = sqrt2 * cos(0.5 (pi/4 - pi) + 0.25 + 2)
    q = torch.tensor([1.0, 1.0], dtype=torch.float64).view(1, 1, 1, 2)
    k = torch.tensor([-1.0, 0.0], dtype=torch.float64).view(1, 1, 1, 2)
    delta = torch.tensor([[0.5]], dtype=torch.float64)
    bias = torch.tensor([[0.25]], dtype=torch.float64)
    expected = math.sqrt(2) * math.cos(0.5 * (math.pi / 4 - math.pi) + 0.25 + 2)
    s = complex_scores_reference(q, k, delta, bias, q_positions=torch.tensor([3]), k_positions=torch.tensor([1]))
    assert abs(s.item() - expected) < 1e-12
    fast = (complex_rotate(q, torch.tensor([3]), delta, bias) * complex_rotate(k, torch.tensor([1]), delta)).sum()
    assert abs(fast.item() - expected) < 1e-12


def test_delta_one_bias_zero_is_rope_with_unit_scale():
    q, k, _, _, _ = _inputs(2, 3, 6, 6, 8, torch.float64)
    ones, zeros = torch.ones(3, 4, dtype=torch.float64), torch.zeros(3, 4, dtype=torch.float64)
    rope = apply_rope(q, torch.arange(6)) @ apply_rope(k, torch.arange(6)).transpose(-1, -2)
    torch.testing.assert_close(complex_scores_reference(q, k, ones, zeros), rope, atol=1e-12, rtol=1e-12)


def test_polar_is_safe_at_the_origin():
    x = torch.zeros(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    delta = torch.full((2, 2), 0.37, dtype=torch.float64)
    complex_rotate(x, torch.arange(3), delta, delta).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() == 0
    r, theta = polar(torch.zeros(1, 2))
    assert r.item() == 0 and theta.item() == 0
    # next to the origin the gradient of r cos(delta theta + c) stays below 1 + |delta| per channel pair
    for scale in (1e-15, 1e-30):
        x = (torch.randn(1, 2, 3, 4) * scale).requires_grad_()
        out = complex_rotate(x, torch.arange(3), delta.float() * 3, delta.float())
        (g,) = torch.autograd.grad(out[..., 0].sum(), x)
        assert torch.isfinite(g).all() and g.abs().max() <= 1 + 3 * 0.37 + 1e-5


def test_official_eps_variant_blows_up_the_gradient_near_the_origin():
    x = torch.tensor([[[[1e-8, 1e-8]]]], dtype=torch.float64, requires_grad=True)
    delta = torch.full((1, 1), 0.5, dtype=torch.float64)
    (g_eps,) = torch.autograd.grad(complex_rotate(x, torch.tensor([0]), delta, eps=1e-9)[..., 0].sum(), x)
    (g_exact,) = torch.autograd.grad(complex_rotate(x, torch.tensor([0]), delta)[..., 0].sum(), x)
    assert g_exact.abs().max() < 1.5 and g_eps.abs().max() > 100


def test_branch_cut_behaviour_is_the_stated_one():
    k = torch.tensor([1.0, 0.0], dtype=torch.float64).view(1, 1, 1, 2)
    above = torch.tensor([-1.0, 1e-12], dtype=torch.float64).view(1, 1, 1, 2)   # theta = +pi
    below = torch.tensor([-1.0, -1e-12], dtype=torch.float64).view(1, 1, 1, 2)  # theta = -pi
    zero = torch.zeros(1, 1, dtype=torch.float64)
    for delta, jump in ((1.0, False), (2.0, False), (0.5, True)):
        d = torch.full((1, 1), delta, dtype=torch.float64)
        s_above = complex_scores_reference(above, k, d, zero).item()
        s_below = complex_scores_reference(below, k, d, zero).item()
        # delta = 0.5: cos(0.5 pi) = 0 on one side, cos(-0.5 pi) = 0 too; use the sines through a bias of pi/2
        if jump:
            b = torch.full((1, 1), math.pi / 2, dtype=torch.float64)
            s_above = complex_scores_reference(above, k, d, b).item()  # cos(pi) = -1
            s_below = complex_scores_reference(below, k, d, b).item()  # cos(0) = 1
            assert abs(s_above + 1) < 1e-9 and abs(s_below - 1) < 1e-9
        else:
            assert abs(s_above - s_below) < 1e-9
    assert polar(torch.tensor([-1.0, 0.0]))[1].item() == pytest.approx(math.pi)
    assert polar(torch.tensor([-1.0, -0.0]))[1].item() == pytest.approx(-math.pi)


def test_explicit_positions_give_the_decoding_row():
    q, k, v, delta, bias = _inputs(2, 2, 7, 7, 8, torch.float64)
    full = complex_attention(q, k, v, delta, bias, causal=True)
    last = complex_attention(q[:, :, -1:], k, v, delta, bias, q_positions=torch.tensor([6]))
    torch.testing.assert_close(last[:, :, 0], full[:, :, -1], atol=1e-12, rtol=1e-12)
    wrong = complex_attention(q[:, :, -1:], k, v, delta, bias)  # position 0: not the same row
    assert (wrong[:, :, 0] - full[:, :, -1]).abs().max() > 1e-3


def test_bad_input_is_named():
    q, k, v, delta, bias = _inputs(1, 2, 4, 4, 8, torch.float32)
    with pytest.raises(ValueError, match=r"delta: expected shape \(H, D/2\) = \(2, 4\)"):
        complex_attention(q, k, v, delta[:, :3], bias)
    with pytest.raises(ValueError, match=r"x: expected an even head dim"):
        polar(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"positions: expected shape"):
        complex_attention(q, k, v, delta, bias, q_positions=torch.arange(3))
