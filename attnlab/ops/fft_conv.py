"""Long convolutions by FFT (Hyena, P15; the LTI SSM kernel of S4D), 1-D and N-D, with direct references.

Layout: channels first. ``u`` (B, C, N) for 1-D, (B, C, *grid) for N-D; the
kernel ``k`` broadcasts against ``u`` without its last (spatial) dims, e.g.
(C, m) or (B, C, m). Two kernel conventions:

* causal: ``k`` of length m, offsets 0..m-1, ``y[i] = sum_{o=0}^{m-1} k[o] u[i-o]``
  (u = 0 outside [0, N)). In N-D this is the "top-left quadrant" convolution of
  the official Hyena N-D code: y[i] sees u[j] with j <= i in every axis.
* centred (``causal=False``): ``k`` of odd length m = 2r+1, offsets -r..r,
  ``y[i] = sum_{o=-r}^{r} k[o+r] u[i-o]`` ('same' output, zero padding). With
  m = 2N-1 every token sees every other token (the bidirectional image case).

The FFT size per axis is the smallest even size >= N + m - 1 - offset, which is
exactly what a *linear* (not circular) convolution needs for the N outputs kept,
so results equal the direct convolution (``*_reference``: a dense Toeplitz
matrix, O(N^2), built by indexing, independent of the FFT).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from attnlab.utils.checks import check_tensor, describe, fail
from attnlab.utils.precision import fp32_op

__all__ = ["fft_long_conv", "fft_long_conv_reference", "fft_long_conv_nd", "fft_long_conv_nd_reference"]


def _offsets(sizes: Sequence[int], ksizes: Sequence[int], causal: bool, arg: str = "k") -> list[int]:
    """Per axis, the kernel index of offset 0 (0 when causal, r = (m-1)/2 when centred)."""
    offs = []
    for n, m in zip(sizes, ksizes):
        if causal:
            offs.append(0)
        else:
            if m % 2 == 0:
                fail(arg, "odd kernel sizes (2r+1, centred) when causal=False", f"size {m} on an axis of length {n}")
            offs.append((m - 1) // 2)
    return offs


def _check_pair(u, k, nd: int):
    u = check_tensor("u", u, floating=True)
    k = check_tensor("k", k, floating=True)
    if u.dim() < nd + 1:
        fail("u", f"a tensor (..., C, {'*grid' if nd > 1 else 'N'}) with {nd} spatial dim(s)", describe(u))
    if k.dim() < nd:
        fail("k", f"a kernel with at least {nd} dim(s)", describe(k))
    if k.dtype != u.dtype:
        fail("k", f"dtype {u.dtype} (as u)", describe(k), TypeError)
    try:
        torch.broadcast_shapes(u.shape[:-nd], k.shape[:-nd])
    except RuntimeError:
        fail("k", f"leading dims broadcastable to u's {tuple(u.shape[:-nd])}", describe(k))
    return u, k


def _fft_conv(u: torch.Tensor, k: torch.Tensor, nd: int, causal: bool) -> torch.Tensor:
    sizes = u.shape[-nd:]
    ksizes = k.shape[-nd:]
    offs = _offsets(sizes, ksizes, causal)
    fft = [n + m - 1 - o for n, m, o in zip(sizes, ksizes, offs)]
    fft = [s + (s % 2) for s in fft]
    dims = tuple(range(-nd, 0))
    uf = torch.fft.rfftn(u, s=fft, dim=dims)
    kf = torch.fft.rfftn(k, s=fft, dim=dims)
    y = torch.fft.irfftn(uf * kf, s=fft, dim=dims)
    for ax, (n, o) in enumerate(zip(sizes, offs)):
        y = y.narrow(ax - nd, o, n)
    return y.to(u.dtype)


@fp32_op
def fft_long_conv(u: torch.Tensor, k: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """1-D long convolution by rfft: u (..., C, N), k (..., C, m) -> (..., C, N); O(N log N).

    ``causal=True``: offsets 0..m-1 (Hyena's causal long conv; m = N is the usual
    full-length filter). ``causal=False``: a centred kernel of odd length
    m = 2r+1 (offsets -r..r; m = 2N-1 for all pairs). See the module doc.
    """
    u, k = _check_pair(u, k, 1)
    return _fft_conv(u, k, 1, causal)


@fp32_op
def fft_long_conv_nd(u: torch.Tensor, k: torch.Tensor, dims: int, causal: bool = False) -> torch.Tensor:
    """N-D long convolution by rfftn over the last ``dims`` axes (Hyena N-D, P15).

    u (..., C, *grid), k (..., C, *ksize) -> (..., C, *grid). ``causal=False``
    (default, the bidirectional image case): centred kernels of odd sizes
    (2 r_a + 1 per axis; 2 n_a - 1 to reach the whole grid), 'same' output.
    ``causal=True``: the top-left-quadrant kernel of the official code
    (offsets 0..m_a-1 per axis). Linear, not circular, convolution.
    """
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        fail("dims", "a positive int (number of spatial axes)", describe(dims))
    u, k = _check_pair(u, k, dims)
    return _fft_conv(u, k, dims, causal)


def _toeplitz(k: torch.Tensor, sizes: Sequence[int], causal: bool) -> torch.Tensor:
    """Dense conv matrix T (..., Ntot, Ntot) with y_flat = T u_flat (row-major flattening of the grid)."""
    nd = len(sizes)
    ksizes = k.shape[-nd:]
    offs = _offsets(sizes, ksizes, causal)
    coords = torch.cartesian_prod(*[torch.arange(n) for n in sizes]).reshape(-1, nd)
    diff = coords[:, None, :] - coords[None, :, :]  # output i minus input j, per axis
    idx = diff + torch.tensor(offs)
    valid = ((idx >= 0) & (idx < torch.tensor(ksizes))).all(-1)
    flat = torch.zeros(idx.shape[:2], dtype=torch.long)
    stride = 1
    for ax in reversed(range(nd)):
        flat = flat + idx[..., ax].clamp(0, ksizes[ax] - 1) * stride
        stride *= ksizes[ax]
    kf = k.reshape(*k.shape[:-nd], math.prod(ksizes))
    return kf[..., flat] * valid.to(k.dtype)


@fp32_op
def fft_long_conv_reference(u: torch.Tensor, k: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """Reference for :func:`fft_long_conv`: the dense Toeplitz matrix times u, O(N^2)."""
    u, k = _check_pair(u, k, 1)
    t = _toeplitz(k, u.shape[-1:], causal)
    return torch.einsum("...ij,...j->...i", t, u)


@fp32_op
def fft_long_conv_nd_reference(u: torch.Tensor, k: torch.Tensor, dims: int, causal: bool = False) -> torch.Tensor:
    """Reference for :func:`fft_long_conv_nd`: dense (Ntot x Ntot) conv matrix over the flattened grid."""
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        fail("dims", "a positive int (number of spatial axes)", describe(dims))
    u, k = _check_pair(u, k, dims)
    sizes = u.shape[-dims:]
    t = _toeplitz(k, sizes, causal)
    y = torch.einsum("...ij,...j->...i", t, u.reshape(*u.shape[:-dims], -1))
    return y.reshape(u.shape)
