"""attnlab.ops.sliding_window against its dense reference and against SDPA with the same mask.

Tolerances: fp64 1e-11 (forward) / 1e-10 (gradients); fp32 2e-5 / 1e-4.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.ops.attention import attention
from attnlab.ops.sliding_window import sliding_window_attention, sliding_window_attention_reference, sliding_window_mask

TOL = {torch.float64: (1e-11, 1e-10), torch.float32: (2e-5, 1e-4)}


pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(b, h, n, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, h, n, d, generator=g, dtype=dtype) for _ in range(3))


def _compare(q, k, v, window, *, dtype, kpm=None, tile=None, **kw):
    """Both fast backends vs the reference: outputs and gradients under one random cotangent."""
    r = [t.clone().requires_grad_(True) for t in (q, k, v)]
    ref = sliding_window_attention_reference(*r, window, key_padding_mask=kpm, **kw)
    cot = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, r, cot)
    fwd, bwd = TOL[dtype]
    for backend in ("tiled", "dense"):
        a = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out = sliding_window_attention(*a, window, key_padding_mask=kpm, backend=backend,
                                       tile=tile if backend == "tiled" else None, **kw)
        grads = torch.autograd.grad(out, a, cot)
        torch.testing.assert_close(out, ref, atol=fwd, rtol=fwd, msg=lambda m, b=backend: f"{b}: {m}")
        for x, y in zip(grads, ref_grads):
            torch.testing.assert_close(x, y, atol=bwd, rtol=bwd, msg=lambda m, b=backend: f"{b} grad: {m}")


def test_mask_definition():
    m = sliding_window_mask(6, 3, causal=True)
    assert m[0].nonzero().flatten().tolist() == [0]
    assert m[4].nonzero().flatten().tolist() == [2, 3, 4]
    m = sliding_window_mask(6, 2, causal=False)
    assert m[0].nonzero().flatten().tolist() == [0, 1]  # cut at the start, not shifted
    assert m[3].nonzero().flatten().tolist() == [2, 3, 4]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n,window,tile", [(1, 1, None), (17, 4, None), (17, 4, 3), (64, 16, 8), (100, 33, 16),
                                           (50, 80, None), (257, 64, None)])
def test_matches_reference(dtype, causal, n, window, tile):
    q, k, v = _inputs(2, 2, n, 8, dtype)
    _compare(q, k, v, window, dtype=dtype, causal=causal, tile=tile)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [False, True])
def test_key_padding_mask(dtype, causal):
    q, k, v = _inputs(2, 2, 45, 8, dtype)
    kpm = torch.rand(2, 45, generator=torch.Generator().manual_seed(1)) > 0.5
    kpm[0, :20] = False  # queries whose whole window is padded get zeros
    _compare(q, k, v, 6, dtype=dtype, causal=causal, kpm=kpm, tile=8)


def test_agrees_with_sdpa_and_the_same_explicit_mask():
    q, k, v = _inputs(1, 3, 300, 16, torch.float32)
    mask = sliding_window_mask(300, 50, causal=True)
    ours = sliding_window_attention(q, k, v, 50, causal=True)
    theirs = attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=2e-5)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 80), window=st.integers(1, 40), causal=st.booleans(), tile=st.one_of(st.none(), st.integers(1, 24)),
       seed=st.integers(0, 10_000))
def test_random_configurations(n, window, causal, tile, seed):
    q, k, v = _inputs(1, 2, n, 4, torch.float64, seed)
    _compare(q, k, v, window, dtype=torch.float64, causal=causal, tile=tile)


def test_gradcheck_float64():
    q, k, v = (t.requires_grad_(True) for t in _inputs(1, 2, 13, 3, torch.float64))
    for causal in (False, True):
        for backend, tile in (("tiled", 3), ("dense", None)):
            fn = lambda *t, c=causal, b=backend, tl=tile: sliding_window_attention(  # noqa: E731
                *t, 4, causal=c, tile=tl, backend=b)
            assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_causal_ignores_the_future():
    q, k, v = _inputs(1, 2, 90, 8, torch.float64)
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    for t in (q2, k2, v2):
        t[:, :, 55:] += 3 * torch.randn_like(t[:, :, 55:])
    for backend, tile in (("tiled", 16), ("dense", None)):
        out = sliding_window_attention(q, k, v, 20, causal=True, tile=tile, backend=backend)
        out2 = sliding_window_attention(q2, k2, v2, 20, causal=True, tile=tile, backend=backend)
        torch.testing.assert_close(out2[:, :, :55], out[:, :, :55], atol=0, rtol=0)
        assert not torch.allclose(out2[:, :, 55:], out[:, :, 55:])


def test_bad_arguments_are_named():
    q, k, v = _inputs(1, 2, 10, 4, torch.float32)
    with pytest.raises(ValueError, match=r"window: expected a positive int"):
        sliding_window_attention(q, k, v, 0)
    with pytest.raises(TypeError, match=r"causal: expected a bool"):
        sliding_window_attention(q, k, v, 3, causal=1)
    with pytest.raises(ValueError, match=r"k, v: expected the same \(B, H, N\)"):
        sliding_window_attention(q, k[:, :, :5], v, 3)
