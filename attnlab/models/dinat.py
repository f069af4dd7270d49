"""DiNAT: a hierarchical vision transformer on neighborhood and dilated neighborhood attention (Hassani & Shi 2022, P26).

Tokenizer (two stride-2 3x3 convolutions with LayerNorm, 4x down), stages joined
by stride-2 3x3 convolutions with LayerNorm, and pre-norm blocks

    x = x + NA_d(LN x)      # attnlab.mixers "neighborhood" (k x k window, dilation d)
    x = x + MLP(LN x)       # hidden 3x

where the blocks of a stage cycle through that stage's dilations: DiNAT
alternates local NA (d = 1) with sparse global DiNA (d up to grid / k), so the
receptive field grows exponentially at NA's cost. ``dilations`` of all ones is
NAT. Then LayerNorm, mean over tokens, linear head. The mixer shrinks the
dilation (then the kernel) on axes shorter than k * d, so any image size works.
The tiny config is sized for 32 px (8x8, 4x4, 2x2 tokens; DiNAT-Mini has four
stages, k = 7, at 224 px).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from attnlab import mixers
from attnlab.utils.checks import describe, fail
from attnlab.models import register_model
from attnlab.layers import MixerBlock
from attnlab.models.hierarchy import HierarchicalBackbone, check_stages

__all__ = ["DiNATBlock", "DiNAT", "dinat_tiny", "dinat_small", "nat_tiny"]


class DiNATBlock(nn.Module):
    """Pre-norm (dilated) neighborhood attention + MLP on tokens (B, h*w, C) laid out on grid (h, w)."""

    def __init__(self, dim: int, num_heads: int, kernel_size: int, dilation: int, mlp_ratio: float = 3.0,
                 drop_path: float = 0.0):
        super().__init__()
        attn = mixers.create("neighborhood", dim, num_heads=num_heads, kernel_size=kernel_size, dilation=dilation)
        self.block = MixerBlock(dim, attn, ffn="mlp", mlp_ratio=mlp_ratio, drop_path=drop_path)
        self.dilation = dilation

    def forward(self, x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        return self.block(x, grid=grid)


class DiNAT(HierarchicalBackbone):
    """DiNAT (P26): images (B, in_chans, H, W) -> logits (B, num_classes); any H, W.

    Args:
        img_size: accepted for a uniform model API; the network takes any size.
        in_chans, num_classes: input channels, classes.
        embed_dim, depth, num_heads: per stage (tuples of equal length).
        kernel_size: odd neighborhood size k.
        dilations: per stage, the dilations its blocks cycle through (DiNAT: ``(1, d)``).
        mlp_ratio, drop_path_rate: MLP width (DiNAT: 3) and stochastic depth.
    """

    def __init__(self, *, img_size: int = 32, in_chans: int = 3, num_classes: int = 10,
                 embed_dim: Sequence[int] = (32, 64, 128), depth: Sequence[int] = (2, 2, 2),
                 num_heads: Sequence[int] = (1, 2, 4), kernel_size: int = 3,
                 dilations: Sequence[Sequence[int]] = ((1, 2), (1, 1), (1, 1)), mlp_ratio: float = 3.0,
                 drop_path_rate: float = 0.0):
        check_stages(embed_dim=embed_dim, depth=depth, num_heads=num_heads, dilations=dilations)
        for d in dilations:
            if not isinstance(d, (tuple, list)) or not d or not all(isinstance(v, int) and v >= 1 for v in d):
                fail("dilations", "per stage a non-empty tuple of positive ints, e.g. ((1, 2), (1, 1))",
                     describe(dilations), TypeError)
        super().__init__(
            in_chans=in_chans, num_classes=num_classes, dims=embed_dim, depths=depth, norm="ln",
            drop_path_rate=drop_path_rate,
            make_block=lambda s, j, dim, dp: DiNATBlock(dim, num_heads[s], kernel_size,
                                                        dilations[s][j % len(dilations[s])], mlp_ratio, dp),
        )
        self.img_size = img_size


DINAT_CONFIGS = {
    "tiny": dict(embed_dim=(32, 64, 128), depth=(2, 2, 2), num_heads=(1, 2, 4), kernel_size=3,
                 dilations=((1, 2), (1, 1), (1, 1))),
    "small": dict(embed_dim=(48, 96, 192), depth=(2, 4, 2), num_heads=(2, 3, 6), kernel_size=3,
                  dilations=((1, 2), (1, 1), (1, 1))),
}


@register_model("dinat_tiny", paper="P26")
def dinat_tiny(**kwargs) -> DiNAT:
    """DiNAT tiny for 32 px: widths 32/64/128, k = 3, stage 1 alternates NA and DiNA (d = 2) on 8x8 tokens."""
    return DiNAT(**{**DINAT_CONFIGS["tiny"], **kwargs})


@register_model("dinat_small", paper="P26")
def dinat_small(**kwargs) -> DiNAT:
    """DiNAT small for 32 px: widths 48/96/192, depths 2/4/2, k = 3."""
    return DiNAT(**{**DINAT_CONFIGS["small"], **kwargs})


@register_model("nat_tiny", paper="P26")
def nat_tiny(**kwargs) -> DiNAT:
    """NAT tiny (the no-dilation ablation of DiNAT): the dinat_tiny network with every dilation 1."""
    return DiNAT(**{**DINAT_CONFIGS["tiny"], "dilations": ((1,), (1,), (1,)), **kwargs})
