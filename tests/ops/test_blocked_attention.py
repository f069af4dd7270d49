"""attnlab.ops.blocked_attention (P06's query-blocked exact attention) against dense attention.

Tolerances: fp64 1e-12 (forward and gradients); fp32 2e-6 forward / 1e-5 gradients; bf16 inputs (computed in
fp32, rounded to bf16 once) 1e-2 against the fp32 reference.
"""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.ops.blocked_attention import blocked_attention, blocked_attention_reference, query_blocks

TOL = {torch.float64: (1e-12, 1e-12), torch.float32: (2e-6, 1e-5)}


def _qkv(b, h, n, m, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n, d, generator=g, dtype=dtype)
    k, v = (torch.randn(b, h, m, d, generator=g, dtype=dtype) for _ in range(2))
    return [t.requires_grad_(True) for t in (q, k, v)]


def _mask(b, m, seed=1):
    g = torch.Generator().manual_seed(seed)
    kpm = torch.rand(b, m, generator=g) > 0.3
    kpm[0, 0] = False                 # a leading pad: causal query 0 of example 0 sees no key
    if b > 1:
        kpm[1] = False                # example 1: only its last key is real
        kpm[1, -1] = True
    return kpm


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("n,block", [(1, 1), (17, 4), (33, 33), (40, 64), (129, 16)])
def test_matches_dense_forward_and_backward(assert_close, dtype, causal, masked, n, block):
    q, k, v = _qkv(2, 3, n, n, 8, dtype)
    kpm = _mask(2, n) if masked else None
    tol_fwd, tol_bwd = TOL[dtype]
    assert_close(blocked_attention(q, k, v, block_size=block, causal=causal, key_padding_mask=kpm),
                 blocked_attention_reference(q, k, v, causal=causal, key_padding_mask=kpm),
                 atol=tol_fwd, rtol=tol_fwd, grad_atol=tol_bwd, grad_rtol=tol_bwd, grads_of=[q, k, v])


@pytest.mark.parametrize("causal", [False, True])
def test_more_keys_than_queries_and_a_value_width(assert_close, causal):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(1, 2, 11, 4, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 2, 19, 4, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 2, 19, 6, generator=g, dtype=torch.float64, requires_grad=True)
    assert_close(blocked_attention(q, k, v, block_size=4, causal=causal, scale=0.3),
                 blocked_attention_reference(q, k, v, causal=causal, scale=0.3),
                 atol=1e-12, rtol=1e-12, grads_of=[q, k, v])


def test_hand_computed_two_tokens():
    # q = k = [[1], [0]], v = [[1], [3]], scale 1: row 0 softmax(1, 0) -> weights (e, 1) / (e + 1);
    # row 1 sees logits (0, 0) -> the mean 2. Causal: row 0 sees only key 0 -> 1.
    q = k = torch.tensor([[[[1.0], [0.0]]]], dtype=torch.float64)
    v = torch.tensor([[[[1.0], [3.0]]]], dtype=torch.float64)
    e = math.e
    out = blocked_attention(q, k, v, block_size=1, scale=1.0)
    torch.testing.assert_close(out.flatten(), torch.tensor([(e + 3) / (e + 1), 2.0], dtype=torch.float64))
    out = blocked_attention(q, k, v, block_size=1, scale=1.0, causal=True)
    torch.testing.assert_close(out.flatten(), torch.tensor([1.0, 2.0], dtype=torch.float64))


def test_rows_without_a_visible_key_are_zero_with_zero_gradient():
    q, k, v = _qkv(1, 2, 5, 5, 4, torch.float64)
    kpm = torch.tensor([[False, False, True, True, True]])
    out = blocked_attention(q, k, v, block_size=2, causal=True, key_padding_mask=kpm)
    assert torch.equal(out[:, :, :2], torch.zeros_like(out[:, :, :2])) and out[:, :, 2:].abs().min() > 0
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.equal(q.grad[:, :, :2], torch.zeros_like(q.grad[:, :, :2]))


def test_gradcheck_fp64():
    q, k, v = _qkv(1, 2, 7, 7, 3, torch.float64)
    kpm = torch.tensor([[True, False, True, True, True, False, True]])
    assert torch.autograd.gradcheck(
        lambda a, b, c: blocked_attention(a, b, c, block_size=3, causal=True, key_padding_mask=kpm), (q, k, v))


def test_bf16_is_computed_in_fp32_and_rounded_once():
    q, k, v = (t.detach() for t in _qkv(2, 2, 50, 50, 16, torch.float32))
    ref = blocked_attention_reference(q, k, v, causal=True)
    out = blocked_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), block_size=16, causal=True)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=1e-2, rtol=1e-2)


def test_query_blocks_cover_the_sequence_once():
    assert query_blocks(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert query_blocks(3, 8) == [(0, 3)]


@pytest.mark.parametrize("block", [0, -1, 2.5, True])
def test_bad_block_size(block):
    q, k, v = _qkv(1, 1, 4, 4, 2, torch.float32)
    with pytest.raises((ValueError, TypeError), match="block_size: expected a positive int"):
        blocked_attention(q, k, v, block_size=block)


def test_bad_mask_shape():
    q, k, v = _qkv(2, 1, 4, 4, 2, torch.float32)
    with pytest.raises(ValueError, match="key_padding_mask"):
        blocked_attention(q, k, v, key_padding_mask=torch.ones(2, 5, dtype=torch.bool))
