"""S2AFormer: hybrid perception blocks around strip self-attention (Xu et al. 2025, P09).

Three-conv stem (3x3 stride 2, 3x3 stride 1, 3x3 stride 2; 4x down), stages
joined by stride-2 Conv-BN, and in every stage Hybrid Perception Blocks (HPB):

    f1 = x  + DWConv3x3(x)              # local perception
    f2 = f1 + SSA(LN f1)                # strip self-attention: attnlab.mixers "strip_attention"
    f3 = f2 + LIM(LN f2)                # local interaction: DWConv3x3 -> GELU -> 1x1
    f4 = f3 + MLP(LN f3)

SSA reduces K/V spatially by ``sr_ratio`` and compresses Q/K to ``qk_dim``
channels. No official code exists; ``qk_dim`` (C/4 here), the per-stage
``sr_ratio`` and the LIM layout follow the paper's description and are marked
as assumptions in docs/notes/vision.md. The tiny config has three stages at
8x8, 4x4, 2x2 tokens for 32 px images.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from attnlab import mixers
from attnlab.models import register_model
from attnlab.models.hierarchy import DWConvPos, HierarchicalBackbone, check_stages, to_map, to_tokens
from attnlab.layers import DropPath, Mlp

__all__ = ["LocalInteraction", "HybridPerceptionBlock", "S2AFormer", "s2aformer_tiny", "s2aformer_small"]


class LocalInteraction(nn.Module):
    """LIM: depthwise 3x3 conv -> GELU -> pointwise conv, on tokens (B, h*w, C) laid out on ``grid``."""

    def __init__(self, dim: int):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.act = nn.GELU()
        self.pw = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        return to_tokens(self.pw(self.act(self.dw(to_map(x, grid)))))


class HybridPerceptionBlock(nn.Module):
    """HPB: DWConv residual, strip self-attention, local interaction, MLP (each pre-norm residual)."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, qk_dim: int, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0):
        super().__init__()
        self.pos = DWConvPos(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = mixers.create("strip_attention", dim, num_heads=num_heads, sr_ratio=sr_ratio, qk_dim=qk_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.lim = LocalInteraction(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        x = self.pos(x, grid)
        x = x + self.drop_path(self.attn(self.norm1(x), grid=tuple(grid)))
        x = x + self.drop_path(self.lim(self.norm2(x), grid))
        return x + self.drop_path(self.mlp(self.norm3(x)))


class S2AFormer(HierarchicalBackbone):
    """S2AFormer (P09): images (B, in_chans, H, W) -> logits (B, num_classes); any H, W.

    Args:
        img_size: accepted for a uniform model API; the network takes any size.
        in_chans, num_classes: input channels, classes.
        embed_dim, depth, num_heads, sr_ratio: per stage (tuples of equal length).
        qk_ratio: compressed Q/K width over C (``qk_dim = max(C * qk_ratio, num_heads)``,
            rounded to a multiple of the heads).
        mlp_ratio, drop_path_rate: MLP width and stochastic depth.
    """

    def __init__(self, *, img_size: int = 32, in_chans: int = 3, num_classes: int = 10,
                 embed_dim: Sequence[int] = (32, 64, 128), depth: Sequence[int] = (2, 2, 2),
                 num_heads: Sequence[int] = (1, 2, 4), sr_ratio: Sequence[int] = (4, 2, 1), qk_ratio: float = 0.25,
                 mlp_ratio: float = 4.0, drop_path_rate: float = 0.0):
        check_stages(embed_dim=embed_dim, depth=depth, num_heads=num_heads, sr_ratio=sr_ratio)

        def qk(s: int) -> int:
            h = num_heads[s]
            return max(int(embed_dim[s] * qk_ratio) // h * h, h)

        super().__init__(
            in_chans=in_chans, num_classes=num_classes, dims=embed_dim, depths=depth, norm="bn",
            stem_mid_stride1=True, drop_path_rate=drop_path_rate,
            make_block=lambda s, j, dim, dp: HybridPerceptionBlock(dim, num_heads[s], sr_ratio[s], qk(s), mlp_ratio,
                                                                   dp),
        )
        self.img_size = img_size


S2AFORMER_CONFIGS = {
    "tiny": dict(embed_dim=(32, 64, 128), depth=(2, 2, 2), num_heads=(1, 2, 4), sr_ratio=(4, 2, 1)),
    "small": dict(embed_dim=(48, 96, 192), depth=(2, 4, 2), num_heads=(1, 2, 4), sr_ratio=(4, 2, 1)),
}


@register_model("s2aformer_tiny", paper="P09")
def s2aformer_tiny(**kwargs) -> S2AFormer:
    """S2AFormer tiny for 32 px: widths 32/64/128, 2 HPBs per stage, K/V reduced 4x/2x/1x per side."""
    return S2AFormer(**{**S2AFORMER_CONFIGS["tiny"], **kwargs})


@register_model("s2aformer_small", paper="P09")
def s2aformer_small(**kwargs) -> S2AFormer:
    """S2AFormer small for 32 px: widths 48/96/192, depths 2/4/2."""
    return S2AFormer(**{**S2AFORMER_CONFIGS["small"], **kwargs})
