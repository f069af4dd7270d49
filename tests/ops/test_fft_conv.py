"""FFT long convolutions (Hyena, P15) vs dense Toeplitz references and torch's direct convolutions.

Tolerances: fp64 1e-10, fp32 atol 1e-4 / rtol 1e-4 (sums of up to ~100 products of unit-variance terms).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnlab.ops.fft_conv import fft_long_conv, fft_long_conv_nd, fft_long_conv_nd_reference, fft_long_conv_reference

TOL = {torch.float64: dict(atol=1e-10, rtol=1e-10), torch.float32: dict(atol=1e-4, rtol=1e-4)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n,m,causal", [(1, 1, True), (13, 13, True), (13, 4, True), (64, 64, True),
                                        (13, 25, False), (13, 5, False), (8, 15, False)])
def test_1d_fft_equals_direct_forward_and_backward(dtype, n, m, causal):
    u = torch.randn(2, 3, n, dtype=dtype, requires_grad=True)
    k = torch.randn(3, m, dtype=dtype, requires_grad=True)
    y1, y2 = fft_long_conv(u, k, causal), fft_long_conv_reference(u, k, causal)
    torch.testing.assert_close(y1, y2, **TOL[dtype])
    g = torch.randn_like(y1)
    for a, b in zip(torch.autograd.grad((y1 * g).sum(), [u, k]), torch.autograd.grad((y2 * g).sum(), [u, k])):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_1d_causal_matches_conv1d_and_is_causal():
    u, k = torch.randn(2, 3, 20, dtype=torch.float64), torch.randn(3, 20, dtype=torch.float64)
    direct = F.conv1d(F.pad(u, (19, 0)), k.flip(-1).unsqueeze(1), groups=3)
    torch.testing.assert_close(fft_long_conv(u, k), direct, **TOL[torch.float64])
    u2 = u.clone()
    u2[..., 11:] += 1.0
    torch.testing.assert_close(fft_long_conv(u2, k)[..., :11], fft_long_conv(u, k)[..., :11], **TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("grid,ks,causal", [((5, 7), (9, 13), False), ((5, 7), (3, 3), False), ((4, 6), (4, 6), True),
                                            ((3, 4, 5), (5, 7, 9), False), ((1, 6), (1, 11), False)])
def test_nd_fft_equals_direct(dtype, grid, ks, causal):
    u = torch.randn(2, 3, *grid, dtype=dtype, requires_grad=True)
    k = torch.randn(3, *ks, dtype=dtype, requires_grad=True)
    nd = len(grid)
    y1, y2 = fft_long_conv_nd(u, k, nd, causal), fft_long_conv_nd_reference(u, k, nd, causal)
    torch.testing.assert_close(y1, y2, **TOL[dtype])
    g = torch.randn_like(y1)
    for a, b in zip(torch.autograd.grad((y1 * g).sum(), [u, k]), torch.autograd.grad((y2 * g).sum(), [u, k])):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_nd_centred_matches_conv2d_same_and_is_linear_not_circular():
    u, k = torch.randn(2, 3, 6, 5, dtype=torch.float64), torch.randn(3, 11, 9, dtype=torch.float64)
    direct = F.conv2d(u, k.flip(-1, -2).unsqueeze(1), padding=(5, 4), groups=3)
    torch.testing.assert_close(fft_long_conv_nd(u, k, 2), direct, **TOL[torch.float64])
    # a single input at the corner must not wrap around to the opposite corner
    u = torch.zeros(1, 1, 6, 5, dtype=torch.float64)
    u[..., 0, 0] = 1.0
    k = torch.zeros(1, 11, 9, dtype=torch.float64)
    k[0, 5 - 1, 4 - 1] = 1.0  # offset (-1, -1): moves the impulse up-left, i.e. out of the grid
    assert fft_long_conv_nd(u, k, 2).abs().max() < 1e-12


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="k: expected odd"):
        fft_long_conv(torch.randn(1, 2, 5), torch.randn(2, 4), causal=False)
    with pytest.raises(TypeError, match="k: expected dtype"):
        fft_long_conv(torch.randn(1, 2, 5), torch.randn(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="k: expected leading dims"):
        fft_long_conv(torch.randn(1, 2, 5), torch.randn(3, 5))
    with pytest.raises(ValueError, match="dims"):
        fft_long_conv_nd(torch.randn(1, 2, 5, 5), torch.randn(2, 9, 9), 0)


@pytest.mark.parametrize("causal", [True, False])
def test_gradcheck_fp64(causal):
    u = torch.randn(1, 2, 5, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 5 if causal else 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: fft_long_conv(a, b, causal), (u, k), eps=1e-6, atol=1e-7)
    u2 = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    k2 = torch.randn(2, *((3, 4) if causal else (5, 7)), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: fft_long_conv_nd(a, b, 2, causal), (u2, k2), eps=1e-6, atol=1e-7)
