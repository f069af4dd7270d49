"""The ``mamba2d`` mixer: VMamba's SS2D, a 2-D selective SSM over four scan orders of the grid (P23).

Depthwise 3x3 conv + SiLU, then the cross-scan: four 1-D selective scans (row-major,
column-major and their reverses), each with its own x_proj / dt_proj / A / D, mapped
back to the grid and summed (cross-merge), LayerNorm, gate SiLU(z), out_proj.

Padded tokens (``key_padding_mask``) are zeroed before the convolution and get
delta = 0 (state unchanged), so they affect no real token.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.utils.checks import check_positive_int, fail
from attnlab.utils.precision import upcast
from attnlab.mixers.base import Capabilities, TokenMixer
from attnlab.mixers.mamba import check_ssm_sizes, dt_bias_init, s4d_real_log_a
from attnlab.mixers.registry import register
from attnlab.ops.depthwise_conv import depthwise_conv
from attnlab.ops.selective_scan import selective_scan

__all__ = ["Mamba2D", "scan_orders"]


def scan_orders(grid: tuple[int, int], device=None) -> torch.Tensor:
    """VMamba's four scan orders over an (H, W) grid: (4, H*W) token indices.

    Row 0: row-major; 1: column-major; 2, 3: their reverses. Each row is a
    permutation of 0..HW-1 (sequence position i visits token orders[k, i]).
    """
    h, w = grid
    idx = torch.arange(h * w, device=device)
    row = idx
    col = idx.view(h, w).t().reshape(-1)
    return torch.stack([row, col, row.flip(0), col.flip(0)])


@register("mamba2d", test_kwargs={"d_state": 3, "expand": 1, "chunk_size": 4}, test_grid=(3, 4))
class Mamba2D(TokenMixer):
    """2-D selective SSM (VMamba SS2D cross-scan), x (B, H*W, C) on a grid -> (B, H*W, C); bidirectional, O(N).

    Four scans (row-major, column-major, both reversed; :func:`scan_orders`), each
    with its own x_proj, dt_proj, A and D, run as one grouped selective scan; outputs
    are mapped back to grid order and summed, LayerNorm-ed, gated by SiLU(z).

    Args:
        dim: channel width C.
        d_state: N (16). d_conv: depthwise conv width per axis (3). expand: E = expand * C (2).
        dt_rank: ``"auto"`` = ceil(C / 16). dt_min, dt_max, dt_init_floor: dt init range.
        chunk_size: scan chunk length (None: automatic).
    """

    capabilities = Capabilities(causal=False, bidirectional=True, grid="required", grid_dims=(2,),
                                key_padding_mask=True, complexity="O(N)", paper="P23")

    def __init__(self, dim: int, d_state: int = 16, d_conv: int = 3, expand: int = 2, dt_rank: int | str = "auto",
                 dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4, bias: bool = False,
                 chunk_size: int | None = None):
        super().__init__(dim)
        self.dt_rank = check_ssm_sizes(dim, d_state, expand, dt_rank)
        check_positive_int("d_conv", d_conv)
        if d_conv % 2 == 0:
            fail("d_conv", "an odd width (same-size 2-D conv)", d_conv)
        self.d_state, self.chunk_size = d_state, chunk_size
        e = self.d_inner = expand * dim
        k = 4
        self.in_proj = nn.Linear(dim, 2 * e, bias=bias)
        conv = nn.Conv2d(e, e, d_conv, groups=e, bias=True)  # for its default init
        self.conv_weight = nn.Parameter(conv.weight.detach()[:, 0].clone())
        self.conv_bias = nn.Parameter(conv.bias.detach().clone())
        self.x_proj_weight = nn.Parameter(torch.empty(k, self.dt_rank + 2 * d_state, e))
        nn.init.uniform_(self.x_proj_weight, -e**-0.5, e**-0.5)
        self.dt_proj_weight = nn.Parameter(torch.empty(k, e, self.dt_rank).uniform_(-self.dt_rank**-0.5,
                                                                                      self.dt_rank**-0.5))
        self.dt_proj_bias = nn.Parameter(torch.stack([dt_bias_init(e, dt_min, dt_max, dt_init_floor) for _ in range(k)]))
        self.A_log = nn.Parameter(s4d_real_log_a(k * e, d_state))
        self.D = nn.Parameter(torch.ones(k * e))
        self.out_norm = nn.LayerNorm(e)
        self.out_proj = nn.Linear(e, dim, bias=bias)

    def mix(self, x, *, grid, causal, key_padding_mask):
        b, n, _ = x.shape
        e, k = self.d_inner, 4
        mask = None if key_padding_mask is None else key_padding_mask.to(x.dtype)
        xz = self.in_proj(x)
        if mask is not None:
            xz = xz * mask.unsqueeze(-1)
        u, z = xz.chunk(2, dim=-1)
        u = F.silu(depthwise_conv(u.transpose(1, 2).reshape(b, e, *grid), self.conv_weight, self.conv_bias))
        u = u.reshape(b, e, n)
        orders = scan_orders(grid, device=x.device)
        xs = u[:, :, orders].transpose(1, 2)  # (B, K, E, N): sequence k visits tokens orders[k]
        dbc = torch.einsum("bken,kre->bkrn", xs, self.x_proj_weight.to(x.dtype))
        dt, Bs, Cs = dbc.split([self.dt_rank, self.d_state, self.d_state], dim=2)
        delta = F.softplus(torch.einsum("bkrn,ker->bken", dt, self.dt_proj_weight.to(x.dtype))
                           + self.dt_proj_bias.to(x.dtype).unsqueeze(-1))
        if mask is not None:
            delta = delta * mask[:, orders].unsqueeze(2)
        # A and D at the parameters' precision (fp32 under autocast); the scan runs in fp32 for bf16 (fp32_op)
        A = -torch.exp(upcast(self.A_log))
        y = selective_scan(xs.reshape(b, k * e, n), delta.reshape(b, k * e, n), A, Bs.contiguous(), Cs.contiguous(),
                           upcast(self.D), chunk_size=self.chunk_size).view(b, k, e, n)
        # cross-merge: put every sequence back in grid order (inverse permutation) and sum the four
        inv = torch.argsort(orders, dim=1)
        y = torch.stack([y[:, i, :, inv[i]] for i in range(k)], dim=1).sum(1)
        y = self.out_norm(y.transpose(1, 2))
        return self.out_proj(y * F.silu(z))
