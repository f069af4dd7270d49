"""Activator: a GLU-MLP in place of attention, with or without the second MLP (Abdullah & Aydin 2024, P07).

Patch embedding (no position embedding, as in the official model), then blocks

    x = x + GLU(LN x)          # attnlab.mixers "activator_glu"
    x = x + MLP(LN x)          # dropped when channel_mlp=False ("only GEGLU")

where one LayerNorm module serves both pre-norms of a block (the official
code's choice), then LayerNorm -> mean over patches -> Linear. Nothing mixes
tokens, so the model is a bag of patches: its output is exactly invariant to
permuting the patches (tested); all spatial information sits inside patches.
"""
from __future__ import annotations

import torch
from torch import nn

from attnlab import mixers
from attnlab.utils.checks import check_positive_int
from attnlab.models import register_model
from attnlab.layers import DropPath, Mlp, PatchEmbed, check_img_patch, drop_path_rates

__all__ = ["ActivatorBlock", "Activator", "activator_tiny", "activator_small"]


class ActivatorBlock(nn.Module):
    """x + GLU(norm x), then x + MLP(norm x) with the same ``norm``; x (B, N, C) -> (B, N, C).

    Args:
        dim: width C.
        hidden_ratio: GLU hidden width over C.
        channel_mlp: keep the second (channel) MLP.
        mlp_ratio: its hidden width over C.
        drop: dropout inside GLU and MLP.
        drop_path: stochastic depth.
    """

    def __init__(self, dim: int, hidden_ratio: float = 2.0, channel_mlp: bool = True, mlp_ratio: float = 2.0,
                 drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = mixers.create("activator_glu", dim, hidden_ratio=hidden_ratio, drop=drop)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), drop=drop) if channel_mlp else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        x = x + self.drop_path(self.attn(self.norm(x)))
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.norm(x)))
        return x


class Activator(nn.Module):
    """Activator (P07): images (B, in_chans, img_size, img_size) -> logits (B, num_classes).

    Args:
        img_size, patch_size, in_chans, num_classes: image geometry and classes.
        embed_dim: width C; depth: blocks.
        hidden_ratio: GLU hidden width over C (paper: 512 / 256).
        channel_mlp: keep the second MLP (False = the paper's "only GEGLU" variant).
        mlp_ratio, drop, drop_path_rate: MLP width, dropout, stochastic depth.
    """

    def __init__(
        self, *, img_size: int = 32, patch_size: int = 4, in_chans: int = 3, num_classes: int = 10,
        embed_dim: int = 64, depth: int = 4, hidden_ratio: float = 2.0, channel_mlp: bool = True,
        mlp_ratio: float = 2.0, drop: float = 0.0, drop_path_rate: float = 0.0,
    ):
        super().__init__()
        check_img_patch(img_size, patch_size)
        check_positive_int("depth", depth)
        check_positive_int("num_classes", num_classes)
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        dpr = drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList(
            ActivatorBlock(embed_dim, hidden_ratio, channel_mlp, mlp_ratio, drop, dp) for dp in dpr
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> normalised patch tokens (B, N, C)."""
        x = self.patch_embed(x)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, in_chans, H, W) -> logits (B, num_classes) from mean-pooled tokens."""
        return self.head(self.forward_features(x).mean(dim=1))


ACTIVATOR_CONFIGS = {
    "tiny": dict(embed_dim=64, depth=4, hidden_ratio=2.0, channel_mlp=True),
    "small": dict(embed_dim=128, depth=6, hidden_ratio=2.0, channel_mlp=True),
}


@register_model("activator_tiny", paper="P07")
def activator_tiny(**kwargs) -> Activator:
    """Activator tiny for 32 px: width 64, 4 blocks, GLU x2 and channel MLP x2."""
    return Activator(**{**ACTIVATOR_CONFIGS["tiny"], **kwargs})


@register_model("activator_small", paper="P07")
def activator_small(**kwargs) -> Activator:
    """Activator small for 32 px: width 128, 6 blocks."""
    return Activator(**{**ACTIVATOR_CONFIGS["small"], **kwargs})
