"""Normalisation layers shared by mixers and models: RMSNorm, a channel LayerNorm for (B, C, h, w) maps, make_norm."""
from __future__ import annotations

import torch
from torch import nn

from attnlab.utils.checks import check_choice

__all__ = ["RMSNorm", "ChannelLayerNorm", "make_norm", "NORM_CHOICES"]

NORM_CHOICES = ("layernorm", "rmsnorm")


class RMSNorm(nn.Module):
    """RMSNorm over the last dim with a learnable gain (Zhang & Sennrich 2019): x (..., dim) -> (..., dim).

    ``x * rsqrt(mean(x^2) + eps) * weight``, written out (not ``nn.RMSNorm``) so that the
    DeltaNet layer (P12), which uses it as its per-head output norm, keeps its exact numbers.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., dim) -> normalised x, same shape."""
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, h, w) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> same, normalised over C."""
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def make_norm(kind: str, dim: int, eps: float = 1e-5) -> nn.Module:
    """``"layernorm"`` or ``"rmsnorm"`` over the last dim."""
    check_choice("norm", kind, NORM_CHOICES)
    return nn.LayerNorm(dim, eps=eps) if kind == "layernorm" else nn.RMSNorm(dim, eps=eps)
