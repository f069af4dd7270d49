"""attnlab.ops.axial (P19) against its dense masked reference.

Tolerances: fp64 1e-11 (forward) / 1e-10 (gradients); fp32 2e-5 / 1e-4.
"""
from __future__ import annotations

import math

import pytest
import torch

from attnlab.ops.axial import axial_attention, axial_attention_reference, axial_mask
from attnlab.ops.recording import record_attention

TOL = {torch.float64: (1e-11, 1e-10), torch.float32: (2e-5, 1e-4)}


pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(b, h, n, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, h, n, d, generator=g, dtype=dtype) for _ in range(3))


def test_mask_is_the_line_through_the_query():
    m = axial_mask((3, 4), axis=1).reshape(3, 4, 3, 4)
    assert m[1, 2].nonzero().tolist() == [[1, c] for c in range(4)]  # row 1
    m = axial_mask((3, 4), axis=0, causal=True).reshape(3, 4, 3, 4)
    assert m[2, 1].nonzero().tolist() == [[0, 1], [1, 1], [2, 1]]  # column 1 up to row 2
    m = axial_mask((2, 3, 4), axis=1).reshape(24, 24)
    assert (m.sum(1) == 3).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grid,axis", [((5, 7), 0), ((5, 7), 1), ((1, 9), 1), ((3, 4, 5), 0), ((3, 4, 5), 1), ((3, 4, 5), -1)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_reference(dtype, grid, axis, causal, masked):
    n = math.prod(grid)
    q, k, v = _inputs(2, 3, n, 8, dtype)
    kpm = None
    if masked:
        kpm = torch.rand(2, n, generator=torch.Generator().manual_seed(2)) > 0.4
        kpm[0, : n // 2] = False
    a = [t.clone().requires_grad_(True) for t in (q, k, v)]
    out = axial_attention(*a, grid, axis, causal=causal, key_padding_mask=kpm)
    cot = torch.randn_like(out)
    grads = torch.autograd.grad(out, a, cot)
    r = [t.clone().requires_grad_(True) for t in (q, k, v)]
    ref = axial_attention_reference(*r, grid, axis, causal=causal, key_padding_mask=kpm)
    ref_grads = torch.autograd.grad(ref, r, cot)
    fwd, bwd = TOL[dtype]
    torch.testing.assert_close(out, ref, atol=fwd, rtol=fwd)
    for x, y in zip(grads, ref_grads):
        torch.testing.assert_close(x, y, atol=bwd, rtol=bwd)


def test_gradcheck_float64():
    q, k, v = (t.requires_grad_(True) for t in _inputs(1, 2, 12, 3, torch.float64))
    for axis in (0, 1):
        for causal in (False, True):
            fn = lambda *t, a=axis, c=causal: axial_attention(*t, (3, 4), a, causal=c)  # noqa: E731
            assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_causal_column_attention_ignores_rows_below():
    q, k, v = _inputs(1, 2, 30, 4, torch.float64)
    out = axial_attention(q, k, v, (5, 6), 0, causal=True)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 18:] += 5.0  # rows 3, 4
    v2[:, :, 18:] -= 5.0
    out2 = axial_attention(q, k2, v2, (5, 6), 0, causal=True)
    torch.testing.assert_close(out2[:, :, :18], out[:, :, :18], atol=0, rtol=0)
    assert not torch.allclose(out2[:, :, 18:], out[:, :, 18:])


def test_recording_and_value_dim():
    q, k, _ = _inputs(1, 2, 12, 4, torch.float64)
    v = torch.randn(1, 2, 12, 6, dtype=torch.float64)
    with record_attention() as rec:
        out = axial_attention(q, k, v, (3, 4), 1)
    assert out.shape == (1, 2, 12, 6)
    probs = rec.maps["call0"][0]
    assert ((probs > 0) <= axial_mask((3, 4), 1)).all()
    torch.testing.assert_close(out, axial_attention(q, k, v, (3, 4), 1), atol=1e-12, rtol=1e-12)


def test_bad_arguments_are_named():
    q, k, v = _inputs(1, 2, 12, 4, torch.float32)
    with pytest.raises(ValueError, match=r"grid: expected a grid whose product equals"):
        axial_attention(q, k, v, (3, 5), 0)
    with pytest.raises(ValueError, match=r"axis: expected an axis of grid \(3, 4\)"):
        axial_attention(q, k, v, (3, 4), 2)
    with pytest.raises(TypeError, match=r"axis: expected an int"):
        axial_attention(q, k, v, (3, 4), "rows")
