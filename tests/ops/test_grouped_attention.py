"""attnlab.ops.grouped_attention (P27 FIT): the reshaped fast paths against dense masked attention, the masks and
the window order by hand, causality of the shifted read.

Tolerances: fp64 1e-11 (forward and gradients); fp32 2e-5 / 1e-4.
"""
from __future__ import annotations

import pytest
import torch

from attnlab.ops.attention import attention_reference
from attnlab.ops.grouped_attention import (
    group_attention,
    group_attention_reference,
    group_causal_mask,
    group_cross_attention,
    group_cross_attention_reference,
    group_index,
    window_order,
)

TOL = {torch.float64: (1e-11, 1e-11), torch.float32: (2e-5, 1e-4)}


def _t(*shape, dtype, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).requires_grad_(True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n,t", [(1, 1), (12, 3), (15, 5), (64, 4), (63, 9)])
def test_group_attention_matches_dense_masked(assert_close, dtype, causal, n, t):
    q, k, v = (_t(2, 3, n, 8, dtype=dtype, seed=s) for s in range(3))
    fwd, bwd = TOL[dtype]
    assert_close(group_attention(q, k, v, num_groups=t, causal=causal),
                 group_attention_reference(q, k, v, num_groups=t, causal=causal), atol=fwd, rtol=fwd,
                 grad_atol=bwd, grad_rtol=bwd, grads_of=[q, k, v])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shift", [0, 1])
@pytest.mark.parametrize("t,m,n", [(1, 1, 1), (1, 2, 5), (4, 1, 3), (5, 3, 7), (16, 2, 8)])
def test_group_cross_attention_matches_dense_masked(assert_close, dtype, shift, t, m, n):
    q = _t(2, 2, t * m, 8, dtype=dtype, seed=0)
    k, v = _t(2, 2, t * n, 8, dtype=dtype, seed=1), _t(2, 2, t * n, 6, dtype=dtype, seed=2)
    fwd, bwd = TOL[dtype]
    grads = [q, k, v] if (t > 1 or not shift) else None  # t=1, shift=1: nothing to read, zeros everywhere
    assert_close(group_cross_attention(q, k, v, num_groups=t, shift=shift),
                 group_cross_attention_reference(q, k, v, num_groups=t, shift=shift), atol=fwd, rtol=fwd,
                 grad_atol=bwd, grad_rtol=bwd, grads_of=grads)


@pytest.mark.parametrize("op,ref,lq", [(group_attention, group_attention_reference, 24),
                                       (group_cross_attention, group_cross_attention_reference, 8)])
def test_key_padding_mask(assert_close, op, ref, lq):
    q = _t(2, 2, lq, 4, dtype=torch.float64, seed=0)
    k, v = _t(2, 2, 24, 4, dtype=torch.float64, seed=1), _t(2, 2, 24, 4, dtype=torch.float64, seed=2)
    kpm = torch.rand(2, 24, generator=torch.Generator().manual_seed(5)) > 0.4
    kpm[0, :6] = False  # the whole first group of example 0 is padding: its queries get zeros
    assert_close(op(q, k, v, num_groups=4, key_padding_mask=kpm), ref(q, k, v, num_groups=4, key_padding_mask=kpm),
                 atol=1e-11, rtol=1e-11, grads_of=[q, k, v])


def test_masks_and_orders_by_hand():
    assert group_index(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    m = group_causal_mask(3, 2)
    assert m[0].nonzero().flatten().tolist() == [0, 1]          # group 0 sees its own two latents
    assert m[3].nonzero().flatten().tolist() == [0, 1, 2, 3]    # group 1 sees groups 0 and 1
    assert m[5].nonzero().flatten().tolist() == list(range(6))
    # a 4 x 4 raster grid in 2 x 2 windows: window (0, 0) = tokens 0, 1, 4, 5, window (0, 1) = 2, 3, 6, 7, ...
    assert window_order((4, 4), (2, 2)).tolist() == [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]
    assert window_order((2, 6), (2, 3)).tolist() == [0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11]


def test_a_hand_made_group_read():
    """One head, scalar keys: group 1's query sees only keys 2 and 3 (values 10 and 20) with equal logits."""
    q = torch.zeros(1, 1, 2, 1, dtype=torch.float64)
    k = torch.zeros(1, 1, 4, 1, dtype=torch.float64)
    v = torch.tensor([1.0, 3.0, 10.0, 20.0], dtype=torch.float64).reshape(1, 1, 4, 1)
    assert group_cross_attention(q, k, v, num_groups=2).flatten().tolist() == [2.0, 15.0]
    assert group_cross_attention(q, k, v, num_groups=2, shift=1).flatten().tolist() == [0.0, 2.0]


def test_shifted_read_is_causal_in_groups():
    """With shift=1 nothing of group j or later reaches queries of group j: perturb keys and values from group 2 on."""
    q, k, v = (torch.randn(1, 2, 4 * s, 4, dtype=torch.float64) for s in (2, 3, 3))
    out = group_cross_attention(q, k, v, num_groups=4, shift=1)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 6:] += 5.0
    v2[:, :, 6:] -= 3.0
    out2 = group_cross_attention(q, k2, v2, num_groups=4, shift=1)
    torch.testing.assert_close(out2[:, :, :6], out[:, :, :6], atol=0, rtol=0)  # groups 0..2 read groups -1..1
    assert (out2[:, :, 6:] - out[:, :, 6:]).abs().max() > 0.1


def test_one_group_is_dense_attention():
    q, k, v = (torch.randn(1, 2, 10, 4, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(group_attention(q, k, v, num_groups=1), attention_reference(q, k, v), atol=1e-12,
                               rtol=1e-12)


def test_bad_input_is_named():
    q = torch.randn(1, 1, 10, 4)
    with pytest.raises(ValueError, match="q: expected a length divisible by num_groups=3"):
        group_attention(q, q, q, num_groups=3)
    with pytest.raises(ValueError, match="shift: expected 0"):
        group_cross_attention(q, q, q, num_groups=2, shift=2)
    with pytest.raises(ValueError, match=r"grid: expected sides divisible by the window \(3, 3\)"):
        window_order((4, 4), (3, 3))
    with pytest.raises(ValueError, match="k: expected as many tokens as q"):
        group_attention(q, torch.randn(1, 1, 8, 4), torch.randn(1, 1, 8, 4), num_groups=2)
