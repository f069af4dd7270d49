"""The ViT backbone (Dosovitskiy et al. 2021) with any token mixer per layer; the patch grid goes to the mixers."""
from __future__ import annotations

import torch
from torch import nn

from attnlab.utils.checks import check_choice, check_positive_int, fail
from attnlab.layers import MixerBlock, PatchEmbed, drop_path_rates, make_norm
from attnlab.models.mixer_pattern import build_mixer, refuse_context, resolve_mixers

__all__ = ["ViT"]


class ViT(nn.Module):
    """Vision transformer: patch embedding, pre-norm mixer blocks, pooled classification head.

    Images (B, in_chans, H, W) -> logits (B, num_classes). Tokens form the grid
    (H/p, W/p), passed to every mixer that uses geometry (neighborhood, routing,
    spectral, ...). ``pool="mean"`` averages the patch tokens; ``pool="cls"``
    prepends a class token and reads it (then the tokens no longer form a grid, so
    mixers that require one are refused with a clear error).

    Args:
        img_size, patch_size, in_chans, num_classes: input and output.
        dim, depth, num_heads: width, blocks, heads (for mixers that take ``num_heads``).
        mixer, mixer_kwargs: per-layer mixer pattern (see ``attnlab.models.mixer_pattern``).
        ffn, mlp_ratio: channel MLP of each block (``"mlp"``, ``"glu"``, ``"none"``).
        pos: ``"learned"`` or ``"none"`` position embedding.
        pool: ``"mean"`` or ``"cls"``.
        drop_path: stochastic depth, linear over the depth up to this rate.
    """

    def __init__(
        self, *, img_size: int = 32, patch_size: int = 4, in_chans: int = 3, num_classes: int = 10, dim: int = 64,
        depth: int = 4, num_heads: int = 4, mixer: object = "softmax", mixer_kwargs: dict | None = None,
        ffn: str = "mlp", mlp_ratio: float = 4.0, pos: str = "learned", pool: str = "mean", drop_path: float = 0.0,
        norm: str = "layernorm",
    ):
        super().__init__()
        check_positive_int("dim", dim)
        check_positive_int("depth", depth)
        check_positive_int("num_classes", num_classes)
        check_choice("pos", pos, ("learned", "none"))
        check_choice("pool", pool, ("mean", "cls"))
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, dim)
        self.grid = self.patch_embed.grid_size
        self.pool = pool
        self.layer_mixers = resolve_mixers(mixer, depth, mixer_kwargs)
        refuse_context(self.layer_mixers, "ViT")
        if pool == "cls":
            needs = [n for n, _ in self.layer_mixers if _grid_mode(n) == "required"]
            if needs:
                fail("pool", f"'mean' for mixers that need the patch grid ({sorted(set(needs))})", "'cls'")
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        else:
            self.cls_token = None
        n_tok = self.patch_embed.num_patches + (1 if pool == "cls" else 0)
        if pos == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, n_tok, dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        else:
            self.pos_embed = None
        rates = drop_path_rates(drop_path, depth)
        self.blocks = nn.ModuleList(
            MixerBlock(dim, build_mixer(name, dim, kw, num_heads), ffn=ffn, mlp_ratio=mlp_ratio, norm=norm,
                       drop_path=r)
            for (name, kw), r in zip(self.layer_mixers, rates)
        )
        self.norm = make_norm(norm, dim)
        self.head = nn.Linear(dim, num_classes)
        self.num_classes = num_classes

    def no_weight_decay(self) -> set[str]:
        """Parameter names excluded from weight decay (read by attnlab.train)."""
        return {"pos_embed", "cls_token"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> normalised tokens (B, N[+1], dim)."""
        h = self.patch_embed(x)
        grid = self.grid
        if self.cls_token is not None:
            h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1), h], dim=1)
            grid = None
        if self.pos_embed is not None:
            h = h + self.pos_embed
        for blk in self.blocks:
            h = blk(h, grid=grid)
        return self.norm(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, num_classes)."""
        h = self.forward_features(x)
        return self.head(h[:, 0] if self.cls_token is not None else h.mean(dim=1))


def _grid_mode(name: str) -> str:
    from attnlab.mixers import get_info

    return get_info(name).capabilities.grid
