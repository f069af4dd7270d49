"""The pre-norm transformer block around any token mixer, in the two namings the models need.

``MixerBlock`` is the block of the backbones (``SequenceModel``, ``ViT``) and of the
hierarchical designs: ``norm1``/``mixer``/``norm2``/``ffn``, a choice of norm and FFN,
residual dropout. ``Block`` is the block of the timm-compatible vision designs (ConViT,
CrossViT, SpectFormer): ``norm1``/``attn``/``norm2``/``mlp`` as in timm, LayerNorm eps
1e-6 and an MLP of hidden width ``int(dim * mlp_ratio)``, so timm state dicts load by
identity (``attnlab.models.timm_compat``). Both compute ``x + mixer(norm1 x)``, then
``x + ffn(norm2 x)``; their parameter names are part of saved checkpoints, hence two classes.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from attnlab.layers.drop_path import DropPath
from attnlab.layers.mlp import Mlp, make_ffn
from attnlab.layers.norm import make_norm

__all__ = ["MixerBlock", "Block", "context_kinds"]


def _uses_grid(mixer: nn.Module) -> bool:
    """True when the mixer declares that it uses geometry (``capabilities.grid != "none"``)."""
    return getattr(getattr(mixer, "capabilities", None), "grid", "none") != "none"


def context_kinds(mixer: nn.Module) -> tuple[str, ...]:
    """The extra context a mixer declares it needs (``capabilities.context``; see ``attnlab.mixers.context``)."""
    return tuple(getattr(getattr(mixer, "capabilities", None), "context", ()))


class MixerBlock(nn.Module):
    """Pre-norm block: x + mixer(norm1 x), then x + ffn(norm2 x); x (B, N, C) -> (B, N, C).

    ``grid``, ``causal`` and ``key_padding_mask`` are passed to the mixer (the grid
    only when the mixer uses geometry; ``context``, a mapping of extra inputs, only when the mixer
    declares it needs some: :attr:`context_kinds`). ``ffn`` is ``"mlp"``, ``"glu"`` or ``"none"``.
    """

    def __init__(self, dim: int, mixer: nn.Module, *, ffn: str = "mlp", mlp_ratio: float = 4.0,
                 norm: str = "layernorm", dropout: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = make_norm(norm, dim)
        self.mixer = mixer
        self.uses_grid = _uses_grid(mixer)
        self.context_kinds = context_kinds(mixer)
        self.ffn = make_ffn(ffn, dim, mlp_ratio, dropout)
        self.norm2 = make_norm(norm, dim) if self.ffn is not None else None
        self.drop = nn.Dropout(dropout)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, *, grid: Sequence[int] | None = None, causal: bool = False,
                key_padding_mask: torch.Tensor | None = None, context: dict | None = None) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        extra = {"context": context} if self.context_kinds else {}
        h = self.mixer(self.norm1(x), grid=tuple(grid) if (grid is not None and self.uses_grid) else None,
                       causal=causal, key_padding_mask=key_padding_mask, **extra)
        x = x + self.drop_path(self.drop(h))
        if self.ffn is not None:
            x = x + self.drop_path(self.ffn(self.norm2(x)))
        return x


class Block(nn.Module):
    """Pre-norm transformer block with timm's names: x + attn(norm1 x), then x + mlp(norm2 x); (B, N, C) -> (B, N, C).

    ``attn`` is any attnlab token mixer; ``grid`` is passed to it only when its
    capabilities use geometry (a sequence with a class token has no grid).

    Args:
        dim: width C.
        attn: the token mixer module.
        mlp_ratio: hidden width of the MLP over C (0 drops the MLP sub-block).
        drop_path: stochastic-depth rate on both residual branches.
        norm_eps: LayerNorm epsilon (timm's vision models use 1e-6).
        act_layer: activation of the MLP.
    """

    def __init__(
        self, dim: int, attn: nn.Module, mlp_ratio: float = 4.0, drop_path: float = 0.0, norm_eps: float = 1e-6,
        act_layer: type[nn.Module] = nn.GELU,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = attn
        self.uses_grid = _uses_grid(attn)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if mlp_ratio > 0:
            self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
            self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer)
        else:
            self.norm2 = self.mlp = None

    def forward(self, x: torch.Tensor, grid: tuple[int, ...] | None = None) -> torch.Tensor:
        """x (B, N, C) -> (B, N, C); ``grid`` (H, W) of the tokens if they form one."""
        h = self.norm1(x)
        h = self.attn(h, grid=grid) if (self.uses_grid and grid is not None) else self.attn(h)
        x = x + self.drop_path(h)
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x
