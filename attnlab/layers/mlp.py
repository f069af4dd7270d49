"""Channel MLPs of the blocks: Mlp (GELU), GluMlp (SwiGLU) and make_ffn, which picks one by name.

Module and parameter names follow timm's (``fc1``/``fc2``) so that timm state dicts load into
attnlab's designs with a documented key mapping (``attnlab.models.timm_compat``).
"""
from __future__ import annotations

import torch
from torch import nn

from attnlab.utils.checks import check_choice, fail

__all__ = ["Mlp", "GluMlp", "make_ffn", "FFN_CHOICES"]

FFN_CHOICES = ("mlp", "glu", "none")


class Mlp(nn.Module):
    """Two-layer MLP over channels: fc2(drop(act(fc1 x))); x (..., in_features) -> (..., out_features)."""

    def __init__(
        self, in_features: int, hidden_features: int | None = None, out_features: int | None = None,
        act_layer: type[nn.Module] = nn.GELU, bias: bool = True, drop: float = 0.0,
    ):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.norm = nn.Identity()
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) -> (..., out)."""
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


class GluMlp(nn.Module):
    """Gated MLP (SwiGLU, Shazeer 2020): fc2(act(x W_gate) * (x W_value)); x (..., C) -> (..., C).

    ``fc1`` produces value and gate halves (``2 * hidden_features`` outputs).
    """

    def __init__(
        self, in_features: int, hidden_features: int, out_features: int | None = None,
        act_layer: type[nn.Module] = nn.SiLU, bias: bool = True, drop: float = 0.0,
    ):
        super().__init__()
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, 2 * hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) -> (..., out)."""
        value, gate = self.fc1(x).chunk(2, dim=-1)
        return self.drop2(self.fc2(self.drop1(value * self.act(gate))))


def make_ffn(kind: str, dim: int, mlp_ratio: float, drop: float = 0.0) -> nn.Module | None:
    """The block's channel mixer: ``"mlp"`` (GELU, hidden ``mlp_ratio * dim``), ``"glu"`` or ``"none"``.

    ``"glu"`` is SwiGLU with hidden width ``2/3 * mlp_ratio * dim`` (rounded), so it
    has about the parameters of the MLP of the same ratio (the usual convention).
    """
    check_choice("ffn", kind, FFN_CHOICES)
    if kind == "none" or mlp_ratio == 0:
        return None
    if not mlp_ratio > 0:
        fail("mlp_ratio", "a number > 0", mlp_ratio)
    if kind == "mlp":
        return Mlp(dim, max(int(round(mlp_ratio * dim)), 1), drop=drop)
    return GluMlp(dim, max(int(round(2 * mlp_ratio * dim / 3)), 1), drop=drop)
