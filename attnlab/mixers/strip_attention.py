"""Strip self-attention mixer (P09 S2AFormer): K/V spatially reduced, Q/K channel-compressed."""
from __future__ import annotations

import math

import torch.nn.functional as F
from einops import rearrange
from torch import nn

from attnlab.utils.checks import check_positive_int, fail
from attnlab.mixers.base import Capabilities, TokenMixer, check_num_heads
from attnlab.mixers.registry import register
from attnlab.ops.attention import attention

__all__ = ["StripAttention"]


@register(
    "strip_attention",
    test_kwargs={"num_heads": 2, "sr_ratio": 2, "qk_dim": 4},
    test_grid=(5, 3),
)
class StripAttention(TokenMixer):
    """Strip self-attention (S2AFormer, P09): x (B, N, C) -> (B, N, C) on a 2-D grid (h, w), h * w = N.

    Keys and values come from a spatially reduced copy of the input: a depthwise
    convolution with kernel = stride = ``sr_ratio`` (r) turns the (h, w) grid into
    (ceil(h / r), ceil(w / r)) tokens (zero padding at the bottom/right when the grid
    is not a multiple of r), followed by LayerNorm. Queries and keys are projected to
    a compressed width ``qk_dim`` (d' << C: the "strip"), values keep the full width C:

        Q = x W_q (N x d'),  K = SR(x) W_k (N/r^2 x d'),  V = SR(x) W_v (N/r^2 x C)
        out = softmax(Q K^T / sqrt(d'/H)) V,  then the output projection.

    Cost O(N^2 (d' + C) / r^2) instead of O(N^2 C). With ``sr_ratio=1`` no reduction
    (and no norm) is applied; with ``qk_dim=dim`` as well the mixer is ordinary
    multi-head attention. S2AFormer places this mixer inside its Hybrid Perception
    Block (depthwise conv, SSA, local interaction module, MLP); the block is built by
    the model, not here.

    Args:
        dim: channel width C (divisible by ``num_heads``).
        num_heads: heads H (must divide ``qk_dim`` and ``dim``).
        sr_ratio: spatial reduction r of keys/values (S2AFormer uses 8/4/2/1 over its
            four stages; unverified in the paper text available here).
        qk_dim: compressed query/key width d'; default ``max(dim // 8, num_heads)``
            rounded up to a multiple of ``num_heads``.
        qkv_bias: bias on the q/k/v projections.
    """

    capabilities = Capabilities(
        causal=False, bidirectional=True, grid="required", grid_dims=(2,), key_padding_mask=False,
        complexity="O(N^2/r^2)", paper="P09",
    )

    def __init__(self, dim: int, num_heads: int = 1, sr_ratio: int = 4, qk_dim: int | None = None,
                 qkv_bias: bool = True):
        super().__init__(dim)
        check_num_heads(dim, num_heads)
        self.sr_ratio = check_positive_int("sr_ratio", sr_ratio)
        if qk_dim is None:
            qk_dim = math.ceil(max(dim // 8, num_heads) / num_heads) * num_heads
        check_positive_int("qk_dim", qk_dim)
        if qk_dim % num_heads:
            fail("qk_dim", f"a multiple of num_heads={num_heads}", qk_dim)
        self.num_heads, self.qk_dim = num_heads, qk_dim
        self.q = nn.Linear(dim, qk_dim, bias=qkv_bias)
        self.k = nn.Linear(dim, qk_dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio, groups=dim)
            self.sr_norm = nn.LayerNorm(dim)
        else:
            self.sr, self.sr_norm = None, None
        self.proj = nn.Linear(dim, dim)

    def reduce(self, x, grid):
        """Spatial reduction of (B, N, C) tokens on ``grid`` -> (B, ceil(h/r) * ceil(w/r), C)."""
        if self.sr is None:
            return x
        h, w = grid
        r = self.sr_ratio
        img = rearrange(x, "b (h w) c -> b c h w", h=h, w=w)
        # contiguous NCHW: a strided view sends the depthwise conv down a slow per-group path
        img = F.pad(img, (0, -w % r, 0, -h % r)).contiguous()
        return self.sr_norm(rearrange(self.sr(img), "b c h w -> b (h w) c"))

    def mix(self, x, *, grid, causal, key_padding_mask):
        xr = self.reduce(x, grid)
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.num_heads)
        k = rearrange(self.k(xr), "b m (h d) -> b h m d", h=self.num_heads)
        v = rearrange(self.v(xr), "b m (h d) -> b h m d", h=self.num_heads)
        return self.proj(rearrange(attention(q, k, v), "b h n d -> b n (h d)"))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, sr_ratio={self.sr_ratio}, qk_dim={self.qk_dim}"
