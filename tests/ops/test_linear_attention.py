"""Linear attention: chunkwise op vs token recurrence vs quadratic masked form (P12 baseline)."""
from __future__ import annotations

import pytest
import torch

from attnlab.ops.linear_attention import (
    linear_attention,
    linear_attention_quadratic,
    linear_attention_recurrent,
    linear_attention_step,
)

TOL = {torch.float32: dict(atol=2e-5, rtol=1e-5), torch.float64: dict(atol=1e-10, rtol=1e-10)}
# relu with the normaliser is ill-conditioned (phi(q)^T z can be ~0), so it is compared unnormalised
MAPS = [("elu+1", True), ("identity", False), ("relu", False)]


def _inputs(b, h, n, d, dv, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, x, generator=g, dtype=dtype, requires_grad=True) for x in (d, d, dv)]


def _fwd_bwd(fn, inputs, **kw):
    for t in inputs:
        t.grad = None
    o = fn(*inputs, **kw)
    g = torch.Generator().manual_seed(1)
    (o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum().backward()
    return o.detach(), [t.grad.clone() for t in inputs]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1, 4, 4, 8), (2, 3, 17, 8, 5, 4), (1, 2, 64, 16, 16, 16), (2, 2, 45, 8, 8, 7)])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("fmap,normalize", MAPS)
def test_chunkwise_equals_recurrence_and_quadratic(dtype, shape, causal, fmap, normalize):
    b, h, n, d, dv, c = shape
    inputs = _inputs(b, h, n, d, dv, dtype)
    kw = dict(causal=causal, feature_map=fmap, normalize=normalize)
    o, g = _fwd_bwd(linear_attention, inputs, chunk_size=c, **kw)
    for ref in (linear_attention_recurrent, linear_attention_quadratic):
        o_r, g_r = _fwd_bwd(ref, inputs, **kw)
        torch.testing.assert_close(o, o_r, **TOL[dtype])
        for a, r in zip(g, g_r):
            torch.testing.assert_close(a, r, **TOL[dtype])


def test_key_mask_equals_explicit_sum_over_real_keys():
    q, k, v = (t.detach() for t in _inputs(1, 2, 12, 4, 3, torch.float64))
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, 5:] = False
    o = linear_attention(q, k, v, causal=False, key_mask=mask, chunk_size=4)
    phi = lambda x: torch.nn.functional.elu(x) + 1  # noqa: E731
    num = torch.einsum("bhnd,bhmd,bhme->bhne", phi(q), phi(k[:, :, :5]), v[:, :, :5])
    den = torch.einsum("bhnd,bhmd->bhn", phi(q), phi(k[:, :, :5]))[..., None]
    torch.testing.assert_close(o, num / (den + 1e-6), atol=1e-12, rtol=1e-10)


def test_gradcheck_float64():
    inputs = _inputs(1, 2, 7, 3, 2, torch.float64)
    for causal in (True, False):
        assert torch.autograd.gradcheck(lambda q, k, v: linear_attention(q, k, v, causal=causal, chunk_size=3), inputs)


@pytest.mark.parametrize("fmap,normalize", MAPS)
def test_step_by_step_decoding_equals_parallel(fmap, normalize):
    q, k, v = (t.detach() for t in _inputs(2, 2, 23, 4, 3, torch.float64))
    o = linear_attention(q, k, v, causal=True, feature_map=fmap, normalize=normalize, chunk_size=8)
    state = torch.zeros(2, 2, 4, 3 + int(normalize), dtype=torch.float64)
    outs = []
    for t in range(23):
        o_t, state = linear_attention_step(q[:, :, t], k[:, :, t], v[:, :, t], state, feature_map=fmap, normalize=normalize)
        assert state.shape == (2, 2, 4, 3 + int(normalize))
        outs.append(o_t)
    torch.testing.assert_close(torch.stack(outs, 2), o, atol=1e-10, rtol=1e-10)


def test_causal_future_does_not_leak():
    q, k, v = (t.detach() for t in _inputs(1, 2, 20, 4, 4, torch.float64))
    o = linear_attention(q, k, v, causal=True, chunk_size=8)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 11:] += 3 * torch.randn_like(k2[:, :, 11:])
    v2[:, :, 11:] += 3 * torch.randn_like(v2[:, :, 11:])
    o2 = linear_attention(q, k2, v2, causal=True, chunk_size=8)
    torch.testing.assert_close(o2[:, :, :11], o[:, :, :11], atol=1e-12, rtol=0)
    assert not torch.allclose(o2[:, :, 11:], o[:, :, 11:])


def test_bad_input_errors():
    q = torch.randn(1, 2, 5, 4)
    with pytest.raises(ValueError, match="k: expected the shape of q"):
        linear_attention(q, torch.randn(1, 2, 6, 4), torch.randn(1, 2, 5, 4))
    with pytest.raises(ValueError, match="feature_map: expected one of"):
        linear_attention(q, q, q, feature_map="cos")
    with pytest.raises(ValueError, match="chunk_size: expected a positive int"):
        linear_attention(q, q, q, chunk_size=0)
