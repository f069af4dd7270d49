"""CrossViT: two branches of different patch sizes fused by CLS-only cross-attention (Chen, Fan, Panda 2021, P13).

Each branch embeds the same image with its own patch size, width, class token
and position embedding and runs ordinary transformer blocks. After every
multi-scale block, branch i's class token is projected to branch j's width,
attends as the **only query** over [its projection, branch j's patch tokens],
is projected back and re-attached to branch i's *unchanged* patch tokens: the
fusion costs O(N) and never touches patch tokens. The logits are the mean of
the two branches' heads. Module names follow timm's ``CrossVit`` (identity key
mapping; build timm with ``img_scale=(1.0, 1.0)``).
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from attnlab import mixers
from attnlab.utils.checks import check_positive_int, describe, fail
from attnlab.mixers.base import check_num_heads
from attnlab.models import register_model
from attnlab.layers import Block, DropPath, PatchEmbed, check_img_patch, drop_path_rates, trunc_normal_init_
from attnlab.ops.attention import attention

__all__ = ["CrossAttention", "CrossAttentionBlock", "MultiScaleBlock", "CrossViT", "crossvit_tiny", "crossvit_small"]


class CrossAttention(nn.Module):
    """Multi-head attention with the first token as the only query: x (B, N, C) -> (B, 1, C).

    q = wq(x[:, :1]), k = wk(x), v = wv(x) over all N tokens (the query's own
    token included, as in the paper); softmax attention through SDPA.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False):
        super().__init__()
        check_num_heads(dim, num_heads)
        self.num_heads = num_heads
        self.wq = nn.Linear(dim, dim, bias=qkv_bias)
        self.wk = nn.Linear(dim, dim, bias=qkv_bias)
        self.wv = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, N, C) -> (B, 1, C): the first token's cross-attention output."""
        split = lambda t: rearrange(t, "b n (h d) -> b h n d", h=self.num_heads)  # noqa: E731
        o = attention(split(self.wq(x[:, :1])), split(self.wk(x)), split(self.wv(x)))
        return self.proj(rearrange(o, "b h n d -> b n (h d)"))


class CrossAttentionBlock(nn.Module):
    """cls' = x[:, :1] + CrossAttention(LN x): (B, N, C) -> (B, 1, C); no MLP (as in the paper)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = CrossAttention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, N, C) with the query token first -> updated query token (B, 1, C)."""
        return x[:, :1] + self.drop_path(self.attn(self.norm1(x)))


def _proj(d_in: int, d_out: int) -> nn.Sequential:
    # LN -> GELU -> Linear, indices 0 and 2 carry weights (timm's layout).
    return nn.Sequential(nn.LayerNorm(d_in, eps=1e-6), nn.GELU(), nn.Linear(d_in, d_out))


