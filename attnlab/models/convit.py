"""ConViT: gated positional self-attention in the first layers, plain attention after (d'Ascoli et al. 2021, P11).

Patches get a learned position embedding (no class token yet) and pass through
``local_up_to_layer`` blocks whose mixer is GPSA (``attnlab.mixers.gpsa``),
initialised to behave like a convolution. The class token is concatenated
just before the first plain multi-head self-attention block; the head reads it
after a final LayerNorm. Module names follow timm's ``ConVit`` so timm weights
load with an identity key mapping (see ``timm_compat``). The pre-norm block is
:class:`attnlab.layers.Block`, shared with the other timm-named vision designs.
"""
from __future__ import annotations

import torch
from torch import nn

from attnlab import mixers
from attnlab.utils.checks import check_choice, check_positive_int, describe, fail
from attnlab.models import register_model
from attnlab.layers import Block, PatchEmbed, check_img_patch, drop_path_rates, trunc_normal_init_

__all__ = ["ConViT", "convit_tiny", "convit_small"]


class ConViT(nn.Module):
    """ConViT (P11): images (B, in_chans, img_size, img_size) -> logits (B, num_classes).

    Args:
        img_size, patch_size, in_chans, num_classes: image geometry and classes.
        embed_dim: full width C (timm's ``embed_dim * num_heads``).
        depth: number of blocks.
        num_heads: heads per block (a perfect square lets every GPSA head get a local offset).
        local_up_to_layer: number of leading GPSA blocks; the class token joins after them.
            ``0`` gives a DeiT-like ViT, ``depth`` a ViT made only of GPSA (mean-pooled head
            would be needed then; the class token still joins before the final norm).
        locality_strength: alpha of GPSA's local init.
        mlp_ratio, qkv_bias, drop_path_rate: as in timm.
        global_pool: ``"token"`` (the class token, as in the paper) or ``"avg"`` (mean of the
            patch tokens, timm's alternative).
    """

    def __init__(
        self, *, img_size: int = 32, patch_size: int = 4, in_chans: int = 3, num_classes: int = 10,
        embed_dim: int = 96, depth: int = 6, num_heads: int = 4, local_up_to_layer: int = 4,
        locality_strength: float = 1.0, mlp_ratio: float = 4.0, qkv_bias: bool = False, drop_path_rate: float = 0.0,
        global_pool: str = "token",
    ):
        super().__init__()
        self.global_pool = check_choice("global_pool", global_pool, ("token", "avg"))
        self.grid = check_img_patch(img_size, patch_size)
        check_positive_int("depth", depth)
        check_positive_int("num_classes", num_classes)
        if isinstance(local_up_to_layer, bool) or not isinstance(local_up_to_layer, int) or not 0 <= local_up_to_layer <= depth:
            fail("local_up_to_layer", f"an int in [0, depth={depth}]", describe(local_up_to_layer))
        self.local_up_to_layer = local_up_to_layer
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        n = self.grid[0] * self.grid[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n, embed_dim))
        blocks = []
        for i, dp in enumerate(drop_path_rates(drop_path_rate, depth)):
            if i < local_up_to_layer:
                attn = mixers.create("gpsa", embed_dim, num_heads=num_heads, qkv_bias=qkv_bias,
                                     locality_strength=locality_strength, local_init=False)
            else:
                attn = mixers.create("softmax", embed_dim, num_heads=num_heads, qkv_bias=qkv_bias)
            blocks.append(Block(embed_dim, attn, mlp_ratio=mlp_ratio, drop_path=dp))
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        trunc_normal_init_(self, [self.pos_embed, self.cls_token])
        for blk in self.blocks[: self.local_up_to_layer]:
            blk.attn.local_init()  # after the generic init, as in the paper

    def no_weight_decay(self) -> set[str]:
        """Parameters AdamW must not decay (position embedding, class token; timm's convention, read by attnlab.train)."""
        return {"pos_embed", "cls_token"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> normalised tokens (B, 1 + N, C), class token first."""
        x = self.patch_embed(x) + self.pos_embed
        for i, blk in enumerate(self.blocks):
            if i == self.local_up_to_layer:
                x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
            x = blk(x, grid=self.grid if i < self.local_up_to_layer else None)
        if self.local_up_to_layer == len(self.blocks):
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, in_chans, H, W) -> logits (B, num_classes) from the class token (or the patch mean)."""
        x = self.forward_features(x)
        return self.head(x[:, 0] if self.global_pool == "token" else x[:, 1:].mean(dim=1))


CONVIT_CONFIGS = {
    # 4 heads (2x2 local offsets) x 24 = 96 wide; 8x8 patches at 32 px.
    "tiny": dict(embed_dim=96, depth=6, num_heads=4, local_up_to_layer=4),
    # 9 heads (3x3 offsets) x 16 = 144 wide, as the research note's digits setting scaled up.
    "small": dict(embed_dim=144, depth=8, num_heads=9, local_up_to_layer=6),
}


@register_model("convit_tiny", paper="P11")
def convit_tiny(**kwargs) -> ConViT:
    """ConViT tiny for 32 px CPU runs (~0.7 M parameters): 6 blocks, 4 GPSA, width 96, 4 heads."""
    return ConViT(**{**CONVIT_CONFIGS["tiny"], **kwargs})


@register_model("convit_small", paper="P11")
def convit_small(**kwargs) -> ConViT:
    """ConViT small for 32 px CPU runs: 8 blocks, 6 GPSA, width 144, 9 heads."""
    return ConViT(**{**CONVIT_CONFIGS["small"], **kwargs})
