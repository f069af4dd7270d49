"""Stochastically subsampled attention (P28): key sampling, gathered path vs dense-masked reference."""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.ops.attention import attention_reference
from attnlab.ops.subsampled_attention import sample_keys, subsampled_attention, subsampled_attention_reference

TOL = {torch.float32: dict(atol=2e-5, rtol=1e-4), torch.float64: dict(atol=1e-12, rtol=1e-10)}

# (n, block, mode, causal, rate): odd lengths, blocks not dividing n, rate 1 (dense)
CASES = [
    (9, 9, "unstructured", False, 2.0), (13, 4, "unstructured", True, 3.0), (17, 5, "local", False, 2.0),
    (17, 5, "local", True, 2.5), (7, 3, "unstructured", False, 1.0), (20, 4, "local", True, 1.0),
    (31, 8, "unstructured", False, 4.0),
]


def _qkv(n, dtype, seed=0, b=2, h=3, d=4):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g, dtype=dtype).requires_grad_() for _ in range(3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("masked", [False, True])
def test_fast_equals_reference_forward_and_backward(case, dtype, masked):
    n, block, mode, causal, rate = case
    idx, val = sample_keys(2, n, rate=rate, block=block, mode=mode, causal=causal,
                           generator=torch.Generator().manual_seed(n))
    q, k, v = _qkv(n, dtype, seed=n + block)
    kpm = (torch.rand(2, n, generator=torch.Generator().manual_seed(1)) > 0.25) if masked else None
    kw = dict(block=block, causal=causal, key_padding_mask=kpm)
    o1 = subsampled_attention(q, k, v, idx, val, **kw)
    o2 = subsampled_attention_reference(q, k, v, idx, val, **kw)
    torch.testing.assert_close(o1, o2, **TOL[dtype])
    g = torch.randn_like(o1)
    for a, b in zip(torch.autograd.grad(o1, (q, k, v), g), torch.autograd.grad(o2, (q, k, v), g)):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_gradcheck_float64():
    q, k, v = _qkv(7, torch.float64, seed=4, b=1, h=1, d=2)
    idx, val = sample_keys(1, 7, rate=2.0, block=3, mode="local", causal=True, generator=torch.Generator().manual_seed(0))
    fn = lambda q, k, v: subsampled_attention(q, k, v, idx, val, block=3, causal=True)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_rate_one_is_dense_attention(causal):
    q, k, v = _qkv(19, torch.float64, seed=2)
    for mode, block in (("unstructured", 19), ("unstructured", 5), ("local", 4)):
        idx, val = sample_keys(2, 19, rate=1.0, block=block, mode=mode, causal=causal)
        out = subsampled_attention(q, k, v, idx, val, block=block, causal=causal)
        torch.testing.assert_close(out, attention_reference(q, k, v, causal=causal), atol=1e-12, rtol=1e-10)


def test_causal_future_keys_change_nothing_before():
    n, block = 23, 4
    idx, val = sample_keys(2, n, rate=3.0, block=block, mode="unstructured", causal=True,
                           generator=torch.Generator().manual_seed(3))
    q, k, v = _qkv(n, torch.float64, seed=8)
    out = subsampled_attention(q, k, v, idx, val, block=block, causal=True)
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[:, :, 11:] += torch.randn_like(k2[:, :, 11:])
    v2[:, :, 11:] += torch.randn_like(v2[:, :, 11:])
    out2 = subsampled_attention(q, k2, v2, idx, val, block=block, causal=True)
    torch.testing.assert_close(out2[:, :, :11], out[:, :, :11], atol=1e-12, rtol=0)


@pytest.mark.parametrize("mode", ["unstructured", "local"])
@pytest.mark.parametrize("causal", [False, True])
def test_sampled_sets_obey_the_scheme(mode, causal):
    n, block, rate = 37, 6, 3.0
    idx, val = sample_keys(4, n, rate=rate, block=block, mode=mode, causal=causal,
                           generator=torch.Generator().manual_seed(0))
    nb = math.ceil(n / block)
    assert idx.shape[:2] == (4, nb) and val.shape == idx.shape
    own_block = causal or mode == "local"
    for bi in range(4):
        for c in range(nb):
            keys = idx[bi, c][val[bi, c]].tolist()
            assert len(keys) == len(set(keys)), "a key drawn twice"
            start, end = c * block, min(c * block + block, n)
            own = set(range(start, end))
            outside = [j for j in keys if j not in own]
            avail = start if causal else (n - len(own) if own_block else n)
            assert len(outside if own_block else keys) == math.ceil(avail / rate)
            if own_block:
                assert own <= set(keys)
            if causal:
                assert max(keys) < end


def test_seeded_draws_are_reproducible_and_differ_between_seeds():
    a = sample_keys(2, 50, rate=4.0, block=50, generator=torch.Generator().manual_seed(5))
    b = sample_keys(2, 50, rate=4.0, block=50, generator=torch.Generator().manual_seed(5))
    c = sample_keys(2, 50, rate=4.0, block=50, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


def test_unstructured_draws_are_uniform():
    n, rate, draws = 40, 4.0, 3000
    idx, val = sample_keys(draws, n, rate=rate, block=n, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(idx[val], minlength=n).double()
    p = 10 / n  # ceil(40 / 4) keys per draw
    expected, sd = draws * p, math.sqrt(draws * p * (1 - p))
    assert (counts - expected).abs().max() < 5 * sd  # every key kept with probability 1/4 (+-5 sigma)


def test_local_draws_prefer_near_keys():
    n, block, draws = 64, 8, 2000
    idx, val = sample_keys(draws, n, rate=4.0, block=block, mode="local", generator=torch.Generator().manual_seed(0))
    c = 3  # query block [24, 32)
    counts = torch.bincount(idx[:, c][val[:, c]], minlength=n).double() / draws
    assert (counts[24:32] == 1).all()  # own block always kept
    near, far = counts[[22, 23, 32, 33]].mean(), counts[[0, 1, 62, 63]].mean()
    assert near > 3 * far and far > 0  # distance-biased, yet far keys remain reachable


def test_bad_input_is_named():
    q, k, v = _qkv(8, torch.float32)
    idx, val = sample_keys(2, 8, rate=2.0, block=4)
    with pytest.raises(ValueError, match="rate: expected a number >= 1"):
        sample_keys(2, 8, rate=0.5, block=4)
    with pytest.raises(ValueError, match="mode: expected one of"):
        sample_keys(2, 8, rate=2.0, block=4, mode="strided")
    with pytest.raises(ValueError, match="index: expected a long tensor of shape"):
        subsampled_attention(q, k, v, idx, val, block=3)
    bad = idx.clone()
    bad[0, 0, 0] = 8
    with pytest.raises(ValueError, match=r"index: expected key positions in \[0, 8\)"):
        subsampled_attention(q, k, v, bad, val, block=4)
    dup = idx.clone()
    dup[..., 1] = dup[..., 0]
    with pytest.raises(ValueError, match="index: expected distinct key positions"):
        subsampled_attention(q, k, v, dup, torch.ones_like(val), block=4)
