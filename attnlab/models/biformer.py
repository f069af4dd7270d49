"""BiFormer: a hierarchical vision transformer on bi-level routing attention (Zhu et al. 2023, P10).

Stem (two stride-2 3x3 Conv-BN, 4x down), then stages at 1/4, 1/8, 1/16 (and
1/32 with a fourth stage) of the image, joined by stride-2 Conv-BN. Each block:

    x = x + DWConv3x3(x)                  # conditional position encoding
    x = x + BRA(LN x)                     # attnlab.mixers "bilevel_routing" (+ LCE on V)
    x = x + MLP(LN x)                     # hidden 3x

Per stage, ``n_win`` regions per side and ``topk`` routed regions (``-1`` =
all regions: full attention + LCE, BiFormer's last stage). Then LayerNorm,
mean over tokens, linear head. The tiny config is sized for 32 px on a CPU:
three stages at 8x8, 4x4, 2x2 tokens (BiFormer-T has four stages at 224 px).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from attnlab import mixers
from attnlab.utils.checks import fail
from attnlab.models import register_model
from attnlab.layers import MixerBlock
from attnlab.models.hierarchy import DWConvPos, HierarchicalBackbone, check_stages

__all__ = ["BiFormerBlock", "BiFormer", "biformer_tiny", "biformer_small"]


class BiFormerBlock(nn.Module):
    """x + DWConv(x), then pre-norm bi-level routing attention and MLP; tokens (B, h*w, C) on grid (h, w)."""

    def __init__(self, dim: int, num_heads: int, n_win: int, topk: int, lce_kernel: int = 5, mlp_ratio: float = 3.0,
                 drop_path: float = 0.0):
        super().__init__()
        self.pos = DWConvPos(dim)
        attn = mixers.create("bilevel_routing", dim, num_heads=num_heads, n_win=n_win,
                             topk=n_win * n_win if topk == -1 else topk, lce_kernel=lce_kernel)
        self.block = MixerBlock(dim, attn, ffn="mlp", mlp_ratio=mlp_ratio, drop_path=drop_path)

    def forward(self, x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        return self.block(self.pos(x, grid), grid=grid)


class BiFormer(HierarchicalBackbone):
    """BiFormer (P10): images (B, in_chans, H, W) -> logits (B, num_classes); any H, W.

    Args:
        img_size: accepted for a uniform model API; the network itself takes any size.
        in_chans, num_classes: input channels, classes.
        embed_dim, depth, num_heads, n_win, topk: per stage (tuples of equal length);
            ``topk=-1`` attends to every region.
        lce_kernel: depthwise kernel of local context enhancement (BiFormer: 5).
        mlp_ratio, drop_path_rate: MLP width (BiFormer: 3) and stochastic depth.
    """

    def __init__(self, *, img_size: int = 32, in_chans: int = 3, num_classes: int = 10,
                 embed_dim: Sequence[int] = (32, 64, 128), depth: Sequence[int] = (2, 2, 2),
                 num_heads: Sequence[int] = (1, 2, 4), n_win: Sequence[int] = (4, 2, 1),
                 topk: Sequence[int] = (4, 2, -1), lce_kernel: int = 5, mlp_ratio: float = 3.0,
                 drop_path_rate: float = 0.0):
        check_stages(embed_dim=embed_dim, depth=depth, num_heads=num_heads, n_win=n_win, topk=topk)
        for t, w in zip(topk, n_win):
            if t != -1 and not 1 <= t <= w * w:
                fail("topk", f"-1 or a count in [1, n_win**2={w * w}] per stage", tuple(topk))
        super().__init__(
            in_chans=in_chans, num_classes=num_classes, dims=embed_dim, depths=depth, norm="bn",
            drop_path_rate=drop_path_rate,
            make_block=lambda s, j, dim, dp: BiFormerBlock(dim, num_heads[s], n_win[s], topk[s], lce_kernel,
                                                           mlp_ratio, dp),
        )
        self.img_size = img_size


BIFORMER_CONFIGS = {
    "tiny": dict(embed_dim=(32, 64, 128), depth=(2, 2, 2), num_heads=(1, 2, 4), n_win=(4, 2, 1), topk=(4, 2, -1)),
    "small": dict(embed_dim=(48, 96, 192), depth=(2, 4, 2), num_heads=(2, 3, 6), n_win=(4, 2, 1), topk=(4, 2, -1)),
}


@register_model("biformer_tiny", paper="P10")
def biformer_tiny(**kwargs) -> BiFormer:
    """BiFormer tiny for 32 px: widths 32/64/128 (head dim 32), 2 blocks per stage, 8x8 -> 4x4 -> 2x2 tokens."""
    return BiFormer(**{**BIFORMER_CONFIGS["tiny"], **kwargs})


@register_model("biformer_small", paper="P10")
def biformer_small(**kwargs) -> BiFormer:
    """BiFormer small for 32 px: widths 48/96/192 (head dim 32), depths 2/4/2."""
    return BiFormer(**{**BIFORMER_CONFIGS["small"], **kwargs})
