"""Spectral gating: FFT over the token grid, a learnable global filter, inverse FFT (GFNet; SpectFormer, P04).

SpectFormer (Patro et al. 2023, P04) uses the GFNet global filter layer in its
first blocks and multi-head attention after them. The layer reshapes the tokens
to their (H, W) grid, takes ``rfft2`` (orthonormal), multiplies every frequency
by a learnable complex weight per channel, and returns with ``irfft2``. Because
it is a circular convolution with a learned kernel, it commutes with cyclic
shifts of the grid (tested), mixes all tokens in O(N log N) per channel, and
has no notion of a query.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.utils.checks import describe, fail
from attnlab.utils.precision import no_autocast, upcast
from attnlab.mixers.base import Capabilities, TokenMixer
from attnlab.mixers.registry import register

__all__ = ["SpectralGating"]


@register("spectral_gating", test_kwargs={"size": (3, 4)}, test_grid=(3, 4))
class SpectralGating(TokenMixer):
    """Global filter layer (GFNet / SpectFormer P04): x (B, N, C) on grid (H, W) -> (B, N, C).

    ``y = irfft2(rfft2(x, norm="ortho") * W, s=(H, W), norm="ortho")`` with a
    learnable complex filter ``W`` of shape (H, W // 2 + 1, C), stored as the
    real parameter ``complex_weight`` (H, W // 2 + 1, C, 2) initialised to
    ``0.02 * randn`` as in the official code. A grid different from ``size``
    gets the filter bilinearly resized in frequency (GFNet's recipe for a new
    resolution), so one model runs at several image sizes. bf16 / fp16 input and
    weights, and autocast, are computed in float32 (torch has no bf16 FFT; fp16 FFTs
    are inaccurate and restricted to powers of two); the base class casts back.

    Args:
        dim: channel width C.
        size: the grid (H, W) the filter is created for.
        init_std: standard deviation of the filter's initial values.
    """

    capabilities = Capabilities(
        causal=False, bidirectional=True, grid="required", grid_dims=(2,), key_padding_mask=False,
        complexity="O(N log N)", paper="P04",
    )

    def __init__(self, dim: int, size: tuple[int, int] = (8, 8), init_std: float = 0.02):
        super().__init__(dim)
        if not isinstance(size, (tuple, list)) or len(size) != 2:
            fail("size", "a grid (H, W) of two positive ints", describe(size), TypeError)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
            fail("size", "a grid (H, W) of two positive ints", describe(size))
        h, w = int(size[0]), int(size[1])
        self.size = (h, w)
        self.complex_weight = nn.Parameter(torch.randn(h, w // 2 + 1, dim, 2) * init_std)

    def filter_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """The complex filter (H, W // 2 + 1, C) for ``grid``, resized if it differs from ``size``.

        complex64 for fp32 and bf16 weights (there is no bf16 complex type), complex128 for fp64.
        """
        h, w = grid
        weight = upcast(self.complex_weight)
        if (h, w // 2 + 1) != tuple(weight.shape[:2]):
            # Resize in the frequency domain: (h, wf, C, 2) -> (C*2, h, wf) as image channels.
            c = weight.shape[2]
            wimg = weight.permute(2, 3, 0, 1).reshape(1, c * 2, *weight.shape[:2])
            wimg = F.interpolate(wimg, size=(h, w // 2 + 1), mode="bilinear", align_corners=True)
            weight = wimg.reshape(c, 2, h, w // 2 + 1).permute(2, 3, 0, 1)
        return torch.view_as_complex(weight.contiguous())

    def mix(self, x, *, grid, causal, key_padding_mask):
        b, n, c = x.shape
        h, w = grid
        with no_autocast():  # the FFTs and the filter in fp32 (fp64 for fp64 input) under autocast too
            xg = upcast(x).reshape(b, h, w, c)
            spec = torch.fft.rfft2(xg, dim=(1, 2), norm="ortho")
            filt = self.filter_for((h, w))
            if filt.dtype != spec.dtype:
                filt = filt.to(spec.dtype)
            y = torch.fft.irfft2(spec * filt, s=(h, w), dim=(1, 2), norm="ortho")
        return y.reshape(b, n, c)
