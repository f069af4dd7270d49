"""The ``s4d`` mixer: the Mamba block with a time-invariant diagonal SSM (S4D-real), P23's LTI baseline.

The same A, B, C for every token, computed as one long convolution with the kernel
K_l = sum_n C_n dt B_n exp(dt A_n l) by FFT: the LTI baseline of Mamba's
selective-copying experiment ("Mamba block with S4"). The block around it
(in_proj, short conv, gate, out_proj, directions) is :class:`attnlab.mixers.mamba.GatedSSMBlock`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from attnlab.utils.precision import upcast
from attnlab.mixers.base import Capabilities
from attnlab.mixers.mamba import GatedSSMBlock, check_ssm_sizes, s4d_real_log_a
from attnlab.mixers.registry import register
from attnlab.ops.fft_conv import fft_long_conv

__all__ = ["S4D"]


@register("s4d", test_kwargs={"d_state": 3, "expand": 2})
class S4D(GatedSSMBlock):
    """Mamba-style block with a time-invariant diagonal SSM (S4D-real), x (B, N, C) -> (B, N, C); O(N log N).

    The SSM is linear time-invariant: per inner channel, dt (log-uniform init in
    [dt_min, dt_max]), A_n = -exp(A_log) (S4D-real init -n), B (ones) and C (normal)
    are the same for every token, so y = K * u + D u with the kernel
    K_l = sum_n C_n dt B_n exp(dt A_n l), applied by FFT (causal; the bidirectional
    form adds the reversed pass). The baseline of P23's selective-copying claim.

    Args: as :class:`Mamba` (no dt_rank: dt is a per-channel parameter).
    """

    capabilities = Capabilities(causal=True, bidirectional=True, key_padding_mask=True, complexity="O(N log N)",
                                paper="P23")

    def __init__(self, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_min: float = 1e-3,
                 dt_max: float = 0.1, bias: bool = False, conv_bias: bool = True):
        super().__init__(dim)
        check_ssm_sizes(dim, d_state, expand, "auto")
        self.d_state = d_state
        self._init_block(dim, expand, d_conv, bias, conv_bias)
        e = self.d_inner
        self.log_dt = nn.Parameter(torch.rand(e) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.A_log = nn.Parameter(s4d_real_log_a(e, d_state))
        self.B = nn.Parameter(torch.ones(e, d_state))
        self.C = nn.Parameter(torch.randn(e, d_state) * d_state**-0.5)
        self.D = nn.Parameter(torch.ones(e))

    def kernel(self, n: int, dtype=None) -> torch.Tensor:
        """The SSM's convolution kernel (E, n): K_l = sum_k C_k dt B_k exp(dt A_k l).

        ``dtype``: of the computation and the result (default: the parameters', fp32 for bf16 ones:
        positions l past 256 and the powers exp(dt A l) need more than bf16's 8 bits).
        """
        dtype = dtype or upcast(self.B).dtype
        dt = torch.exp(self.log_dt.to(dtype)).unsqueeze(-1)
        dta = -torch.exp(self.A_log.to(dtype)) * dt  # (E, N)
        pos = torch.arange(n, dtype=dtype, device=dta.device)
        vander = torch.exp(dta.unsqueeze(-1) * pos)  # (E, N, n), entries in (0, 1]
        return torch.einsum("en,enl->el", self.C.to(dtype) * self.B.to(dtype) * dt, vander)

    def ssm(self, x, mask):
        if mask is not None:  # zero input = no contribution from padded tokens (the LTI kernel is fixed)
            x_in = x * mask.unsqueeze(-1)
        else:
            x_in = x
        k = self.kernel(x.shape[1], upcast(x).dtype)  # the FFT conv runs in fp32 for bf16
        y = fft_long_conv(x_in.transpose(1, 2), k, causal=True).transpose(1, 2)
        return y + x * self.D.to(y.dtype)