class MultiScaleBlock(nn.Module):
    """Per-branch transformer blocks, then CLS cross-attention fusion between the two branches.

    Args:
        dims: widths (C_0, C_1) of the branches.
        depths: (blocks in branch 0, blocks in branch 1).
        num_heads: heads per branch; the fusion into branch j uses branch j's heads.
        mlp_ratio: MLP ratio per branch.
        qkv_bias, drop_path: as in timm.
    """

    def __init__(self, dims, depths, num_heads, mlp_ratio, qkv_bias: bool = True, drop_path: list[float] | None = None):
        super().__init__()
        nb = len(dims)
        drop_path = drop_path or [0.0] * (max(depths) + 1)
        self.blocks = nn.ModuleList(
            nn.Sequential(*[
                Block(dims[d], mixers.create("softmax", dims[d], num_heads=num_heads[d], qkv_bias=qkv_bias),
                      mlp_ratio=mlp_ratio[d], drop_path=drop_path[i])
                for i in range(depths[d])
            ])
            for d in range(nb)
        )
        self.projs = nn.ModuleList(_proj(dims[d], dims[(d + 1) % nb]) for d in range(nb))
        self.fusion = nn.ModuleList(
            CrossAttentionBlock(dims[(d + 1) % nb], num_heads[(d + 1) % nb], qkv_bias=qkv_bias, drop_path=drop_path[-1])
            for d in range(nb)
        )
        self.revert_projs = nn.ModuleList(_proj(dims[(d + 1) % nb], dims[d]) for d in range(nb))

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Branch token lists [(B, 1 + N_b, C_b)] -> same shapes; patch tokens leave the fusion unchanged."""
        nb = len(xs)
        outs_b = [blk(x) for blk, x in zip(self.blocks, xs)]
        outs = []
        for i in range(nb):
            j = (i + 1) % nb
            q_cls = self.projs[i](outs_b[i][:, :1])
            fused = self.fusion[i](torch.cat([q_cls, outs_b[j][:, 1:]], dim=1))
            outs.append(torch.cat([self.revert_projs[i](fused), outs_b[i][:, 1:]], dim=1))
        return outs


class CrossViT(nn.Module):
    """CrossViT (P13): images (B, in_chans, img_size, img_size) -> logits (B, num_classes).

    Args:
        img_size, in_chans, num_classes: image geometry and classes.
        patch_size: (small, large) patch sizes, both dividing ``img_size``.
        embed_dim: (C_small, C_large) branch widths.
        depth: one (n_small, n_large, 0) triple per multi-scale block (timm's format;
            the last entry is the number of fusion layers and must be 0 here: one fusion).
        num_heads: heads per branch.
        mlp_ratio: (r_small, r_large, r_fusion) as in timm (the fusion has no MLP).
        qkv_bias, drop_path_rate: as in timm.
    """

    def __init__(
        self, *, img_size: int = 32, patch_size=(4, 8), in_chans: int = 3, num_classes: int = 10,
        embed_dim=(48, 96), depth=((1, 2, 0), (1, 2, 0)), num_heads=(3, 3), mlp_ratio=(4.0, 4.0, 1.0),
        qkv_bias: bool = True, drop_path_rate: float = 0.0,
    ):
        super().__init__()
        if len(patch_size) != 2 or len(embed_dim) != 2 or len(num_heads) != 2:
            fail("patch_size, embed_dim, num_heads", "two entries each (small, large branch)",
                 f"{describe(patch_size)}, {describe(embed_dim)}, {describe(num_heads)}")
        if any(len(d) != 3 or d[2] != 0 for d in depth):
            fail("depth", "(n_small, n_large, 0) triples", describe(depth))
        check_positive_int("num_classes", num_classes)
        self.num_branches = 2
        grids = [check_img_patch(img_size, p) for p in patch_size]
        self.grids = grids
        self.patch_embed = nn.ModuleList(
            PatchEmbed(img_size=img_size, patch_size=p, in_chans=in_chans, embed_dim=d)
            for p, d in zip(patch_size, embed_dim)
        )
        for i, (g, d) in enumerate(zip(grids, embed_dim)):
            setattr(self, f"pos_embed_{i}", nn.Parameter(torch.zeros(1, 1 + g[0] * g[1], d)))
            setattr(self, f"cls_token_{i}", nn.Parameter(torch.zeros(1, 1, d)))
        total = sum(max(d[:2]) + d[2] for d in depth)
        dpr = drop_path_rates(drop_path_rate, total)
        blocks, ptr = [], 0
        for cfg in depth:
            cur = max(cfg[:2]) + cfg[2]
            blocks.append(MultiScaleBlock(embed_dim, cfg[:2], num_heads, mlp_ratio, qkv_bias, dpr[ptr:ptr + cur] or [0.0]))
            ptr += cur
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.ModuleList(nn.LayerNorm(d, eps=1e-6) for d in embed_dim)
        self.head = nn.ModuleList(nn.Linear(d, num_classes) for d in embed_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        trunc_normal_init_(self, [getattr(self, f"{kind}_{i}") for i in range(self.num_branches)
                                  for kind in ("pos_embed", "cls_token")])

    def no_weight_decay(self) -> set[str]:
        """Parameters AdamW must not decay: per-branch position embeddings and class tokens (timm convention)."""
        return {f"{kind}_{i}" for kind in ("pos_embed", "cls_token") for i in range(self.num_branches)}

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Images -> per-branch normalised tokens [(B, 1 + N_b, C_b)], class token first."""
        b = x.shape[0]
        xs = []
        for i, pe in enumerate(self.patch_embed):
            t = torch.cat([getattr(self, f"cls_token_{i}").expand(b, -1, -1), pe(x)], dim=1)
            xs.append(t + getattr(self, f"pos_embed_{i}"))
        for blk in self.blocks:
            xs = blk(xs)
        return [norm(t) for norm, t in zip(self.norm, xs)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, in_chans, H, W) -> logits (B, num_classes): mean of the branch heads on their class tokens."""
        xs = self.forward_features(x)
        return torch.stack([head(t[:, 0]) for head, t in zip(self.head, xs)], dim=0).mean(dim=0)


CROSSVIT_CONFIGS = {
    # 32 px: patch 4 (64 tokens, width 48) + patch 8 (16 tokens, width 96), 2 multi-scale blocks.
    "tiny": dict(patch_size=(4, 8), embed_dim=(48, 96), depth=((1, 2, 0), (1, 2, 0)), num_heads=(3, 3),
                 mlp_ratio=(4.0, 4.0, 1.0)),
    "small": dict(patch_size=(4, 8), embed_dim=(64, 128), depth=((1, 3, 0), (1, 3, 0), (1, 3, 0)), num_heads=(4, 4),
                  mlp_ratio=(4.0, 4.0, 1.0)),
}


@register_model("crossvit_tiny", paper="P13")
def crossvit_tiny(**kwargs) -> CrossViT:
    """CrossViT tiny for 32 px CPU runs: patches 4 and 8, widths 48/96, 2 multi-scale blocks."""
    return CrossViT(**{**CROSSVIT_CONFIGS["tiny"], **kwargs})


@register_model("crossvit_small", paper="P13")
def crossvit_small(**kwargs) -> CrossViT:
    """CrossViT small for 32 px CPU runs: patches 4 and 8, widths 64/128, 3 multi-scale blocks."""
    return CrossViT(**{**CROSSVIT_CONFIGS["small"], **kwargs})
