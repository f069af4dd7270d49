"""Hierarchical (pyramid) vision backbone shared by BiFormer (P10), DiNAT (P26) and S2AFormer (P09).

A convolutional stem (two stride-2 3x3 convolutions: 4x downsampling), then
stages of token blocks at decreasing resolution, joined by stride-2 3x3
convolutions, then a norm, mean pooling over tokens and a linear head. Blocks
work on tokens (B, N, C) and receive the current grid (h, w), so any 2-D token
mixer (routing, neighborhood, strip attention) can be used; convolutions work
on (B, C, h, w). Odd sizes are fine: every stride-2 convolution rounds up.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from einops import rearrange
from torch import nn

from attnlab.layers import ChannelLayerNorm, drop_path_rates
from attnlab.utils.checks import check_choice, check_positive_int, describe, fail

__all__ = ["ConvNorm", "ConvStem", "Downsample", "DWConvPos", "HierarchicalBackbone", "to_tokens", "to_map",
           "check_stages"]


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h*w, C)."""
    return rearrange(x, "b c h w -> b (h w) c")


def to_map(x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """(B, h*w, C) -> (B, C, h, w)."""
    return rearrange(x, "b (h w) c -> b c h w", h=grid[0], w=grid[1])


def _norm2d(kind: str, ch: int) -> nn.Module:
    check_choice("norm", kind, ("bn", "ln"))
    return nn.BatchNorm2d(ch) if kind == "bn" else ChannelLayerNorm(ch)


class ConvNorm(nn.Sequential):
    """Conv2d (3x3 by default) then BatchNorm2d or channel LayerNorm: (B, in, h, w) -> (B, out, h', w')."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, kernel_size: int = 3, norm: str = "bn"):
        super().__init__(nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2), _norm2d(norm, out_ch))


class ConvStem(nn.Sequential):
    """Overlapping patch embedding: 3x3 stride-2 conv -> norm -> GELU -> 3x3 stride-2 conv -> norm (4x down).

    ``mid_stride1`` inserts a stride-1 3x3 conv-norm-GELU in between (S2AFormer's three-conv stem).
    """

    def __init__(self, in_chans: int, dim: int, norm: str = "bn", mid_stride1: bool = False):
        layers: list[nn.Module] = [ConvNorm(in_chans, dim // 2, 2, norm=norm), nn.GELU()]
        if mid_stride1:
            layers += [ConvNorm(dim // 2, dim // 2, 1, norm=norm), nn.GELU()]
        layers += [ConvNorm(dim // 2, dim, 2, norm=norm)]
        super().__init__(*layers)


class Downsample(ConvNorm):
    """Between stages: 3x3 stride-2 conv to the next width, then norm (halves h and w, rounding up)."""

    def __init__(self, in_ch: int, out_ch: int, norm: str = "bn"):
        super().__init__(in_ch, out_ch, 2, norm=norm)


class DWConvPos(nn.Module):
    """Conditional position encoding: x + DWConv3x3(x) on tokens (B, N, C) laid out on ``grid``."""

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)

    def forward(self, x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        return x + to_tokens(self.conv(to_map(x, grid)))


def check_stages(**per_stage: Sequence) -> int:
    """All per-stage tuples have the same length (>= 1); returns it. Names the offending argument."""
    lengths = {}
    for name, v in per_stage.items():
        if not isinstance(v, (tuple, list)) or not v:
            fail(name, "a non-empty tuple with one entry per stage", describe(v), TypeError)
        lengths[name] = len(v)
    n = next(iter(lengths.values()))
    for name, k in lengths.items():
        if k != n:
            fail(name, f"{n} entries (one per stage, like {next(iter(lengths))})", f"{k} entries")
    return n


class HierarchicalBackbone(nn.Module):
    """Stem + stages of token blocks + mean-pooled head: (B, in_chans, H, W) -> (B, num_classes).

    Args:
        in_chans, num_classes: input channels and classes.
        dims, depths: width and number of blocks per stage.
        make_block: ``make_block(stage, index, dim, drop_path) -> nn.Module`` whose
            ``forward(x, grid)`` maps tokens (B, h*w, dim) to the same shape.
        norm: ``"bn"`` or ``"ln"`` in the stem and downsampling convolutions.
        stem_mid_stride1: three-conv stem (see :class:`ConvStem`).
        drop_path_rate: stochastic depth, linear over all blocks up to this rate.
    """

    def __init__(self, *, in_chans: int, num_classes: int, dims: Sequence[int], depths: Sequence[int],
                 make_block: Callable[[int, int, int, float], nn.Module], norm: str = "bn",
                 stem_mid_stride1: bool = False, drop_path_rate: float = 0.0):
        super().__init__()
        check_positive_int("in_chans", in_chans)
        check_positive_int("num_classes", num_classes)
        check_stages(dims=dims, depths=depths)
        for d in dims:
            check_positive_int("dims", d)
        for d in depths:
            check_positive_int("depths", d)
        self.in_chans = in_chans
        self.stem = ConvStem(in_chans, dims[0], norm=norm, mid_stride1=stem_mid_stride1)
        total = sum(depths)
        rates = drop_path_rates(drop_path_rate, total)
        self.downsamples = nn.ModuleList(
            [nn.Identity()] + [Downsample(dims[i - 1], dims[i], norm=norm) for i in range(1, len(dims))])
        k = 0
        stages = []
        for s, (dim, depth) in enumerate(zip(dims, depths)):
            stages.append(nn.ModuleList(make_block(s, j, dim, rates[k + j]) for j in range(depth)))
            k += depth
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> normalised last-stage tokens (B, h*w, C)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_chans:
            fail("x", f"an image batch (B, {self.in_chans}, H, W)", describe(x))
        h = self.stem(x)
        for down, blocks in zip(self.downsamples, self.stages):
            h = down(h)
            grid = tuple(h.shape[-2:])
            t = to_tokens(h)
            for blk in blocks:
                t = blk(t, grid)
            h = to_map(t, grid)
        return self.norm(to_tokens(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, num_classes)."""
        return self.head(self.forward_features(x).mean(dim=1))
