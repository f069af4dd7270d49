"""SpectFormer: spectral gating layers first, multi-head attention after (Patro et al. 2023, P04).

Patches plus a learned position embedding (no class token) go through
``num_spectral`` GFNet-style blocks, ``x + MLP(LN2(GF(LN1 x)))`` with a single
residual around filter and MLP together (as in the official code), then
pre-norm attention blocks. The head is LayerNorm -> mean over tokens -> Linear.
The split is a parameter: ``num_spectral=depth`` is GFNet-like (all spectral),
``num_spectral=0`` ViT-like (all attention); ``layers="aass"`` gives any order.
"""
from __future__ import annotations

import torch
from torch import nn

from attnlab import mixers
from attnlab.utils.checks import check_positive_int, describe, fail
from attnlab.models import register_model
from attnlab.layers import Block, DropPath, Mlp, PatchEmbed, check_img_patch, drop_path_rates, trunc_normal_init_

__all__ = ["SpectralBlock", "SpectFormer", "spectformer_tiny", "spectformer_small"]


class SpectralBlock(nn.Module):
    """GFNet block: x + drop_path(mlp(norm2(filter(norm1 x)))); x (B, N, C) on grid (H, W) -> (B, N, C)."""

    def __init__(self, dim: int, grid: tuple[int, int], mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.filter = mixers.create("spectral_gating", dim, size=tuple(grid))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """x (B, N, C) with its token ``grid`` (H, W) -> (B, N, C)."""
        return x + self.drop_path(self.mlp(self.norm2(self.filter(self.norm1(x), grid=grid))))


class SpectFormer(nn.Module):
    """SpectFormer (P04): images (B, in_chans, img_size, img_size) -> logits (B, num_classes).

    Args:
        img_size, patch_size, in_chans, num_classes: image geometry and classes.
        embed_dim: width C.
        depth: number of blocks.
        num_spectral: the first ``num_spectral`` blocks are spectral (alpha in the paper).
        layers: optional explicit layout over depth, e.g. ``"ssaa"`` or ``"aass"``
            ("s" spectral, "a" attention); overrides ``num_spectral``.
        num_heads, mlp_ratio, drop_path_rate: attention heads, MLP ratio, stochastic depth.
    """

    def __init__(
        self, *, img_size: int = 32, patch_size: int = 4, in_chans: int = 3, num_classes: int = 10,
        embed_dim: int = 64, depth: int = 4, num_spectral: int = 2, layers: str | None = None, num_heads: int = 4,
        mlp_ratio: float = 4.0, drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.grid = check_img_patch(img_size, patch_size)
        check_positive_int("depth", depth)
        check_positive_int("num_classes", num_classes)
        if layers is None:
            if isinstance(num_spectral, bool) or not isinstance(num_spectral, int) or not 0 <= num_spectral <= depth:
                fail("num_spectral", f"an int in [0, depth={depth}]", describe(num_spectral))
            layers = "s" * num_spectral + "a" * (depth - num_spectral)
        layers = str(layers).lower()
        if len(layers) != depth or set(layers) - {"s", "a"}:
            fail("layers", f"a string of {depth} letters 's' (spectral) / 'a' (attention)", describe(layers))
        self.layers = layers
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], embed_dim))
        dpr = drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList(
            SpectralBlock(embed_dim, self.grid, mlp_ratio, dp) if kind == "s"
            else Block(embed_dim, mixers.create("softmax", embed_dim, num_heads=num_heads, qkv_bias=True),
                       mlp_ratio=mlp_ratio, drop_path=dp)
            for kind, dp in zip(layers, dpr)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        trunc_normal_init_(self, [self.pos_embed])

    def no_weight_decay(self) -> set[str]:
        """Parameters AdamW must not decay (position embedding; timm's convention, read by attnlab.train)."""
        return {"pos_embed"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> normalised tokens (B, N, C)."""
        x = self.patch_embed(x) + self.pos_embed
        for blk in self.blocks:
            x = blk(x, grid=self.grid)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, in_chans, H, W) -> logits (B, num_classes) from mean-pooled tokens."""
        return self.head(self.forward_features(x).mean(dim=1))


SPECTFORMER_CONFIGS = {
    "tiny": dict(embed_dim=64, depth=4, num_spectral=2, num_heads=4),
    "small": dict(embed_dim=128, depth=6, num_spectral=2, num_heads=4),
}


@register_model("spectformer_tiny", paper="P04")
def spectformer_tiny(**kwargs) -> SpectFormer:
    """SpectFormer tiny for 32 px: width 64, 4 blocks (2 spectral, then 2 attention)."""
    return SpectFormer(**{**SPECTFORMER_CONFIGS["tiny"], **kwargs})


@register_model("spectformer_small", paper="P04")
def spectformer_small(**kwargs) -> SpectFormer:
    """SpectFormer small for 32 px: width 128, 6 blocks (2 spectral, then 4 attention)."""
    return SpectFormer(**{**SPECTFORMER_CONFIGS["small"], **kwargs})
