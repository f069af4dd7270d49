"""attnlab.ops.depthwise_conv against torch's grouped convolutions (the obvious reference).

causal_depthwise_conv (B, N, C) is conv1d with K - 1 zeros on the left; depthwise_conv (B, C, *grid)
is conv1d/2d/3d with groups = C and k // 2 zeros each side (centred) or k - 1 before (causal).
Tolerances: fp64 1e-12, fp32 1e-5 (same products, another summation order); forward and backward.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnlab.ops.depthwise_conv import causal_depthwise_conv, depthwise_conv

TOL = {torch.float64: dict(atol=1e-12, rtol=1e-12), torch.float32: dict(atol=1e-5, rtol=1e-5)}
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _grads(out, inputs, seed=1):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return torch.autograd.grad(out, inputs, g)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,c,k", [(1, 3, 4), (7, 5, 4), (33, 8, 3), (2, 4, 1)])
@pytest.mark.parametrize("bias", [False, True])
def test_causal_conv_equals_left_padded_conv1d(dtype, n, c, k, bias):
    torch.manual_seed(0)
    x = torch.randn(2, n, c, dtype=dtype, requires_grad=True)
    w = torch.randn(c, k, dtype=dtype, requires_grad=True)
    b = torch.randn(c, dtype=dtype, requires_grad=True) if bias else None
    y = causal_depthwise_conv(x, w, b)
    ref = F.conv1d(F.pad(x.transpose(1, 2), (k - 1, 0)), w[:, None], b, groups=c).transpose(1, 2)
    torch.testing.assert_close(y, ref, **TOL[dtype])
    inputs = [t for t in (x, w, b) if t is not None]
    for a, r in zip(_grads(y, inputs), _grads(ref, inputs)):
        torch.testing.assert_close(a, r, **TOL[dtype])


def test_causal_conv_hand_computed():
    x = torch.tensor([[[1.0], [2.0], [4.0]]])  # (B=1, N=3, C=1)
    w = torch.tensor([[10.0, 1.0]])  # y_t = 10 x_{t-1} + x_t
    torch.testing.assert_close(causal_depthwise_conv(x, w), torch.tensor([[[1.0], [12.0], [24.0]]]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grid,k", [((9,), (3,)), ((5, 7), (3, 3)), ((4, 5), (1, 5)), ((3, 4, 5), (3, 1, 3))])
@pytest.mark.parametrize("causal", [False, True])
def test_nd_conv_equals_grouped_conv(dtype, grid, k, causal):
    torch.manual_seed(0)
    c = 3
    u = torch.randn(2, c, *grid, dtype=dtype, requires_grad=True)
    w = torch.randn(c, *k, dtype=dtype, requires_grad=True)
    b = torch.randn(c, dtype=dtype, requires_grad=True)
    y = depthwise_conv(u, w, b, causal=causal)
    pads = []
    for kk in reversed(k):
        pads += [kk - 1, 0] if causal else [kk // 2, kk // 2]
    ref = CONV[len(grid)](F.pad(u, pads), w[:, None], b, groups=c)
    assert y.shape == u.shape
    torch.testing.assert_close(y, ref, **TOL[dtype])
    for a, r in zip(_grads(y, [u, w, b]), _grads(ref, [u, w, b])):
        torch.testing.assert_close(a, r, **TOL[dtype])


def test_gradcheck_float64():
    torch.manual_seed(0)
    x = torch.randn(1, 6, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(causal_depthwise_conv, (x, w))
    u = torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: depthwise_conv(a, b), (u, w2))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"weight: expected shape \(C, K\) with C=4"):
        causal_depthwise_conv(torch.randn(1, 5, 4), torch.randn(3, 2))
    with pytest.raises(ValueError, match=r"x: expected a tensor of rank 3"):
        causal_depthwise_conv(torch.randn(5, 4), torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"weight: expected odd kernel sizes for a centred conv"):
        depthwise_conv(torch.randn(1, 2, 5, 5), torch.randn(2, 2, 3))
