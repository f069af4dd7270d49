"""attnlab.ops.rope: the op against the rotation-matrix reference, hand-computed rotations, the relative-position
property, float64 angles at large positions, and bad input named.

Tolerances: fp64 1e-12, fp32 2e-6 (one rounding of a product of unit-norm rotations); backward the same.
"""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.ops.rope import LAYOUTS, apply_rope, apply_rope_reference, rope_cos_sin, rope_inv_freq, rope_pair_index

TOL = {torch.float64: 1e-12, torch.float32: 2e-6}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(1, 1, 1, 2), (2, 3, 7, 8), (1, 2, 33, 16)])
@pytest.mark.parametrize("base", [10000.0, 500.0])
def test_op_matches_rotation_matrix_reference_forward_and_backward(assert_close, dtype, layout, shape, base):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, dtype=dtype, generator=g, requires_grad=True)
    pos = torch.randint(0, 5000, (shape[2],), generator=g)
    assert_close(apply_rope(x, pos, base=base, layout=layout), apply_rope_reference(x, pos, base=base, layout=layout),
                 atol=TOL[dtype], rtol=TOL[dtype], grads_of=[x])


def test_per_sequence_positions_equal_one_call_per_sequence(assert_close):
    x = torch.randn(3, 2, 5, 8, dtype=torch.float64)
    pos = torch.tensor([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11], [3, 3, 3, 3, 3]])
    out = apply_rope(x, pos)
    for b in range(3):
        assert_close(out[b:b + 1], apply_rope(x[b:b + 1], pos[b]), atol=0, rtol=0)
    assert_close(out, apply_rope_reference(x, pos), atol=1e-12, rtol=1e-12)


def test_hand_computed_rotations():
    # D = 2: one pair, frequency 1: position m rotates (1, 0) by m rad
    x = torch.tensor([1.0, 0.0], dtype=torch.float64).view(1, 1, 1, 2).expand(1, 1, 3, 2)
    out = apply_rope(x, torch.tensor([0, 1, 2]))
    for m in range(3):
        torch.testing.assert_close(out[0, 0, m], torch.tensor([math.cos(m), math.sin(m)], dtype=torch.float64))
    # D = 4, base 100: frequencies 1 and 0.1; layouts pair (0, 2), (1, 3) ("half") or (0, 1), (2, 3)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).view(1, 1, 1, 4)
    c1, s1, c2, s2 = math.cos(1), math.sin(1), math.cos(0.1), math.sin(0.1)
    half = [1 * c1 - 3 * s1, 2 * c2 - 4 * s2, 1 * s1 + 3 * c1, 2 * s2 + 4 * c2]
    inter = [1 * c1 - 2 * s1, 1 * s1 + 2 * c1, 3 * c2 - 4 * s2, 3 * s2 + 4 * c2]
    torch.testing.assert_close(apply_rope(x, torch.tensor([1]), base=100.0)[0, 0, 0], torch.tensor(half, dtype=torch.float64))
    torch.testing.assert_close(apply_rope(x, torch.tensor([1]), base=100.0, layout="interleaved")[0, 0, 0],
                               torch.tensor(inter, dtype=torch.float64))
    assert rope_pair_index(4, "half")[1].tolist() == [2, 3]
    assert rope_inv_freq(4, 100.0).tolist() == [1.0, 0.1]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_scores_depend_only_on_the_position_difference(layout):
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 1, 1, 1, 16, dtype=torch.float64, generator=g)
    score = lambda m, n: (apply_rope(q, torch.tensor([m]), layout=layout)  # noqa: E731
                          * apply_rope(k, torch.tensor([n]), layout=layout)).sum()
    assert abs(score(3, 1) - score(1003, 1001)) < 1e-10
    assert abs(score(3, 1) - score(1, 3)) > 1e-3  # and the order matters


def test_large_positions_keep_float64_angles():
    pos = torch.tensor([100_000, 1_000_000])
    cos, _ = rope_cos_sin(pos, 8, dtype=torch.float32)
    exact = torch.cos(pos.double()[:, None] * rope_inv_freq(8))
    # float32 products of the angles would be off by ~m * 6e-8 rad (0.06 rad at m = 1e6)
    assert (cos.double() - exact).abs().max() < 1e-6


def test_bad_input_is_named():
    x = torch.randn(1, 1, 4, 6)
    with pytest.raises(ValueError, match=r"x: expected an even head dim"):
        apply_rope(torch.randn(1, 1, 4, 5), torch.arange(4))
    with pytest.raises(ValueError, match=r"positions: expected shape \(N,\) or \(B, N\) with N = 4"):
        apply_rope(x, torch.arange(5))
    with pytest.raises(TypeError, match=r"positions: expected an integer tensor"):
        apply_rope(x, torch.arange(4.0))
    with pytest.raises(ValueError, match=r"layout: expected one of \['half', 'interleaved'\]"):
        apply_rope(x, torch.arange(4), layout="pairs")
    with pytest.raises(ValueError, match=r"base: expected a number > 1"):
        apply_rope(x, torch.arange(4), base=1.0)
