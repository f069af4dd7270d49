"""Bi-level routing attention mixer (P10 BiFormer): region routing, token attention, local context enhancement."""
from __future__ import annotations

from einops import rearrange
from torch import nn

from attnlab.utils.checks import check_positive_int, describe, fail
from attnlab.mixers.base import Capabilities, TokenMixer, check_num_heads
from attnlab.mixers.registry import register
from attnlab.ops.bilevel_routing import bilevel_routing_attention

__all__ = ["BiLevelRoutingAttention"]


@register(
    "bilevel_routing",
    test_kwargs={"num_heads": 2, "n_win": 2, "topk": 2, "lce_kernel": 3},
    test_grid=(5, 3),
)
class BiLevelRoutingAttention(TokenMixer):
    """Bi-level routing attention (BiFormer, P10): x (B, N, C) -> (B, N, C) on a 2-D grid (h, w), h * w = N.

    q, k, v = Linear(x). The grid is cut into ``n_win x n_win`` regions; each query
    region routes to the ``topk`` key regions with the highest affinity of region-mean
    queries and keys (hard, non-differentiable routing shared by the heads); every token
    then attends (multi-head softmax) to all tokens of its routed regions
    (``attnlab.ops.bilevel_routing``; the N x N matrix is never formed). Local context
    enhancement (LCE) adds a depthwise ``lce_kernel x lce_kernel`` convolution of V,
    as in BiFormer; then the output projection.

    Grids that are not a multiple of ``n_win`` are padded inside (padded tokens are
    never attended; the result equals the dense-masked reference on the real grid).
    ``key_padding_mask`` is honoured: padded tokens take no part in routing or
    attention, and their values are zeroed before the LCE convolution.

    Args:
        dim: channel width C (divisible by ``num_heads``).
        num_heads: attention heads (BiFormer uses head dim 32).
        n_win: regions per side (BiFormer: 7 at 224 px, i.e. a 56x56 stage-1 grid).
        topk: routed key regions per query region (BiFormer-T: 1, 4, 16, all per stage);
            ``topk >= n_win**2`` is full attention (+ LCE).
        lce_kernel: depthwise kernel of local context enhancement on V (BiFormer: 5;
            odd; 0 disables LCE).
        qkv_bias: bias of the q/k/v projection (BiFormer: True).
        qk_scale: logit scale; default head_dim^-1/2 (BiFormer's code uses dim^-1/2
            over the whole width, which is not what the paper's formulation states).
    """

    capabilities = Capabilities(
        causal=False, bidirectional=True, grid="required", grid_dims=(2,), key_padding_mask=True,
        complexity="O(N^(4/3))", paper="P10",
    )

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        n_win: int = 7,
        topk: int = 4,
        lce_kernel: int = 5,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
    ):
        super().__init__(dim)
        check_num_heads(dim, num_heads)
        self.num_heads = num_heads
        self.n_win = check_positive_int("n_win", n_win)
        self.topk = check_positive_int("topk", topk)
        if isinstance(lce_kernel, bool) or not isinstance(lce_kernel, int) or lce_kernel < 0 or (
            lce_kernel and lce_kernel % 2 == 0
        ):
            fail("lce_kernel", "0 (off) or an odd positive int", describe(lce_kernel))
        if qk_scale is not None and (not isinstance(qk_scale, (int, float)) or qk_scale <= 0):
            fail("qk_scale", "a positive float or None", describe(qk_scale))
        self.qk_scale = qk_scale
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.lce = nn.Conv2d(dim, dim, lce_kernel, padding=lce_kernel // 2, groups=dim) if lce_kernel else None
        self.proj = nn.Linear(dim, dim)

    def mix(self, x, *, grid, causal, key_padding_mask):
        h, w = grid
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        out = bilevel_routing_attention(
            q, k, v, grid, n_win=self.n_win, topk=self.topk, key_padding_mask=key_padding_mask, scale=self.qk_scale
        )
        out = rearrange(out, "b h n d -> b n (h d)")
        if self.lce is not None:
            vv = rearrange(v, "b h n d -> b n (h d)")
            if key_padding_mask is not None:
                # padded tokens must not leak into real ones through the convolution
                vv = vv * key_padding_mask[..., None].to(vv.dtype)
            # contiguous NCHW: a strided view sends the depthwise conv down a slow per-group path
            lce = self.lce(rearrange(vv, "b (gh gw) c -> b c gh gw", gh=h, gw=w).contiguous())
            out = out + rearrange(lce, "b c gh gw -> b (gh gw) c")
        return self.proj(out)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, n_win={self.n_win}, topk={self.topk}"
