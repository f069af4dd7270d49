"""TNT, Transformer in Transformer (Han et al. 2021, P32).

Every patch is cut into "pixel words" (a 7x7 strided convolution inside the
patch gives an inner grid of words of width ``inner_dim``). Each block runs an
inner transformer over the words of each patch (all patches as one batch), adds
a projection of the flattened words to the patch ("sentence") embedding, then
runs the outer transformer over the patch tokens and a class token. The head
reads the class token. Both transformers use attnlab's softmax mixer; module
names follow timm's ``TNT`` except the attention, where timm's separate ``qk``
and ``v`` projections are one fused ``qkv`` here (see ``timm_compat``).
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from attnlab import mixers
from attnlab.utils.checks import check_positive_int, fail
from attnlab.mixers.softmax import MultiHeadAttention
from attnlab.models import register_model
from attnlab.layers import DropPath, Mlp, check_img_patch, drop_path_rates, trunc_normal_init_
from attnlab.ops.recording import is_recording

__all__ = ["ShortSequenceAttention", "PixelEmbed", "TNTBlock", "TNT", "tnt_tiny", "tnt_small"]


class ShortSequenceAttention(MultiHeadAttention):
    """attnlab's softmax mixer with an explicit-product path for short sequences: x (B, N, C) -> (B, N, C).

    Computes exactly ``MultiHeadAttention`` (same ``qkv``/``proj`` parameters,
    same result to fp32 rounding) but, for plain bidirectional calls, as
    ``softmax(q k^T * d_h^-1/2) v`` with batched matmuls instead of SDPA: for
    TNT's inner transformer (thousands of 16-word sequences, head size 6) CPU
    SDPA's flash kernel makes the whole mixer cost ~1.4x the explicit product in
    forward + backward (5.9 vs 4.2 ms at x (512, 16, 12), 2 heads, one thread).
    The outer transformer (17 tokens, head size 24) keeps SDPA, which is as fast
    or faster there.
    Causal or masked calls, attention dropout and ``record_attention`` take the
    parent's path (``attnlab.ops.attention``).
    """

    def mix(self, x, *, grid, causal, key_padding_mask):
        if causal or key_padding_mask is not None or (self.attn_drop and self.training) or is_recording():
            return super().mix(x, grid=grid, causal=causal, key_padding_mask=key_padding_mask)
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        # Transposed throughout: probs_t = softmax over keys of (k q^T) = probs^T, and
        # (probs v)^T = v^T probs_t. CPU bmm is ~3x faster when the output rows are N long rather
        # than d_h (6) long, and the softmax backward then receives a contiguous gradient
        # instead of cloning a transposed one (~15 % of this attention's fwd + bwd).
        probs_t = ((k @ q.transpose(-2, -1)) * self.head_dim ** -0.5).softmax(dim=-2)  # (B, H, N_k, N_q)
        out_t = v.transpose(-2, -1) @ probs_t  # (B, H, d_h, N)
        return self.proj_drop(self.proj(out_t.permute(0, 3, 1, 2).reshape(b, n, c)))


class PixelEmbed(nn.Module):
    """Images (B, C, H, W) -> pixel words (B * N_patches, words, inner_dim).

    Each patch (p x p) passes through Conv2d(C, inner_dim, 7, stride, padding 3)
    (timm's non-legacy order: unfold first, convolve each patch), giving
    ceil(p / stride)^2 words; the learned ``pixel_pos`` (1, inner_dim, w, w) is added.
    """

    def __init__(self, img_size: int, patch_size: int, in_chans: int, in_dim: int, stride: int):
        super().__init__()
        self.grid = check_img_patch(img_size, patch_size)
        check_positive_int("first_stride", stride)
        self.patch_size = patch_size
        self.num_patches = self.grid[0] * self.grid[1]
        self.new_patch_size = -(-patch_size // stride)
        self.in_dim = in_dim
        self.proj = nn.Conv2d(in_chans, in_dim, kernel_size=7, padding=3, stride=stride)

    def forward(self, x: torch.Tensor, pixel_pos: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W), pixel_pos (1, inner_dim, w, w) -> (B * N_patches, w * w, inner_dim)."""
        p = self.patch_size
        x = rearrange(x, "b c (gh p1) (gw p2) -> (b gh gw) c p1 p2", p1=p, p2=p)
        x = self.proj(x) + pixel_pos
        # contiguous once here: elementwise ops keep their input's strides, so a transposed view
        # would stay transposed through every block and each LayerNorm (fwd and bwd) would copy it
        return rearrange(x, "bn c h w -> bn (h w) c").contiguous()


class TNTBlock(nn.Module):
    """One TNT block: inner transformer on words, words -> patch embedding, outer transformer on patches.

    forward(pixel_embed (B * N, words, d), patch_embed (B, 1 + N, D)) -> the two updated tensors.
    """

    def __init__(
        self, dim: int, dim_out: int, num_pixel: int, num_heads_in: int = 4, num_heads_out: int = 12,
        mlp_ratio: float = 4.0, qkv_bias: bool = False, drop_path: float = 0.0,
    ):
        super().__init__()
        self.norm_in = nn.LayerNorm(dim)
        self.attn_in = ShortSequenceAttention(dim, num_heads=num_heads_in, qkv_bias=qkv_bias)
        self.norm_mlp_in = nn.LayerNorm(dim)
        self.mlp_in = Mlp(in_features=dim, hidden_features=int(dim * 4), out_features=dim)
        self.norm1_proj = nn.LayerNorm(dim * num_pixel)
        self.proj = nn.Linear(dim * num_pixel, dim_out, bias=False)
        self.norm2_proj = nn.LayerNorm(dim_out)
        self.norm_out = nn.LayerNorm(dim_out)
        self.attn_out = mixers.create("softmax", dim_out, num_heads=num_heads_out, qkv_bias=qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm_mlp = nn.LayerNorm(dim_out)
        self.mlp = Mlp(in_features=dim_out, hidden_features=int(dim_out * mlp_ratio), out_features=dim_out)

    def forward(self, pixel_embed: torch.Tensor, patch_embed: torch.Tensor):
        """Update words then patches; the class token (patch_embed[:, 0]) receives no word projection."""
        pixel_embed = pixel_embed + self.drop_path(self.attn_in(self.norm_in(pixel_embed)))
        pixel_embed = pixel_embed + self.drop_path(self.mlp_in(self.norm_mlp_in(pixel_embed)))
        b, n, _ = patch_embed.shape
        words = self.norm2_proj(self.proj(self.norm1_proj(pixel_embed.reshape(b, n - 1, -1))))
        patch_embed = torch.cat([patch_embed[:, :1], patch_embed[:, 1:] + words], dim=1)
        patch_embed = patch_embed + self.drop_path(self.attn_out(self.norm_out(patch_embed)))
        patch_embed = patch_embed + self.drop_path(self.mlp(self.norm_mlp(patch_embed)))
        return pixel_embed, patch_embed


class TNT(nn.Module):
    """TNT (P32): images (B, in_chans, img_size, img_size) -> logits (B, num_classes).

    Args:
        img_size, patch_size, in_chans, num_classes: image geometry and classes.
        embed_dim: outer (patch) width D.
        inner_dim: inner (word) width d.
        depth: number of TNT blocks.
        num_heads_inner, num_heads_outer: heads of the two transformers.
        first_stride: stride of the word convolution; words per patch = ceil(patch/stride)^2.
        mlp_ratio, qkv_bias, drop_path_rate: as in timm.
    """

    def __init__(
        self, *, img_size: int = 32, patch_size: int = 8, in_chans: int = 3, num_classes: int = 10,
        embed_dim: int = 96, inner_dim: int = 12, depth: int = 4, num_heads_inner: int = 2, num_heads_outer: int = 4,
        first_stride: int = 2, mlp_ratio: float = 4.0, qkv_bias: bool = False, drop_path_rate: float = 0.0,
    ):
        super().__init__()
        check_positive_int("depth", depth)
        check_positive_int("num_classes", num_classes)
        if inner_dim % num_heads_inner:
            fail("num_heads_inner", f"a divisor of inner_dim={inner_dim}", num_heads_inner)
        self.pixel_embed = PixelEmbed(img_size, patch_size, in_chans, inner_dim, first_stride)
        num_patches = self.pixel_embed.num_patches
        w = self.pixel_embed.new_patch_size
        num_pixel = w * w
        self.num_patches = num_patches
        self.norm1_proj = nn.LayerNorm(num_pixel * inner_dim)
        self.proj = nn.Linear(num_pixel * inner_dim, embed_dim)
        self.norm2_proj = nn.LayerNorm(embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.patch_pos = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.pixel_pos = nn.Parameter(torch.zeros(1, inner_dim, w, w))
        dpr = drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList(
            TNTBlock(inner_dim, embed_dim, num_pixel, num_heads_inner, num_heads_outer, mlp_ratio, qkv_bias, dp)
            for dp in dpr
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        trunc_normal_init_(self, [self.cls_token, self.patch_pos, self.pixel_pos])

    def no_weight_decay(self) -> set[str]:
        """Parameters AdamW must not decay (position embeddings, class token; timm's convention, read by attnlab.train)."""
        return {"patch_pos", "pixel_pos", "cls_token"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> normalised patch tokens (B, 1 + N, D), class token first."""
        b = x.shape[0]
        pixel_embed = self.pixel_embed(x, self.pixel_pos)
        patch_embed = self.norm2_proj(self.proj(self.norm1_proj(pixel_embed.reshape(b, self.num_patches, -1))))
        patch_embed = torch.cat([self.cls_token.expand(b, -1, -1), patch_embed], dim=1) + self.patch_pos
        for blk in self.blocks:
            pixel_embed, patch_embed = blk(pixel_embed, patch_embed)
        return self.norm(patch_embed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, in_chans, H, W) -> logits (B, num_classes) from the class token."""
        return self.head(self.forward_features(x)[:, 0])


TNT_CONFIGS = {
    # 32 px, patch 8 -> 16 patches of 4x4 = 16 words (stride 2); outer 96 wide, inner 12 (ratio 8).
    "tiny": dict(patch_size=8, embed_dim=96, inner_dim=12, depth=4, num_heads_inner=2, num_heads_outer=4, first_stride=2),
    "small": dict(patch_size=8, embed_dim=128, inner_dim=16, depth=6, num_heads_inner=2, num_heads_outer=4,
                  first_stride=2),
}


@register_model("tnt_tiny", paper="P32")
def tnt_tiny(**kwargs) -> TNT:
    """TNT tiny for 32 px CPU runs: 16 patches x 16 words, widths 96/12, 4 blocks."""
    return TNT(**{**TNT_CONFIGS["tiny"], **kwargs})


@register_model("tnt_small", paper="P32")
def tnt_small(**kwargs) -> TNT:
    """TNT small for 32 px CPU runs: 16 patches x 16 words, widths 128/16, 6 blocks."""
    return TNT(**{**TNT_CONFIGS["small"], **kwargs})
