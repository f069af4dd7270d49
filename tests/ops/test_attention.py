"""attnlab.ops.attention (SDPA path) against attention_reference (explicit softmax).

Tolerances: fp64 1e-10 absolute; fp32 2e-5 absolute (fused vs explicit softmax
orderings differ by a few ulps times sqrt(N)); bf16 is compared with the fp32
reference at 3e-2 (bf16 has 8 bits of mantissa).
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.ops import attention, attention_reference

TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


def _qkv(b, h, n, d, dtype, m=None, requires_grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = n if m is None else m
    mk = lambda L: torch.randn(b, h, L, d, generator=g, dtype=dtype).requires_grad_(requires_grad)  # noqa: E731
    return mk(n), mk(m), mk(m)


def _padding(b, m, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(b, m, generator=g) > 0.3
    mask[:, 0] = True
    return mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1, 4), (2, 3, 7, 8), (1, 2, 33, 16), (2, 4, 64, 32)])
def test_forward_and_backward_match_reference(dtype, causal, masked, shape):
    b, h, n, d = shape
    q, k, v = _qkv(b, h, n, d, dtype, requires_grad=True)
    kpm = _padding(b, n) if masked else None
    out = attention(q, k, v, causal=causal, key_padding_mask=kpm)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), g)
    q2, k2, v2 = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    ref = attention_reference(q2, k2, v2, causal=causal, key_padding_mask=kpm)
    ref_grads = torch.autograd.grad(ref, (q2, k2, v2), g)
    tol = TOL[dtype]
    torch.testing.assert_close(out, ref, atol=tol, rtol=tol)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, atol=tol * 10, rtol=tol * 10)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 3), h=st.integers(1, 3), n=st.integers(1, 40), m=st.integers(1, 40),
    d=st.sampled_from([1, 4, 8, 17]), causal=st.booleans(), masked=st.booleans(), seed=st.integers(0, 1000),
)
def test_random_shapes_including_cross_attention(b, h, n, m, d, causal, masked, seed):
    q, k, v = _qkv(b, h, n, d, torch.float64, m=m, seed=seed)
    kpm = _padding(b, m, seed) if masked else None
    out = attention(q, k, v, causal=causal, key_padding_mask=kpm)
    ref = attention_reference(q, k, v, causal=causal, key_padding_mask=kpm)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    assert torch.isfinite(out).all()


def test_bfloat16_close_to_float32_reference():
    q, k, v = _qkv(2, 4, 50, 32, torch.float32)
    for causal in (False, True):
        out = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), causal=causal)
        assert out.dtype == torch.bfloat16
        ref = attention_reference(q, k, v, causal=causal)
        torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)


def test_gradcheck_float64_with_mask_and_causal():
    q, k, v = _qkv(1, 2, 6, 3, torch.float64, requires_grad=True)
    kpm = torch.tensor([[True, True, False, True, False, True]])
    assert torch.autograd.gradcheck(lambda a, b_, c: attention(a, b_, c, causal=True, key_padding_mask=kpm), (q, k, v))


def test_fully_masked_rows_give_zero_and_finite_gradients():
    q, k, v = _qkv(1, 1, 4, 8, torch.float64, requires_grad=True)
    kpm = torch.tensor([[False, False, True, True]])  # causal: queries 0 and 1 see no real key
    out = attention(q, k, v, causal=True, key_padding_mask=kpm)
    assert torch.equal(out[0, 0, :2], torch.zeros(2, 8, dtype=torch.float64))
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_causal_perturbing_future_keys_changes_nothing_before():
    q, k, v = _qkv(2, 2, 16, 8, torch.float64)
    out = attention(q, k, v, causal=True)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 10:] += 5.0
    v2[:, :, 10:] -= 5.0
    out2 = attention(q, k2, v2, causal=True)
    torch.testing.assert_close(out2[:, :, :10], out[:, :, :10], atol=1e-12, rtol=0)
    assert not torch.allclose(out2[:, :, 10:], out[:, :, 10:])


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"q": torch.randn(2, 3, 4)}, ValueError, r"q: expected a tensor of rank 4"),
        ({"k": torch.randn(1, 2, 5, 7)}, ValueError, r"k: expected head dim D = 8"),
        ({"v": torch.randn(1, 2, 4, 8)}, ValueError, r"v: expected the same number of keys M = 5"),
        ({"k": torch.randn(2, 2, 5, 8)}, ValueError, r"k, v: expected the same \(B, H\)"),
        ({"q": torch.randn(1, 2, 3, 8, dtype=torch.float64)}, TypeError, r"q, k, v: expected one dtype"),
        ({"key_padding_mask": torch.ones(1, 4, dtype=torch.bool)}, ValueError, r"key_padding_mask: expected shape \(B, N\) = \(1, 5\)"),
        ({"key_padding_mask": torch.ones(1, 5)}, TypeError, r"key_padding_mask: expected a bool tensor"),
        ({"attn_mask": torch.ones(3, 5)}, TypeError, r"attn_mask: expected a bool tensor"),
        ({"dropout_p": 1.5}, ValueError, r"dropout_p: expected a float in \[0, 1\)"),
        ({"scale": "big"}, TypeError, r"scale: expected a finite float"),
    ],
)
def test_bad_input_is_refused_with_a_named_argument(kwargs, exc, match):
    args = {"q": torch.randn(1, 2, 3, 8), "k": torch.randn(1, 2, 5, 8), "v": torch.randn(1, 2, 5, 8)}
    args.update(kwargs)
    q, k, v = args.pop("q"), args.pop("k"), args.pop("v")
    with pytest.raises(exc, match=match):
        attention(q, k, v, **args)
