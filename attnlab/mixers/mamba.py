"""The Mamba block (Gu & Dao 2023) around the selective scan (S6): the ``mamba`` mixer (P23 surveys it).

in_proj to x and z (expand E), causal depthwise conv + SiLU on x, x_proj to (dt, B, C)
per token, dt_proj + softplus, A = -exp(A_log) with the S4D-real init A_n = -n, the
selective scan, D skip, gate SiLU(z), out_proj. Bidirectional (vision Mambas, e.g. Vim):
the same conv + scan also runs on the reversed sequence and both are summed.

:class:`GatedSSMBlock` (the block around any SSM) and the initialisers
:func:`dt_bias_init` / :func:`s4d_real_log_a` are shared with ``s4d``
(:mod:`attnlab.mixers.s4d`) and ``mamba2d`` (:mod:`attnlab.mixers.mamba2d`).

Padded tokens (``key_padding_mask``) are zeroed before the convolutions and get
delta = 0 (state unchanged), so they affect no real token in either direction.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.layers import ShortConv
from attnlab.utils.checks import check_positive_int
from attnlab.utils.precision import upcast
from attnlab.mixers.base import Capabilities, TokenMixer
from attnlab.mixers.registry import register
from attnlab.ops.selective_scan import selective_scan, selective_scan_reference, selective_scan_step

__all__ = ["Mamba", "GatedSSMBlock", "dt_bias_init", "s4d_real_log_a", "check_ssm_sizes"]


def dt_bias_init(n: int, dt_min: float = 1e-3, dt_max: float = 0.1, floor: float = 1e-4) -> torch.Tensor:
    """Mamba's dt_proj bias: softplus^-1 of dt ~ log-uniform in [dt_min, dt_max] (clamped at ``floor``)."""
    dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))


def s4d_real_log_a(channels: int, d_state: int) -> torch.Tensor:
    """log of -A for the S4D-real init A_n = -n (n = 1..N), one row per channel."""
    return torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(channels, 1)


def check_ssm_sizes(dim: int, d_state: int, expand: int, dt_rank: int | str) -> int:
    """Validate the SSM sizes; returns dt_rank (``"auto"`` = ceil(dim / 16))."""
    check_positive_int("d_state", d_state)
    check_positive_int("expand", expand)
    if dt_rank == "auto":
        return math.ceil(dim / 16)
    return check_positive_int("dt_rank", dt_rank)


class GatedSSMBlock(TokenMixer):
    """Shared parts of the ``mamba`` and ``s4d`` blocks: in_proj, causal conv, gate, out_proj, directions."""

    capabilities = Capabilities(causal=True, bidirectional=True, key_padding_mask=True, complexity="O(N)",
                                paper="P23")

    def _init_block(self, dim, expand, d_conv, bias, conv_bias):
        self.d_inner = expand * dim
        self.in_proj = nn.Linear(dim, 2 * self.d_inner, bias=bias)
        self.conv = ShortConv(self.d_inner, check_positive_int("d_conv", d_conv), "silu", bias=conv_bias)
        self.out_proj = nn.Linear(self.d_inner, dim, bias=bias)

    def ssm(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The SSM on conv output x (B, N, E) -> (B, N, E) (mask (B, N) float or None). Implemented by subclasses."""
        raise NotImplementedError

    def mix(self, x, *, grid, causal, key_padding_mask):
        mask = None if key_padding_mask is None else key_padding_mask.to(x.dtype)
        xz = self.in_proj(x)
        if mask is not None:
            xz = xz * mask.unsqueeze(-1)
        u, z = xz.chunk(2, dim=-1)
        if causal:
            y = self.ssm(self.conv(u), mask)
        else:
            b = u.shape[0]
            both = torch.cat([u, u.flip(1)], dim=0)
            m2 = None if mask is None else torch.cat([mask, mask.flip(1)], dim=0)
            y2 = self.ssm(self.conv(both), m2)
            y = y2[:b] + y2[b:].flip(1)
        return self.out_proj(y * F.silu(z))


@register("mamba", test_kwargs={"d_state": 3, "expand": 2, "chunk_size": 4})
class Mamba(GatedSSMBlock):
    """Mamba block with the selective SSM (S6), x (B, N, C) -> (B, N, C); causal or bidirectional, O(N), decoding.

    Args:
        dim: channel width C (d_model).
        d_state: SSM state size N per channel (16).
        d_conv: causal depthwise conv width (4).
        expand: inner width E = expand * C (2).
        dt_rank: rank of the dt projection (``"auto"`` = ceil(C / 16)).
        dt_min, dt_max, dt_init_floor: range of the initial dt (1e-3, 0.1, 1e-4).
        bias, conv_bias: biases of in/out projections (False) and of the conv (True).
        chunk_size: chunk length of the scan's fast path (None: automatic).
        use_reference: run the sequential reference scan instead of the fast path (tests).
    """

    capabilities = Capabilities(causal=True, bidirectional=True, key_padding_mask=True, recurrent=True,
                                complexity="O(N)", paper="P23")

    def __init__(self, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank: int | str = "auto",
                 dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4, bias: bool = False,
                 conv_bias: bool = True, chunk_size: int | None = None, use_reference: bool = False):
        super().__init__(dim)
        self.dt_rank = check_ssm_sizes(dim, d_state, expand, dt_rank)
        self.d_state = d_state
        self._init_block(dim, expand, d_conv, bias, conv_bias)
        e = self.d_inner
        self.x_proj = nn.Linear(e, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, e, bias=True)
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt_bias_init(e, dt_min, dt_max, dt_init_floor))
        self.A_log = nn.Parameter(s4d_real_log_a(e, d_state))
        self.D = nn.Parameter(torch.ones(e))
        self.chunk_size = chunk_size
        self.use_reference = use_reference

    def _dt_bc(self, x, mask):
        """x (..., E) -> delta (..., E) (softplus, zero where padded), B, C (..., N)."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        if mask is not None:
            delta = delta * mask.unsqueeze(-1)
        return delta, B, C

    def ssm(self, x, mask):
        delta, B, C = self._dt_bc(x, mask)
        # A and D at the parameters' precision (fp32 under autocast); the scan runs in fp32 for bf16 (fp32_op)
        A, D = -torch.exp(upcast(self.A_log)), upcast(self.D)
        args = (x.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), D)
        if self.use_reference:
            y = selective_scan_reference(*args)
        else:
            y = selective_scan(*args, chunk_size=self.chunk_size)
        return y.transpose(1, 2)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> dict:
        """Zero decoding state: conv buffer (B, d_conv - 1, E) and SSM state h (B, E, N); constant size."""
        return {"conv": self.conv.init_state(batch_size, device=device, dtype=dtype),
                "h": torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=dtype)}

    def step(self, x_t: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """Causal decoding: x_t (B, C) -> (y_t (B, C), new state); O(E N) per token, independent of t."""
        u, z = self.in_proj(x_t).chunk(2, dim=-1)
        u, conv = self.conv.step(u, state["conv"])
        delta, B, C = self._dt_bc(u, None)
        y, h = selective_scan_step(u, delta, -torch.exp(upcast(self.A_log)), B, C, state["h"], D=upcast(self.D))
        return self.out_proj(y * F.silu(z)), {"conv": conv, "h": h}
